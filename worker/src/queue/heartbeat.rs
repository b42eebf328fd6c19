//! Registration and heartbeat: a worker's `last_seen`, which the reapers of the fleet watch.

use sqlx::PgPool;

use super::apalis;

/// Registers (or re-registers) this worker so its heartbeat can be watched.
pub async fn register(pool: &PgPool, worker: &str) -> Result<(), sqlx::Error> {
    apalis::register(pool, worker).await
}

/// Records a heartbeat; re-registers if the row has gone (a wiped or restored database).
pub async fn heartbeat(pool: &PgPool, worker: &str) -> Result<(), sqlx::Error> {
    if !apalis::touch(pool, worker).await? {
        register(pool, worker).await?;
    }
    Ok(())
}
