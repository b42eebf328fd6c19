//! The SQL behind the worker fleet, next to the code that runs it.
//!
//! Claiming goes through apalis-postgres (`apalis.get_jobs`: `FOR UPDATE SKIP LOCKED`). What
//! apalis-postgres 1.0 leaves open is closed here with SQL of our own, against its tables:
//! attempts are counted when an attempt *starts* (so a crash consumes one), retries are delayed
//! by moving `run_at` (backoff persisted in the database), orphans of dead workers are re-queued
//! or failed for good once their attempts are spent, and every queue transition updates the
//! `jobs` row in the same transaction so the two never disagree.

use std::time::Duration;

use apalis_core::worker::context::WorkerContext;
use rythmiq_shared::db::QUEUE;
use rythmiq_shared::domain::{ErrorCode, JobTask};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::error::JobError;
use crate::pipeline::{JobInput, JobOutput};

/// A task this worker claimed and started.
#[derive(Debug, Clone)]
pub struct Started {
    pub task_id: String,
    pub attempt: i32,
    pub max_attempts: i32,
    pub correlation_id: String,
    /// The enqueuing request's trace context, from the task payload.
    pub traceparent: Option<String>,
    pub input: JobInput,
}

const REGISTER: &str =
    "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen)
     VALUES ($1, $2, 'rythmiq-worker', '', now())
     ON CONFLICT (id) DO UPDATE SET last_seen = now()";

/// Registers (or re-registers) this worker so its heartbeat can be watched.
pub async fn register(pool: &PgPool, worker: &str) -> Result<(), sqlx::Error> {
    sqlx::query(REGISTER)
        .bind(worker)
        .bind(QUEUE)
        .execute(pool)
        .await?;
    Ok(())
}

/// Records a heartbeat; re-registers if the row has gone (a wiped or restored database).
pub async fn heartbeat(pool: &PgPool, worker: &str) -> Result<(), sqlx::Error> {
    let done = sqlx::query("UPDATE apalis.workers SET last_seen = now() WHERE id = $1")
        .bind(worker)
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        register(pool, worker).await?;
    }
    Ok(())
}

/// Claims at most one ready task through apalis-postgres and starts it: the attempt is counted
/// and the job moves to `processing`, in one transaction.
pub async fn claim(pool: &PgPool, worker: &WorkerContext) -> Result<Option<Started>, JobError> {
    let config = apalis_postgres::Config::default()
        .queue(QUEUE)
        .batch_size(1);
    let mut conn = pool.acquire().await?;
    let tasks = apalis_postgres::queries::fetch_next(&mut *conn, &config, worker)
        .await
        .map_err(|e| JobError::Internal(format!("claim: {e}")))?;
    drop(conn);
    let Some(task) = tasks.into_iter().next() else {
        return Ok(None);
    };
    let task_id = task
        .task_id()
        .map(ToString::to_string)
        .ok_or_else(|| JobError::Internal("claimed task has no id".into()))?;
    let payload: Option<JobTask> = serde_json::from_slice(&task.args).ok();
    start(pool, worker.name(), &task_id, payload).await
}

