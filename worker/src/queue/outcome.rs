//! Recording an attempt's outcome: complete, fail (retry or for good) or release, each with the
//! matching update of the `jobs` row (and `cpu_metrics`, `error_events`, the refund) in one
//! transaction. Every outcome is fenced: it lands only while this attempt still holds its task
//! (see [`super::apalis`]), so a worker presumed dead never overwrites the run that replaced it.
//!
//! Refunds live here rather than in a service of their own: a job's credit comes back in the
//! transaction that fails it for good (and after the reaper's `WORKER_LOST`, [`refund`]).

use std::time::Duration;

use rythmiq_shared::db::JOB_EVENTS_CHANNEL;
use rythmiq_shared::domain::ErrorCode;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::apalis;
use super::claim::Started;
use crate::job::JobOutput;
use rythmiq_pipeline::Processed;

/// Marks the task done and the job completed, with its output, its `documents` row and its
/// `cpu_metrics` row, in one statement (one round trip, one transaction: completion is the
/// queue's hot path). Returns the job's [`Announcement`] for `?wait=` clients, which the caller
/// sends after this commit: with its slot's next claim ([`super::claim::claim`]), or alone
/// ([`announce`]). Returns None when the task is no longer held by this attempt (it was
/// re-queued while we ran), and then records nothing: the job's updates read the fenced task
/// update's result.
///
/// The statement tells the jobs trigger not to NOTIFY (`rythmiq.notify_after_commit`): a
/// notifying commit holds Postgres' NOTIFY lock through its WAL flush, which made every
/// worker's completions commit one after another instead of sharing flushes.
pub async fn complete(
    pool: &PgPool,
    worker: &str,
    started: &Started,
    out: &JobOutput,
    cost: &AttemptCost,
) -> Result<Option<Announcement>, sqlx::Error> {
    let holder = started.holder(worker);
    let p = &out.processed;
    let finished: i64 = sqlx::query_scalar(
        "WITH task AS (
             UPDATE apalis.jobs SET status = 'Done', done_at = now()
             WHERE id = $1 AND lock_by = $2 AND attempts = $3 AND status = 'Running'
             RETURNING id
         ), job AS (
             UPDATE jobs SET state = 'completed', output_key = $5, output_bytes = $6,
                    output_width = $7, output_height = $8, output_dpi = $9, output_format = $10,
                    output_filename = $11, warnings = $12, ocr = $13, error_code = NULL,
                    error_message = NULL, report = $32, finished_at = now(), updated_at = now()
             WHERE id = $4 AND EXISTS (SELECT 1 FROM task)
             RETURNING id, user_id, portal_schema_id, input_bytes
         ), document AS (
             INSERT INTO documents (user_id, job_id, portal_schema_id, output_key, filename,
                                    content_type, bytes, ocr_text_key)
             SELECT user_id, id, portal_schema_id, $5, $11, $14, $6, $15 FROM job
             ON CONFLICT (job_id) DO NOTHING
         ), cpu AS (
             INSERT INTO cpu_metrics (job_id, worker_id, execution_temperature, processing_path,
                    total_cpu_seconds, total_wall_seconds, fetch_cpu_seconds, decode_cpu_seconds,
                    quality_cpu_seconds, pre_ocr_cpu_seconds, enhancement_cpu_seconds,
                    ocr_cpu_seconds, schema_cpu_seconds, upload_cpu_seconds,
                    input_file_size_bytes, output_file_size_bytes, quality_score, ocr_confidence,
                    enhancement_skipped, page_count, startup_cpu_seconds, face_cpu_seconds,
                    capture_cpu_seconds)
             SELECT id, $2, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27,
                    input_bytes, $6, $28, $29, $30, 1, $31, $33, $34
             FROM job
         ), announced_after_commit AS (
             SELECT set_config('rythmiq.notify_after_commit', 'on', true)
         )
         SELECT count(*) FROM task CROSS JOIN announced_after_commit",
    )
    .bind(holder.task_id)
    .bind(holder.worker)
    .bind(holder.attempt)
    .bind(started.input.job_id)
    .bind(&out.output_key)
    .bind(i64::try_from(out.bytes).unwrap_or(i64::MAX))
    .bind(i32::try_from(p.width).unwrap_or(i32::MAX))
    .bind(i32::try_from(p.height).unwrap_or(i32::MAX))
    .bind(i32::try_from(p.dpi).unwrap_or(i32::MAX))
    .bind(p.format.extension())
    .bind(&out.filename)
    .bind(serde_json::json!(p.warnings))
    .bind(p.ocr.as_ref().map(|r| {
        serde_json::json!({"confidence": r.confidence, "lines": r.lines, "chars": r.chars,
                           "rolled_back": r.rolled_back})
    }))
    .bind(p.format.content_type())
    .bind(&out.ocr_text_key)
    .bind(if cost.cold { "cold" } else { "warm" })
    .bind(p.path.as_str())
    .bind(total_cpu(p, cost))
    .bind(cost.wall_seconds)
    .bind(stage_cpu(p, "fetch"))
    .bind(stage_cpu(p, "decode"))
    .bind(stage_cpu(p, "quality"))
    .bind(stage_cpu(p, "pre_ocr"))
    .bind(stage_cpu(p, "enhance"))
    .bind(stage_cpu(p, "ocr"))
    // The check of the output is the last of SCHEMA's verifications.
    .bind(stages_cpu(p, &["schema", "check"]))
    .bind(stage_cpu(p, "upload"))
    .bind(f64::from(p.quality.score))
    .bind(p.ocr.as_ref().map(|r| f64::from(r.confidence)))
    .bind(p.enhancement.is_none())
    .bind(cost.startup_cpu_seconds)
    .bind(out.report.as_ref().map(sqlx::types::Json))
    .bind(stages_cpu(
        p,
        &["face", "face_decode", "frame", "background"],
    ))
    .bind(stage_cpu(p, "capture"))
    .fetch_one(pool)
    .await?;
    Ok((finished == 1).then(|| Announcement::completed(started.input.job_id)))
}

