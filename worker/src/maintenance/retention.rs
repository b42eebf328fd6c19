//! Retention: what the fleet keeps only for a while goes when its time is up. Raw uploads after
//! `RYTHMIQ_RAW_RETENTION_HOURS`, outputs and batch packages after
//! `RYTHMIQ_OUTPUT_RETENTION_DAYS` (their downloads then answer 410 `OUTPUT_EXPIRED`), and
//! `cpu_metrics` / `error_events` rows after `RYTHMIQ_RETENTION_DAYS` (`purge_observability()`,
//! migration `…_observability.sql`), and finished queue tasks after
//! `RYTHMIQ_TASK_RETENTION_HOURS`.

use std::time::Duration;

use rythmiq_shared::config::WorkerSettings;
use rythmiq_shared::storage::{ObjectKey, Storage};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::JobError;

/// Deletes `cpu_metrics` and `error_events` rows older than `keep_days`; returns how many went.
pub async fn purge_observability(
    conn: &mut PgConnection,
    keep_days: u32,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT purge_observability(make_interval(days => $1))")
        .bind(i32::try_from(keep_days).unwrap_or(i32::MAX))
        .fetch_one(conn)
        .await
}

/// Finished tasks deleted per statement, and statements per pass: a backlog (after an outage,
/// or the first pass over a queue that kept every task) goes 100,000 tasks a pass, in bounded
/// statements, and each statement's scan skips only the rows this pass deleted before it
/// (autovacuum reclaims them between passes).
const TASK_PURGE_BATCH: i64 = 5_000;
const TASK_PURGE_STATEMENTS: usize = 20;

/// Deletes the queue's finished tasks (`Done`, `Killed`) that finished more than `keep` ago,
/// up to [`TASK_PURGE_STATEMENTS`] × [`TASK_PURGE_BATCH`] of them; returns how many went.
/// apalis-postgres never deletes a task, so without this its table (and every index the claim
/// reads) would grow by each job ever run. A finished job's record is its `jobs` row (state,
/// attempts, error, worker) with its `documents` and `cpu_metrics` rows; its task only drove it.
/// Oban's pruner and River's job cleaner do the same for theirs (River keeps completed jobs a
/// day by default, as here).
pub async fn purge_finished_tasks(pool: &PgPool, keep: Duration) -> Result<u64, sqlx::Error> {
    let mut purged = 0;
    for _ in 0..TASK_PURGE_STATEMENTS {
        let n = sqlx::query(
            "DELETE FROM apalis.jobs WHERE id IN (
                 SELECT id FROM apalis.jobs
                 WHERE status IN ('Done', 'Killed')
                   AND done_at < now() - make_interval(secs => $1)
                 LIMIT $2)",
        )
        .bind(keep.as_secs_f64())
        .bind(TASK_PURGE_BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        purged += n;
        if n < TASK_PURGE_BATCH.unsigned_abs() {
            break;
        }
    }
    Ok(purged)
}

/// Deletes raw uploads and outputs whose retention has run out, in batches; a file that
/// cannot be deleted now stays listed and is tried again at the next sweep.
pub async fn delete_expired_files(pool: &PgPool, storage: &Storage, settings: &WorkerSettings) {
    let s = settings;
    let expired = match expired_files(pool, s.raw_retention, s.output_retention, 500).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "listing expired files failed; will retry");
            return;
        }
    };
    let delete_all = |keys: Vec<String>| async move {
        for key in keys {
            let path = object_store::path::Path::parse(&key)
                .map_err(|e| rythmiq_shared::Error::InvalidKey(e.to_string()))?;
            storage.delete(&path).await?;
        }
        Ok::<(), rythmiq_shared::Error>(())
    };
    let (mut raw, mut outputs) = (0usize, 0usize);
    let batches = expired
        .raw
        .into_iter()
        .map(|(job, key)| (job, vec![key], false))
        .chain(
            expired
                .outputs
                .into_iter()
                .map(|(job, keys)| (job, keys, true)),
        );
    for (job, keys, output) in batches {
        match delete_all(keys).await {
            Ok(()) => {
                if let Err(e) = mark_deleted(pool, job, output).await {
                    tracing::warn!(error = %e, "recording a deletion failed; will retry");
                } else if output {
                    outputs += 1;
                } else {
                    raw += 1;
                }
            }
            Err(e) => {
                tracing::warn!(job_id = %job, error = %e, "deleting an expired file failed; will retry");
            }
        }
    }
    if raw + outputs > 0 {
        tracing::info!(raw, outputs, "expired files deleted");
    }
}