async fn start(
    pool: &PgPool,
    worker: &str,
    task_id: &str,
    payload: Option<JobTask>,
) -> Result<Option<Started>, JobError> {
    let mut tx = pool.begin().await?;
    let counted: Option<(i32, i32)> = sqlx::query_as(
        "UPDATE apalis.jobs SET status = 'Running', attempts = attempts + 1, lock_at = now()
         WHERE id = $1 AND lock_by = $2 AND status = 'Queued'
         RETURNING attempts, max_attempts",
    )
    .bind(task_id)
    .bind(worker)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((attempt, max_attempts)) = counted else {
        // Another worker's reaper took it back in between; nothing of ours to do.
        return Ok(None);
    };

    let row: Option<(Uuid, Uuid, Uuid, String, String)> = sqlx::query_as(
        "UPDATE jobs SET state = 'processing', attempts = $2, worker_id = $3, updated_at = now(),
                started_at = COALESCE(started_at, now())
         WHERE task_id = $1 AND state IN ('pending', 'processing')
         RETURNING id, user_id, portal_schema_id, input_key, correlation_id",
    )
    .bind(task_id)
    .bind(attempt)
    .bind(worker)
    .fetch_optional(&mut *tx)
    .await?;

    let Some((job_id, user_id, portal_id, input_key, correlation_id)) = row else {
        // No live job behind the task (deleted, or already final): close the task.
        sqlx::query("UPDATE apalis.jobs SET status = 'Done', done_at = now() WHERE id = $1")
            .bind(task_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(None);
    };
    if let Some(p) = payload.as_ref().filter(|p| p.job_id != job_id) {
        tracing::warn!(task_id, payload_job = %p.job_id, %job_id, "task payload names another job");
    }
    let rule = rythmiq_shared::db::portal_by_id(&mut *tx, portal_id).await?;
    tx.commit().await?;
    Ok(Some(Started {
        task_id: task_id.to_owned(),
        attempt,
        max_attempts,
        correlation_id,
        traceparent: payload.and_then(|p| p.traceparent),
        input: JobInput {
            job_id,
            user_id,
            input_key,
            rule,
        },
    }))
}

/// Marks the task done and the job completed, with its output, in one transaction.
/// Returns false when the task is no longer ours (it was re-queued while we ran).
pub async fn complete(
    pool: &PgPool,
    worker: &str,
    started: &Started,
    out: &JobOutput,
    cost: &AttemptCost,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if !release_lock(&mut tx, worker, &started.task_id, "Done", None).await? {
        return Ok(false);
    }
    let job = started.input.job_id;
    sqlx::query(
        "UPDATE jobs SET state = 'completed', output_key = $2, output_bytes = $3,
                output_width = $4, output_height = $5, output_dpi = $6, output_format = $7,
                output_filename = $8, warnings = $9, ocr = $10, error_code = NULL,
                error_message = NULL, finished_at = now(), updated_at = now()
         WHERE id = $1",
    )
    .bind(job)
    .bind(&out.output_key)
    .bind(i64::try_from(out.bytes).unwrap_or(i64::MAX))
    .bind(i32::try_from(out.processed.width).unwrap_or(i32::MAX))
    .bind(i32::try_from(out.processed.height).unwrap_or(i32::MAX))
    .bind(i32::try_from(out.processed.dpi).unwrap_or(i32::MAX))
    .bind(out.processed.format.extension())
    .bind(&out.filename)
    .bind(serde_json::json!(out.processed.warnings))
    .bind(out.processed.ocr.as_ref().map(|r| {
        serde_json::json!({"confidence": r.confidence, "lines": r.lines, "chars": r.chars,
                           "rolled_back": r.rolled_back})
    }))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO documents (user_id, job_id, portal_schema_id, output_key, filename,
                                content_type, bytes, ocr_text_key)
         SELECT user_id, id, portal_schema_id, $2, $3, $4, $5, $6 FROM jobs WHERE id = $1
         ON CONFLICT (job_id) DO NOTHING",
    )
    .bind(job)
    .bind(&out.output_key)
    .bind(&out.filename)
    .bind(out.processed.format.content_type())
    .bind(i64::try_from(out.bytes).unwrap_or(i64::MAX))
    .bind(&out.ocr_text_key)
    .execute(&mut *tx)
    .await?;
    record_cpu(&mut tx, worker, started, out, cost).await?;
    tx.commit().await?;
    Ok(true)
}

/// How an attempt ran, for `cpu_metrics`.
#[derive(Debug, Clone, Copy)]
pub struct AttemptCost {
    /// The first job of this worker process (caches and models not yet warm).
    pub cold: bool,
    pub wall_seconds: f64,
}

