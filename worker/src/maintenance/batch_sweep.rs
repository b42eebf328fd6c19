//! The batch sweep: packages every batch that is ready but was missed (its last job's packaging
//! failed or never ran), or whose packager died. Packaging itself is [`crate::batch`]'s.

use rythmiq_shared::config::WorkerSettings;
use rythmiq_shared::storage::Storage;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::batch;
use crate::error::JobError;

/// Batches one sweep looks at.
const SWEEP_LIMIT: i64 = 100;

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Batches finished by this sweep (completed or failed).
    pub packaged: usize,
    /// Batches whose run failed and will be tried again.
    pub retried: usize,
}

/// Packages every batch that is ready but was missed, or whose packager died. Part of the
/// fleet's maintenance; safe to run from several workers at once (claims are atomic).
pub async fn sweep(
    pool: &PgPool,
    storage: &Storage,
    settings: &WorkerSettings,
) -> Result<SweepReport, JobError> {
    let ids = {
        let mut conn = pool.acquire().await?;
        ready_or_stale(&mut conn, batch::stale_after(settings), SWEEP_LIMIT).await?
    };
    let mut report = SweepReport::default();
    for id in ids {
        match batch::package(pool, storage, settings, id).await {
            batch::Packaged::Done(_) => report.packaged += 1,
            batch::Packaged::Retry => report.retried += 1,
            batch::Packaged::NotClaimed => {}
        }
    }
    Ok(report)
}

/// Batches the sweep should try to package, oldest first: every job finished but still
/// `processing` (the trigger was missed or its run failed), or held in `packaging` longer than
/// `stale_after` (the packager died).
async fn ready_or_stale(
    conn: &mut PgConnection,
    stale_after: std::time::Duration,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT b.id FROM batches b
         WHERE (b.state = 'processing'
                AND NOT EXISTS (SELECT 1 FROM jobs j
                                WHERE j.batch_id = b.id
                                  AND j.state NOT IN ('completed', 'failed')))
            OR (b.state = 'packaging'
                AND b.packaging_started_at < now() - make_interval(secs => $1))
         ORDER BY b.created_at LIMIT $2",
    )
    .bind(stale_after.as_secs_f64())
    .bind(limit)
    .fetch_all(conn)
    .await
}
