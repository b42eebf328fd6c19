//! Claiming a task and starting it: the attempt is counted and the job moves to `processing`,
//! in one transaction.

use rythmiq_shared::domain::JobTask;
use sqlx::PgPool;
use uuid::Uuid;

use super::apalis::{self, WorkerContext};
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

/// Claims at most one ready task through apalis-postgres and starts it.
pub async fn claim(pool: &PgPool, worker: &WorkerContext) -> Result<Option<Started>, JobError> {
    let Some((task_id, args)) = apalis::fetch_next(pool, worker).await? else {
        return Ok(None);
    };
    let payload: Option<JobTask> = serde_json::from_slice(&args).ok();
    start(pool, worker.name(), &task_id, payload).await
}

async fn start(
    pool: &PgPool,
    worker: &str,
    task_id: &str,
    payload: Option<JobTask>,
) -> Result<Option<Started>, JobError> {
    let mut tx = pool.begin().await?;
    let Some((attempt, max_attempts)) = apalis::start(&mut tx, worker, task_id).await? else {
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
        apalis::close(&mut tx, task_id).await?;
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
