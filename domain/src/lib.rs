//! Rythmiq's domain: portal rules, job and batch states, error codes, the queue's task payload,
//! and the content sniffer that tells what an upload is from its bytes. No I/O and few
//! dependencies, so the API, the workers and the CPU pipeline all share one definition.
//!
//! The `sqlx` feature adds the `sqlx::Type`/`sqlx::FromRow` derives for the database crates; the
//! pipeline builds without it.

pub mod names;
pub mod sniff;
mod types;

pub use names::safe_chars;
pub use types::*;
