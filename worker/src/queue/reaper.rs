//! The orphan reaper: takes back the tasks of workers that stopped responding.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::{apalis, outcome};

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
    let mut tx = pool.begin().await?;
    let moved = apalis::reap(&mut tx, orphan_timeout, retry_base, retry_max).await?;
    if moved.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let (ids, (statuses, was)): (Vec<String>, (Vec<String>, Vec<String>)) = moved
        .into_iter()
        .map(|r| (r.task_id, (r.status, r.was)))
        .unzip();
    // The jobs rows follow their tasks in the same transaction.
    let reaped: Vec<(Uuid, String)> = sqlx::query_as(
        "WITH moved AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS m(id, status, was)
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
    .bind(&ids)
    .bind(&statuses)
    .bind(&was)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    for (job, state) in &reaped {
        tracing::warn!(job_id = %job, state, "took back a job from a worker that stopped responding");
        if state == "failed" {
            // WORKER_LOST is never the upload's fault (as far as we can tell): refund.
            outcome::refund(pool, *job).await?;
        }
    }
    Ok(reaped)
}