/// A finished job to announce on the jobs channel, as the jobs trigger would have: the
/// notification `?wait=` clients wake on. It is sent after the job's own commit, in a
/// transaction that does not wait for its WAL flush (so it holds Postgres' NOTIFY lock only for
/// that commit): a worker's slot sends it with its next claim, one statement for both. The
/// job's state is already durable; if the announcement is lost (a crash in between), a waiter
/// reads the finished job when its wait runs out.
/// Only completions are announced this way (the jobs trigger announces every other finish).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub job: Uuid,
}

impl Announcement {
    fn completed(job: Uuid) -> Self {
        Self { job }
    }

    /// The notifications' payloads, `{job}:completed`, as the jobs trigger writes them.
    pub(crate) fn payloads(announcements: &[Self]) -> Vec<String> {
        announcements
            .iter()
            .map(|a| format!("{}:completed", a.job))
            .collect()
    }
}

/// Sends `announcements` on their own (a slot that stops sends what its next claim would have).
/// A failure is only logged: see [`Announcement`].
pub async fn announce(pool: &PgPool, announcements: &[Announcement]) {
    if announcements.is_empty() {
        return;
    }
    let payloads = Announcement::payloads(announcements);
    let sent = sqlx::query(
        "SELECT set_config('synchronous_commit', 'off', true),
                (SELECT count(pg_notify($1, p)) FROM unnest($2::text[]) AS p)",
    )
    .bind(JOB_EVENTS_CHANNEL)
    .bind(&payloads)
    .execute(pool)
    .await;
    if let Err(e) = sent {
        tracing::warn!(jobs = ?payloads, error = %e, "could not announce finished jobs to waiting clients");
    }
}

/// How an attempt ran, for `cpu_metrics`.
#[derive(Debug, Clone, Copy)]
pub struct AttemptCost {
    /// The first job of this worker process (caches and models not yet warm).
    pub cold: bool,
    pub wall_seconds: f64,
    /// The process's start-up CPU, on the first job it completes ([`crate::StartupCpu`]).
    pub startup_cpu_seconds: f64,
}

/// A stage's CPU seconds (summed when it ran more than once); None when it did not run.
fn stage_cpu(p: &Processed, name: &str) -> Option<f64> {
    stages_cpu(p, &[name])
}

/// [`stage_cpu`] of several stages that share a column (FACE: finding the face, and framing).
fn stages_cpu(p: &Processed, names: &[&str]) -> Option<f64> {
    let mut found = p
        .stages
        .iter()
        .filter(|s| names.contains(&s.name))
        .peekable();
    found.peek()?;
    Some(found.map(|s| s.cpu_seconds).sum())
}

/// The job's CPU seconds for `cpu_metrics`: every stage, plus the start-up it carries.
fn total_cpu(p: &Processed, cost: &AttemptCost) -> f64 {
    p.stages.iter().map(|s| s.cpu_seconds).sum::<f64>() + cost.startup_cpu_seconds
}

/// Records a failed attempt: retried after a persisted backoff when `retryable` and attempts
/// remain, failed for good otherwise. Returns the job's new state, or None when the task is no
/// longer held by this attempt (then nothing is recorded).
pub async fn fail(
    pool: &PgPool,
    worker: &str,
    started: &Started,
    code: ErrorCode,
    retryable: bool,
    message: &str,
    backoff: Duration,
) -> Result<Option<&'static str>, sqlx::Error> {
    let retry = retryable && started.attempt < started.max_attempts;
    let mut tx = pool.begin().await?;
    let (status, delay) = if retry {
        ("Failed", Some(backoff))
    } else {
        ("Killed", None)
    };
    if !apalis::finish(&mut tx, started.holder(worker), status, delay).await? {
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
    record_error(&mut tx, started, worker, code, retryable, message).await?;
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

/// Hands an unfinished task back (graceful shutdown): the attempt is not charged. Nothing
/// happens when the task is no longer held by this attempt.
pub async fn release(pool: &PgPool, worker: &str, started: &Started) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    if apalis::release(&mut tx, started.holder(worker)).await? {
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

async fn record_error(
    tx: &mut Transaction<'_, Postgres>,
    started: &Started,
    worker: &str,
    code: ErrorCode,
    retryable: bool,
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
    .bind(retryable)
    .bind(started.attempt)
    .bind(&started.correlation_id)
    .bind(message)
    .bind(worker)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
