//! Rythmiq workers: long-lived processes that claim queued jobs from Postgres and run the image
//! pipeline (`rythmiq-pipeline`). [`queue`] is the fleet mechanics, [`job`] one job's I/O around
//! the pipeline (fetch, process on the blocking pool, upload), [`batch`] the packaging of a
//! finished batch's outputs into one ZIP, [`maintenance`] the fleet's background services
//! (retention, rollups, the batch sweep).

pub mod batch;
pub mod error;
pub mod job;
pub mod maintenance;
pub mod queue;

pub use error::JobError;
pub use queue::{StartupCpu, Worker};
