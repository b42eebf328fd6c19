//! Claiming a task and starting it, in one statement: the next ready task is locked (`FOR UPDATE
//! SKIP LOCKED`, the order and filter of apalis-postgres' own claim, `apalis.get_jobs`), its
//! attempt is counted, its job moves to `processing`, and the job's portal rule comes back with
//! it. One round trip and one transaction per claim: the claim is the queue's hot path (see
//! `load/queue/README.md`), and a task is never left claimed but not started.

use rythmiq_shared::db::{JOB_EVENTS_CHANNEL, PORTAL_COLUMNS, QUEUE};
use rythmiq_shared::domain::{JobTask, PortalRule};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgPool, Row};
use std::sync::LazyLock;
use uuid::Uuid;

use super::apalis::{self, WorkerContext};
use super::outcome::Announcement;
use crate::error::JobError;
use crate::job::JobInput;

/// A task this worker claimed and started: one attempt, which alone may record its outcome.
#[derive(Debug, Clone)]
pub struct Started {
    pub task_id: String,
    /// The attempt number, counted at start; outcomes are fenced on it.
    pub attempt: i32,
    pub max_attempts: i32,
    pub correlation_id: String,
    /// The enqueuing request's trace context, from the task payload.
    pub traceparent: Option<String>,
    pub input: JobInput,
}

impl Started {
    /// This attempt, as the holder of its task.
    pub(crate) fn holder<'a>(&'a self, worker: &'a str) -> apalis::Holder<'a> {
        apalis::Holder {
            task_id: &self.task_id,
            worker,
            attempt: self.attempt,
        }
    }
}

/// The claim: `task` locks and starts the next ready task (apalis' `get_jobs` filter and order,
/// served by its partial index, then straight to `Running` with one more attempt), `job` moves
/// the live job behind it to `processing`; the job's columns are NULL when it has none.
/// The output columns are named apart from the portal rule's ([`PORTAL_COLUMNS`]).
///
/// `no_flush` commits the claim without waiting for its WAL flush (`synchronous_commit` off for
/// this transaction only): a claim lost with a database crash sends the task back to `Pending`
/// with its job, both in this one transaction, and the job's completion (a synchronous commit)
/// flushes the claim before it anyway. The claim is half of a job's commits on the hot path.
/// It also sends the slot's pending [`Announcement`]s (the jobs it completed last): `no_flush`
/// is the query's outer side, so it runs, and one row comes back, whether a task was found or
/// not (its columns are then NULL).
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH next AS (
             SELECT id FROM apalis.jobs
             WHERE (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))
               AND run_at < now() AND job_type = $2
             ORDER BY priority DESC, run_at ASC
             LIMIT 1
             FOR UPDATE SKIP LOCKED
         ), task AS (
             UPDATE apalis.jobs t SET status = 'Running', lock_by = $1, lock_at = now(),
                    attempts = t.attempts + 1
             FROM next WHERE t.id = next.id
             RETURNING t.id AS task_id, t.job AS task_args, t.attempts AS attempt,
                       t.max_attempts AS task_max_attempts
         ), job AS (
             UPDATE jobs j SET state = 'processing', attempts = task.attempt, worker_id = $1,
                    updated_at = now(), started_at = COALESCE(j.started_at, now())
             FROM task
             WHERE j.task_id = task.task_id AND j.state IN ('pending', 'processing')
             RETURNING j.id AS job_id, j.user_id AS job_user_id,
                       j.portal_schema_id AS job_portal_id, j.input_key AS job_input_key,
                       j.correlation_id AS job_correlation_id
         ), no_flush AS (
             SELECT set_config('synchronous_commit', 'off', true),
                    (SELECT count(pg_notify($3, p)) FROM unnest($4::text[]) AS p)
         )
         SELECT task.*, job.*, {PORTAL_COLUMNS}
         FROM no_flush
         LEFT JOIN task ON true
         LEFT JOIN job ON true
         LEFT JOIN portal_schemas ON portal_schemas.id = job.job_portal_id"
    )
});

/// Claims at most one ready task for `worker` and starts it, sending `announce` (the jobs the
/// slot completed since its last claim) in the same statement. The announcements are sent once
/// this returns Ok, task or not; on an error the caller keeps them for its next claim.
pub async fn claim(
    pool: &PgPool,
    worker: &WorkerContext,
    announce: &[Announcement],
) -> Result<Option<Started>, JobError> {
    let payloads = Announcement::payloads(announce);
    let row = sqlx::query(sqlx::AssertSqlSafe(CLAIM.as_str()))
        .bind(worker.name())
        .bind(QUEUE)
        .bind(JOB_EVENTS_CHANNEL)
        .bind(&payloads)
        .fetch_one(pool)
        .await?;
    let Some(task_id) = row.try_get::<Option<String>, _>("task_id")? else {
        return Ok(None);
    };
    let Some(job_id) = row.try_get::<Option<Uuid>, _>("job_id")? else {
        // No live job behind the task (deleted, or already final): close the task.
        apalis::close(pool, &task_id).await?;
        return Ok(None);
    };
    started(&row, task_id, job_id).map(Some)
}

fn started(row: &PgRow, task_id: String, job_id: Uuid) -> Result<Started, JobError> {
    let args: Vec<u8> = row.try_get("task_args")?;
    let payload: Option<JobTask> = serde_json::from_slice(&args).ok();
    if let Some(p) = payload.as_ref().filter(|p| p.job_id != job_id) {
        tracing::warn!(task_id, payload_job = %p.job_id, %job_id, "task payload names another job");
    }
    let rule = PortalRule::from_row(row)?;
    Ok(Started {
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("task_max_attempts")?,
        correlation_id: row.try_get("job_correlation_id")?,
        traceparent: payload.and_then(|p| p.traceparent),
        input: JobInput {
            job_id,
            user_id: row.try_get("job_user_id")?,
            input_key: row.try_get("job_input_key")?,
            rule,
        },
        task_id,
    })
}
