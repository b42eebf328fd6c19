//! Code shared by the Rythmiq API, the workers and the CLI: configuration, the database (pool,
//! migrations, queue names), object storage, authentication tokens and domain types.

pub mod auth;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod portals;
pub mod signing;
pub mod sniff;
pub mod storage;
pub mod telemetry;

pub use error::{Error, Result};
