//! The SQL behind packaging, next to the code that runs it. Every function takes a connection,
//! so the caller decides where it runs (a pooled connection, or a transaction).
//!
//! A batch is claimed by one atomic `UPDATE`: it moves from `processing` to `packaging` only
//! when none of its jobs is unfinished, or is taken over from a packager that has held it
//! longer than the stale limit (a crashed worker). Each claim counts an attempt, and a result is
//! recorded only while the claim that produced it still stands (same attempt number), so a
//! packager that was taken over can never overwrite its successor.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rythmiq_shared::domain::{BatchState, ErrorCode, JobState};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// A batch this worker claimed for packaging.
#[derive(Debug, Clone, FromRow)]
pub struct Claimed {
    pub id: Uuid,
    pub user_id: Uuid,
    /// This claim's attempt number (1 for the first).
    pub packaging_attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// A job of the batch being packaged, in request order.
#[derive(Debug, Clone, FromRow)]
pub struct PackJob {
    pub id: Uuid,
    pub batch_index: i32,
    pub slug: String,
    pub portal_schema_version: i32,
    pub upload_filename: Option<String>,
    pub state: JobState,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub output_key: Option<String>,
    pub output_filename: Option<String>,
    pub output_format: Option<String>,
    pub output_width: Option<i32>,
    pub output_height: Option<i32>,
    pub output_dpi: Option<i32>,
    pub output_deleted_at: Option<DateTime<Utc>>,
    /// The output's check report (`jobs.report`).
    pub report: Option<serde_json::Value>,
}

/// How a packaging run ended, as recorded on the batch.
#[derive(Debug, Clone)]
pub struct Finished {
    pub state: BatchState,
    /// `(key, bytes, files)` of the stored ZIP; `None` when there is no package.
    pub zip: Option<(String, i64, i32)>,
    pub report: Option<serde_json::Value>,
    pub error: Option<(ErrorCode, String)>,
}

/// The batch a job belongs to, if any.
pub async fn batch_of(conn: &mut PgConnection, job: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    Ok(
        sqlx::query_scalar::<_, Option<Uuid>>("SELECT batch_id FROM jobs WHERE id = $1")
            .bind(job)
            .fetch_optional(conn)
            .await?
            .flatten(),
    )
}

/// Claims `batch` for packaging (see the module documentation), or None when it is not ready,
/// already claimed by a live packager, or finished.
pub async fn claim(
    conn: &mut PgConnection,
    batch: Uuid,
    stale_after: Duration,
) -> Result<Option<Claimed>, sqlx::Error> {
    sqlx::query_as::<_, Claimed>(
        "UPDATE batches SET state = 'packaging', packaging_started_at = now(),
                packaging_attempts = packaging_attempts + 1, updated_at = now()
         WHERE id = $1
           AND (state = 'processing'
                OR (state = 'packaging'
                    AND packaging_started_at < now() - make_interval(secs => $2)))
           AND NOT EXISTS (SELECT 1 FROM jobs
                           WHERE batch_id = $1 AND state NOT IN ('completed', 'failed'))
         RETURNING id, user_id, packaging_attempts, created_at",
    )
    .bind(batch)
    .bind(stale_after.as_secs_f64())
    .fetch_optional(conn)
    .await
}

/// The batch's jobs in request order, with what packaging needs.
pub async fn jobs(conn: &mut PgConnection, batch: Uuid) -> Result<Vec<PackJob>, sqlx::Error> {
    sqlx::query_as::<_, PackJob>(
        "SELECT j.id, j.batch_index, p.slug, j.portal_schema_version, j.upload_filename, j.state,
                j.error_code, j.error_message, j.output_key, j.output_filename, j.output_format,
                j.output_width, j.output_height, j.output_dpi, j.output_deleted_at, j.report
         FROM jobs j JOIN portal_schemas p ON p.id = j.portal_schema_id
         WHERE j.batch_id = $1 ORDER BY j.batch_index",
    )
    .bind(batch)
    .fetch_all(conn)
    .await
}

/// Records a packaging run's end. Returns false when the claim no longer stands (another
/// packager took the batch over): then nothing is written.
pub async fn finish(
    conn: &mut PgConnection,
    claimed: &Claimed,
    done: &Finished,
) -> Result<bool, sqlx::Error> {
    let (zip_key, zip_bytes, zip_files) = match &done.zip {
        Some((k, b, f)) => (Some(k.as_str()), Some(*b), Some(*f)),
        None => (None, None, None),
    };
    let updated = sqlx::query(
        "UPDATE batches SET state = $3, zip_key = $4, zip_bytes = $5, zip_files = $6,
                report = $7, error_code = $8, error_message = $9, finished_at = now(),
                updated_at = now()
         WHERE id = $1 AND state = 'packaging' AND packaging_attempts = $2",
    )
    .bind(claimed.id)
    .bind(claimed.packaging_attempts)
    .bind(done.state)
    .bind(zip_key)
    .bind(zip_bytes)
    .bind(zip_files)
    .bind(&done.report)
    .bind(done.error.as_ref().map(|(c, _)| c.as_str()))
    .bind(done.error.as_ref().map(|(_, m)| m.as_str()))
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Hands a claimed batch back after a failed run, for the sweep to try again.
pub async fn release(conn: &mut PgConnection, claimed: &Claimed) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE batches SET state = 'processing', packaging_started_at = NULL, updated_at = now()
         WHERE id = $1 AND state = 'packaging' AND packaging_attempts = $2",
    )
    .bind(claimed.id)
    .bind(claimed.packaging_attempts)
    .execute(conn)
    .await?;
    Ok(())
}
