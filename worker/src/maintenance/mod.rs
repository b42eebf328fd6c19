//! The fleet's background services, one module each: [`rollups`] refresh, [`retention`]
//! (expired files, packages, observability rows and finished queue tasks) and the
//! [`batch_sweep`]. Every worker runs the loop; one of them at a time does the work (a
//! transaction-scoped advisory lock).
//!
//! Refunds are not a service of their own: a job's credit comes back in the transaction that
//! fails it for good ([`crate::queue::outcome`]).

pub mod batch_sweep;
pub mod retention;
pub mod rollups;

use rythmiq_shared::config::WorkerSettings;
use rythmiq_shared::error::Chain;
use rythmiq_shared::storage::Storage;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Advisory lock key of the maintenance runner ("rythmiq" in ASCII).
pub const MAINTENANCE_LOCK: i64 = 0x0072_7974_686d_6971;

/// Every `maintenance_interval` until `stop`: when this worker takes the lock, refresh the
/// rollups and purge old observability rows, then delete expired files and finished queue
/// tasks, sweep batches and delete expired packages.
pub async fn run(
    pool: PgPool,
    storage: Storage,
    settings: WorkerSettings,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(settings.maintenance_interval);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match run_locked(&pool, settings.retention_days).await {
            Ok(Some(purged)) => {
                tracing::info!(purged, "rollups refreshed, retention applied");
                retention::delete_expired_files(&pool, &storage, &settings).await;
                purge_tasks(&pool, settings.task_retention).await;
                sweep_batches(&pool, &storage, &settings).await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "maintenance failed; will retry"),
        }
    }
}

/// The database part of a pass, run by whichever worker takes the advisory lock (one runner at a
/// time): refresh the rollups and apply the observability retention, in one transaction.
/// Returns the rows purged, or None when another worker holds the lock.
pub async fn run_locked(pool: &PgPool, keep_days: u32) -> Result<Option<i64>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(MAINTENANCE_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(None);
    }
    rollups::refresh(&mut tx).await?;
    let purged = retention::purge_observability(&mut tx, keep_days).await?;
    tx.commit().await?;
    Ok(Some(purged))
}

/// Deletes the queue's tasks that finished more than `keep` ago.
async fn purge_tasks(pool: &PgPool, keep: std::time::Duration) {
    match retention::purge_finished_tasks(pool, keep).await {
        Ok(n) if n > 0 => tracing::info!(tasks = n, "finished queue tasks purged"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %Chain(&e), "purging finished tasks failed; will retry"),
    }
}

/// Packages batches that were missed or whose packager died, and deletes packages whose
/// retention has run out.
async fn sweep_batches(pool: &PgPool, storage: &Storage, settings: &WorkerSettings) {
    match batch_sweep::sweep(pool, storage, settings).await {
        Ok(r) if r.packaged + r.retried > 0 => {
            tracing::info!(
                packaged = r.packaged,
                retried = r.retried,
                "batch sweep done"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %Chain(&e), "batch sweep failed; will retry"),
    }
    match retention::delete_expired_packages(pool, storage, settings).await {
        Ok(n) if n > 0 => tracing::info!(packages = n, "expired batch packages deleted"),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %Chain(&e), "deleting expired packages failed; will retry")
        }
    }
}