/// One `cpu_metrics` row per finished job, written with the job's completion.
async fn record_cpu(
    tx: &mut Transaction<'_, Postgres>,
    worker: &str,
    started: &Started,
    out: &JobOutput,
    cost: &AttemptCost,
) -> Result<(), sqlx::Error> {
    let p = &out.processed;
    let stage = |name: &str| -> Option<f64> {
        let mut found = p.stages.iter().filter(|s| s.name == name).peekable();
        found.peek()?;
        Some(found.map(|s| s.cpu_seconds).sum())
    };
    let total: f64 = p.stages.iter().map(|s| s.cpu_seconds).sum();
    sqlx::query(
        "INSERT INTO cpu_metrics (job_id, worker_id, execution_temperature, processing_path,
                total_cpu_seconds, total_wall_seconds, fetch_cpu_seconds, decode_cpu_seconds,
                quality_cpu_seconds, pre_ocr_cpu_seconds, enhancement_cpu_seconds,
                ocr_cpu_seconds, schema_cpu_seconds, upload_cpu_seconds, input_file_size_bytes,
                output_file_size_bytes, quality_score, ocr_confidence, enhancement_skipped,
                page_count)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, input_bytes, $15,
                $16, $17, $18, 1
         FROM jobs WHERE id = $1",
    )
    .bind(started.input.job_id)
    .bind(worker)
    .bind(if cost.cold { "cold" } else { "warm" })
    .bind(p.path.as_str())
    .bind(total)
    .bind(cost.wall_seconds)
    .bind(stage("fetch"))
    .bind(stage("decode"))
    .bind(stage("quality"))
    .bind(stage("pre_ocr"))
    .bind(stage("enhance"))
    .bind(stage("ocr"))
    .bind(stage("schema"))
    .bind(stage("upload"))
    .bind(i64::try_from(out.bytes).unwrap_or(i64::MAX))
    .bind(f64::from(p.quality.score))
    .bind(p.ocr.as_ref().map(|r| f64::from(r.confidence)))
    .bind(p.enhancement.is_none())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Files whose retention has run out, at most `limit` of each kind per sweep.
#[derive(Debug, Default)]
pub struct ExpiredFiles {
    /// `(job, input_key)`: raw uploads of jobs finished longer than the raw retention ago.
    pub raw: Vec<(Uuid, String)>,
    /// `(job, keys)`: a completed job's output and, for documents, its OCR text.
    pub outputs: Vec<(Uuid, Vec<String>)>,
}

pub async fn expired_files(
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
pub async fn mark_deleted(pool: &PgPool, job: Uuid, output: bool) -> Result<(), sqlx::Error> {
    let sql = if output {
        "UPDATE jobs SET output_deleted_at = now() WHERE id = $1"
    } else {
        "UPDATE jobs SET input_deleted_at = now() WHERE id = $1"
    };
    sqlx::query(sql).bind(job).execute(pool).await?;
    Ok(())
}

/// Fleet housekeeping, run by whichever worker takes the advisory lock (one runner at a time):
/// refresh the rollups and apply retention. Returns the rows purged, or None when another
/// worker holds the lock.
pub async fn maintenance(pool: &PgPool, keep_days: u32) -> Result<Option<i64>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(MAINTENANCE_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(None);
    }
    sqlx::query("SELECT refresh_rollups()")
        .execute(&mut *tx)
        .await?;
    let purged: i64 = sqlx::query_scalar("SELECT purge_observability(make_interval(days => $1))")
        .bind(i32::try_from(keep_days).unwrap_or(i32::MAX))
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(purged))
}

/// Advisory lock key of the maintenance runner ("rythmiq" in ASCII).
pub const MAINTENANCE_LOCK: i64 = 0x0072_7974_686d_6971;

