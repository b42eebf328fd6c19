//! Rythmiq workers: long-lived processes that claim queued jobs from Postgres and run the image
//! pipeline. [`queue`] is the fleet mechanics, [`pipeline`] the work, one module per stage,
//! [`batch`] the packaging of a finished batch's outputs into one ZIP, [`maintenance`] the
//! fleet's background services (retention, rollups, the batch sweep).

pub mod batch;
pub mod error;
pub mod maintenance;
pub mod pipeline;
pub mod queue;

pub use error::JobError;
pub use queue::Worker;
