//! HTTP handlers, one module per resource.

pub mod batches;
pub mod checks;
pub mod health;
pub mod jobs;
pub mod page;
pub mod portals;
pub mod sessions;