/// Records a failed attempt: retried after a persisted backoff when the code is retryable and
/// attempts remain, failed for good otherwise. Returns the job's new state, or None when the
/// task is no longer ours.
pub async fn fail(
    pool: &PgPool,
    worker: &str,
    started: &Started,
    code: ErrorCode,
    message: &str,
    backoff: Duration,
) -> Result<Option<&'static str>, sqlx::Error> {
    let retry = code.retryable() && started.attempt < started.max_attempts;
    let mut tx = pool.begin().await?;
    let (status, delay) = if retry {
        ("Failed", Some(backoff))
    } else {
        ("Killed", None)
    };
    if !release_lock(&mut tx, worker, &started.task_id, status, delay).await? {
        return Ok(None);
    }
    let state = if retry { "pending" } else { "failed" };
    sqlx::query(
        "UPDATE jobs SET state = $2, error_code = $3, error_message = $4, updated_at = now(),
                finished_at = CASE WHEN $2 = 'failed' THEN now() END
         WHERE id = $1",
    )
    .bind(started.input.job_id)
    .bind(state)
    .bind(code.as_str())
    .bind(message)
    .execute(&mut *tx)
    .await?;
    record_error(&mut tx, started, worker, code, message).await?;
    if !retry && code.refundable() {
        refund(&mut *tx, started.input.job_id).await?;
    }
    tx.commit().await?;
    Ok(Some(state))
}

/// Gives a failed job's credit back to its user, exactly once (the job's `credits_charged` is
/// cleared in the same statement).
pub async fn refund<'e, E>(executor: E, job: Uuid) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    sqlx::query(
        "WITH owed AS (
             SELECT user_id, credits_charged FROM jobs
             WHERE id = $1 AND credits_charged > 0 FOR UPDATE
         ), cleared AS (
             UPDATE jobs SET credits_charged = 0 FROM owed WHERE jobs.id = $1
         )
         UPDATE user_credits u SET balance = u.balance + owed.credits_charged, updated_at = now()
         FROM owed WHERE u.user_id = owed.user_id",
    )
    .bind(job)
    .execute(executor)
    .await?;
    Ok(())
}

