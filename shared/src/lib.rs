//! Code shared by the Rythmiq API, the workers and the CLI: configuration, the database (pool,
//! migrations, queue names), object storage, authentication tokens and domain types.

pub mod auth;
pub mod config;
pub mod cpu;
pub mod crypto;
pub mod db;
pub mod error;
pub mod metrics;
pub mod portals;
pub mod signing;
pub mod storage;
pub mod telemetry;

pub use error::{Error, Result};
/// The domain types, from `rythmiq-domain` (with its `sqlx` derives).
pub use rythmiq_domain as domain;
/// The content sniffer, from `rythmiq-domain`.
pub use rythmiq_domain::sniff;