/// Deletes packages older than the output retention and records it on their batches (then
/// their downloads answer 410 `OUTPUT_EXPIRED`). Returns how many went.
pub async fn delete_expired_packages(
    pool: &PgPool,
    storage: &Storage,
    settings: &WorkerSettings,
) -> Result<usize, JobError> {
    let mut conn = pool.acquire().await?;
    let expired = expired_packages(&mut conn, settings.output_retention, 500).await?;
    let mut deleted = 0;
    for (batch, key) in expired {
        let key = match ObjectKey::parse(&key) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(batch_id = %batch, error = %e, "a package's key is outside the layout");
                continue;
            }
        };
        match storage.delete_object(&key).await {
            Ok(()) => {
                mark_package_deleted(&mut conn, batch).await?;
                deleted += 1;
            }
            Err(e) => {
                tracing::warn!(batch_id = %batch, error = %e, "deleting an expired package failed; will retry");
            }
        }
    }
    Ok(deleted)
}

/// `(batch, zip key)` of packages older than the output retention, oldest first.
async fn expired_packages(
    conn: &mut PgConnection,
    after: Duration,
    limit: i64,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, zip_key FROM batches
         WHERE zip_key IS NOT NULL AND zip_deleted_at IS NULL
           AND finished_at < now() - make_interval(secs => $1)
         ORDER BY finished_at LIMIT $2",
    )
    .bind(after.as_secs_f64())
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Records that a batch's package is gone.
async fn mark_package_deleted(conn: &mut PgConnection, batch: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE batches SET zip_deleted_at = now() WHERE id = $1")
        .bind(batch)
        .execute(conn)
        .await?;
    Ok(())
}

/// Files whose retention has run out, at most `limit` of each kind per sweep.
#[derive(Debug, Default)]
struct ExpiredFiles {
    /// `(job, input_key)`: raw uploads of jobs finished longer than the raw retention ago.
    raw: Vec<(Uuid, String)>,
    /// `(job, keys)`: a completed job's output and, for documents, its OCR text.
    outputs: Vec<(Uuid, Vec<String>)>,
}

async fn expired_files(
    pool: &PgPool,
    raw_after: Duration,
    output_after: Duration,
    limit: i64,
) -> Result<ExpiredFiles, sqlx::Error> {
    let secs = |d: Duration| d.as_secs_f64();
    let raw: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, input_key FROM jobs
         WHERE input_deleted_at IS NULL AND state IN ('completed', 'failed')
           AND finished_at < now() - make_interval(secs => $1)
         ORDER BY finished_at LIMIT $2",
    )
    .bind(secs(raw_after))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let rows: Vec<(Uuid, String, Option<String>)> = sqlx::query_as(
        "SELECT j.id, j.output_key, d.ocr_text_key FROM jobs j
         LEFT JOIN documents d ON d.job_id = j.id
         WHERE j.output_deleted_at IS NULL AND j.state = 'completed'
           AND j.finished_at < now() - make_interval(secs => $1)
         ORDER BY j.finished_at LIMIT $2",
    )
    .bind(secs(output_after))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let outputs = rows
        .into_iter()
        .map(|(id, out, text)| (id, std::iter::once(out).chain(text).collect()))
        .collect();
    Ok(ExpiredFiles { raw, outputs })
}

/// Records that a job's raw upload (`output = false`) or output files are gone.
async fn mark_deleted(pool: &PgPool, job: Uuid, output: bool) -> Result<(), sqlx::Error> {
    let sql = if output {
        "UPDATE jobs SET output_deleted_at = now() WHERE id = $1"
    } else {
        "UPDATE jobs SET input_deleted_at = now() WHERE id = $1"
    };
    sqlx::query(sql).bind(job).execute(pool).await?;
    Ok(())
}