/// Hands an unfinished task back (graceful shutdown): the attempt is not charged.
pub async fn release(pool: &PgPool, worker: &str, started: &Started) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let released = sqlx::query(
        "UPDATE apalis.jobs SET status = 'Pending', attempts = GREATEST(attempts - 1, 0),
                lock_by = NULL, lock_at = NULL, run_at = now()
         WHERE id = $1 AND lock_by = $2 AND status = 'Running'",
    )
    .bind(&started.task_id)
    .bind(worker)
    .execute(&mut *tx)
    .await?;
    if released.rows_affected() == 1 {
        sqlx::query(
            "UPDATE jobs SET state = 'pending', attempts = GREATEST(attempts - 1, 0),
                    updated_at = now()
             WHERE id = $1 AND state = 'processing'",
        )
        .bind(started.input.job_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Moves our running task to `status`; `delay` re-queues it (unlocked) for later.
async fn release_lock(
    tx: &mut Transaction<'_, Postgres>,
    worker: &str,
    task_id: &str,
    status: &str,
    delay: Option<Duration>,
) -> Result<bool, sqlx::Error> {
    let done = match delay {
        Some(delay) => {
            sqlx::query(
                "UPDATE apalis.jobs SET status = $3, lock_by = NULL, lock_at = NULL,
                        run_at = now() + make_interval(secs => $4)
                 WHERE id = $1 AND lock_by = $2 AND status = 'Running'",
            )
            .bind(task_id)
            .bind(worker)
            .bind(status)
            .bind(delay.as_secs_f64())
            .execute(&mut **tx)
            .await?
        }
        None => {
            sqlx::query(
                "UPDATE apalis.jobs SET status = $3, done_at = now()
                 WHERE id = $1 AND lock_by = $2 AND status = 'Running'",
            )
            .bind(task_id)
            .bind(worker)
            .bind(status)
            .execute(&mut **tx)
            .await?
        }
    };
    Ok(done.rows_affected() == 1)
}

async fn record_error(
    tx: &mut Transaction<'_, Postgres>,
    started: &Started,
    worker: &str,
    code: ErrorCode,
    message: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO error_events (job_id, error_code, error_stage, retryable, attempt,
                                   correlation_id, message, worker_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(started.input.job_id)
    .bind(code.as_str())
    .bind(code.stage())
    .bind(code.retryable())
    .bind(started.attempt)
    .bind(&started.correlation_id)
    .bind(message)
    .bind(worker)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Takes back the tasks of workers silent for longer than `orphan_timeout`. A task that was
/// running has used an attempt: it is retried after backoff while attempts remain, and fails for
/// good as `WORKER_LOST` when they are spent (a poison job that kills every worker stops here).
/// A task that was claimed but not started is simply re-queued. Safe to run from every worker.
/// Returns each job taken back with its new state (`pending` or `failed`).
pub async fn reap_orphans(
    pool: &PgPool,
    orphan_timeout: Duration,
    retry_base: Duration,
    retry_max: Duration,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    let reaped: Vec<(Uuid, String)> = sqlx::query_as(
        "WITH stale AS (
             SELECT j.id, j.status, j.attempts, j.max_attempts
             FROM apalis.jobs j JOIN apalis.workers w ON w.id = j.lock_by
             WHERE j.job_type = $1 AND j.status IN ('Queued', 'Running')
               AND w.last_seen < now() - make_interval(secs => $2)
             FOR UPDATE OF j SKIP LOCKED
         ), moved AS (
             UPDATE apalis.jobs a SET
                 status = CASE WHEN s.status = 'Running' AND s.attempts >= s.max_attempts
                               THEN 'Killed' ELSE 'Pending' END,
                 done_at = CASE WHEN s.status = 'Running' AND s.attempts >= s.max_attempts
                                THEN now() END,
                 run_at = CASE WHEN s.status = 'Running'
                               THEN now() + make_interval(secs => LEAST(
                                    $3 * power(2, GREATEST(s.attempts - 1, 0)), $4))
                               ELSE now() END,
                 lock_by = NULL, lock_at = NULL,
                 last_result = '{\"Err\": \"worker lost\"}'::jsonb
             FROM stale s WHERE a.id = s.id
             RETURNING a.id, a.status, s.status AS was
         ), updated AS (
             UPDATE jobs SET
                 state = CASE WHEN m.status = 'Killed' THEN 'failed' ELSE 'pending' END,
                 error_code = CASE WHEN m.was = 'Running' THEN 'WORKER_LOST' ELSE error_code END,
                 error_message = CASE
                     WHEN m.status = 'Killed' THEN 'the worker running this job stopped '
                          || 'responding on every attempt; giving up after '
                          || jobs.attempts || ' attempts'
                     WHEN m.was = 'Running' THEN 'the worker running this job stopped responding; retrying'
                     ELSE error_message END,
                 finished_at = CASE WHEN m.status = 'Killed' THEN now() END,
                 updated_at = now()
             FROM moved m WHERE jobs.task_id = m.id
             RETURNING jobs.id, jobs.state, jobs.attempts, jobs.correlation_id, jobs.worker_id,
                       m.was
         ), events AS (
             INSERT INTO error_events (job_id, error_code, error_stage, retryable, attempt,
                                       correlation_id, message, worker_id)
             SELECT id, 'WORKER_LOST', 'worker', state <> 'failed', attempts, correlation_id,
                    'worker stopped responding', worker_id
             FROM updated WHERE was = 'Running'
         )
         SELECT id, state FROM updated",
    )
    .bind(QUEUE)
    .bind(orphan_timeout.as_secs_f64())
    .bind(retry_base.as_secs_f64())
    .bind(retry_max.as_secs_f64())
    .fetch_all(pool)
    .await?;
    for (job, state) in &reaped {
        tracing::warn!(job_id = %job, state, "took back a job from a worker that stopped responding");
        if state == "failed" {
            // WORKER_LOST is never the upload's fault (as far as we can tell): refund.
            refund(pool, *job).await?;
        }
    }
    Ok(reaped)
}
