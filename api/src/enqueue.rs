//! Creating jobs, shared by `POST /v1/jobs` (one job) and `POST /v1/batches` (one job per file):
//! the per-user lock and rate limit, the job rows, the credits and the apalis tasks, all inside
//! the caller's transaction so that either every row and task exists or none does.
//!
//! Every function takes the caller's connection (a transaction), never the pool, so a request
//! that runs as its user (row-level security) runs these as that user too.

use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use bytes::Bytes;
use rythmiq_shared::config::ApiSettings;
use rythmiq_shared::db::QUEUE;
use rythmiq_shared::domain::{JobTask, PortalRule};
use rythmiq_shared::sniff::{Sniffed, sniff_image};
use rythmiq_shared::telemetry::trace;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ApiError;

/// One job to create. `batch` is the batch and the file's position in it.
pub(crate) struct NewJob<'a> {
    pub job_id: Uuid,
    pub task_id: ulid::Ulid,
    pub rule: &'a PortalRule,
    /// The request's Idempotency-Key (single jobs only; a batch's key is the batch's).
    pub key: Option<&'a str>,
    pub fingerprint: &'a str,
    pub input_key: &'a str,
    pub input_bytes: usize,
    pub content_type: &'a str,
    /// The upload's name as its storage key holds it (sanitised).
    pub upload_filename: &'a str,
    pub batch: Option<(Uuid, i32)>,
}

/// What the content sniffer says an upload is; anything but an image is refused.
pub(crate) fn sniff(file: &Bytes) -> Result<Sniffed, ApiError> {
    sniff_image(file).ok_or_else(|| {
        ApiError::PayloadInvalid(
            "the file is not an image (JPEG, PNG, WebP, TIFF, BMP, GIF or HEIC expected)".into(),
        )
    })
}

/// Takes the user's enqueue lock (held to the end of the transaction) and checks that `new_jobs`
/// more jobs fit in the user's per-minute window.
///
/// One enqueue per user at a time, fleet-wide: the rate window and the balance are read and
/// changed without a race between a user's concurrent requests.
pub(crate) async fn admit(
    conn: &mut PgConnection,
    settings: &ApiSettings,
    user: Uuid,
    new_jobs: usize,
) -> Result<(), ApiError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7231))")
        .bind(user)
        .execute(&mut *conn)
        .await?;
    let limit = settings.rate_limit_per_minute;
    if limit == 0 {
        return Ok(());
    }
    // Ages (seconds) of the jobs in the window, oldest first.
    let ages: Vec<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM now() - created_at)::float8 FROM jobs
         WHERE user_id = $1 AND created_at > now() - interval '1 minute'
         ORDER BY created_at",
    )
    .bind(user)
    .fetch_all(&mut *conn)
    .await?;
    let limit_n = usize::try_from(limit).unwrap_or(usize::MAX);
    let excess = (ages.len() + new_jobs).saturating_sub(limit_n);
    if excess == 0 {
        return Ok(());
    }
    // Room for `new_jobs` opens when the `excess`-th oldest job in the window turns a minute old
    // (never, for a batch larger than the limit itself: then the full minute).
    let age = ages.get(excess - 1).copied().unwrap_or(0.0);
    let retry_after = (60.0 - age).ceil().clamp(1.0, 60.0) as u64;
    Err(ApiError::RateLimited { limit, retry_after })
}

/// Writes one job row. Returns false when an idempotent twin (same user and key) already exists:
/// then nothing was written.
pub(crate) async fn insert_job(
    conn: &mut PgConnection,
    settings: &ApiSettings,
    user: Uuid,
    correlation: &str,
    job: &NewJob<'_>,
) -> Result<bool, ApiError> {
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO jobs (id, user_id, portal_schema_id, portal_schema_version, max_attempts,
                           correlation_id, idempotency_key, request_fingerprint, task_id,
                           input_key, input_bytes, input_content_type, upload_filename,
                           batch_id, batch_index)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING id",
    )
    .bind(job.job_id)
    .bind(user)
    .bind(job.rule.id)
    .bind(job.rule.version)
    .bind(settings.max_attempts)
    .bind(correlation)
    .bind(job.key)
    .bind(job.fingerprint)
    .bind(job.task_id.to_string())
    .bind(job.input_key)
    .bind(i64::try_from(job.input_bytes).unwrap_or(i64::MAX))
    .bind(job.content_type)
    .bind(job.upload_filename)
    .bind(job.batch.map(|(b, _)| b))
    .bind(job.batch.map(|(_, i)| i))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(inserted.is_some())
}

/// Charges one credit for each of `jobs`, all or nothing (402 and the caller rolls back).
/// A user's first submission opens their account with the free allowance.
pub(crate) async fn charge(
    conn: &mut PgConnection,
    settings: &ApiSettings,
    user: Uuid,
    jobs: &[Uuid],
) -> Result<(), ApiError> {
    let cost = i32::try_from(jobs.len()).map_err(|_| ApiError::InsufficientCredits)?;
    sqlx::query(
        "INSERT INTO user_credits (user_id, balance) VALUES ($1, $2)
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user)
    .bind(settings.starting_credits.max(0))
    .execute(&mut *conn)
    .await?;
    let charged = sqlx::query(
        "UPDATE user_credits SET balance = balance - $2, updated_at = now()
         WHERE user_id = $1 AND balance >= $2",
    )
    .bind(user)
    .bind(cost)
    .execute(&mut *conn)
    .await?;
    if charged.rows_affected() == 0 {
        return Err(ApiError::InsufficientCredits);
    }
    sqlx::query("UPDATE jobs SET credits_charged = 1 WHERE id = ANY($1)")
        .bind(jobs)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Pushes one apalis task per `(job, task id)`, in the caller's transaction.
pub(crate) async fn push_tasks(
    conn: &mut PgConnection,
    settings: &ApiSettings,
    correlation: &str,
    jobs: &[(Uuid, ulid::Ulid)],
) -> Result<(), ApiError> {
    let traceparent = trace::current_traceparent();
    let max_attempts = usize::try_from(settings.max_attempts).unwrap_or(1);
    let mut tasks = Vec::with_capacity(jobs.len());
    for &(job_id, task_id) in jobs {
        let payload = serde_json::to_vec(&JobTask {
            job_id,
            correlation_id: correlation.into(),
            traceparent: traceparent.clone(),
        })
        .map_err(|e| ApiError::internal("task payload", e))?;
        tasks.push(
            TaskBuilder::new(payload)
                .task_id(TaskId::from_ulid(task_id))
                .max_attempts(max_attempts)
                .build(),
        );
    }
    apalis_postgres::queries::push_tasks(&mut *conn, QUEUE, tasks)
        .await
        .map_err(|e| ApiError::internal("enqueue", e))?;
    Ok(())
}
