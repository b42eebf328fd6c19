//! The statements on apalis-postgres' own tables (`apalis.jobs`, `apalis.workers`). The two hot
//! paths are not here: the claim ([`super::claim`], apalis' `get_jobs` filter and order, starting
//! the task at once) and the completion ([`super::outcome::complete`]) each update a task and its
//! job in one statement, one round trip per step (see `load/queue/README.md`). An upgrade of
//! apalis-postgres is checked against this module and those two statements.
//!
//! Written for **apalis-postgres 1.0.0** (its migrations up to `20251018165033_add_started_at`).
//! apalis-postgres 1.0 leaves gaps that these statements close (see the README's "The queue"):
//! attempts are counted when an attempt *starts*, retries move `run_at` (backoff persisted in the
//! database), orphans of dead workers are re-queued or failed for good once their attempts are
//! spent. Each function takes the caller's connection or transaction so that the matching update
//! of our `jobs` row lands in the same transaction.
//!
//! **Fencing.** A task's outcome is recorded only by the attempt that holds it: every outcome
//! statement matches the task's id, its `lock_by` (the worker's name), `status = 'Running'`
//! *and* `attempts` (the attempt number counted at start). A worker presumed dead, whose task
//! was re-queued by the reaper and started again — by another worker or by another slot under
//! the same name — finds its attempt number stale and changes nothing.
//!
//! [`check_schema`] runs when a worker starts and refuses a database whose apalis tables lack a
//! column these statements use (an apalis-postgres upgrade that changed its schema).

use std::time::Duration;

/// The worker identity apalis-postgres' claim takes (its name is the `lock_by` of what it claims).
pub use apalis_core::worker::context::WorkerContext;
use rythmiq_shared::db::QUEUE;
use sqlx::{PgConnection, PgPool};

use crate::error::JobError;

/// The apalis-postgres version these statements were written for (Cargo.lock).
pub const APALIS_POSTGRES_VERSION: &str = "1.0.0";

/// The columns of apalis-postgres' tables that the statements of this module use.
pub const REQUIRED_COLUMNS: &[(&str, &[&str])] = &[
    (
        "jobs",
        &[
            "id",
            "job_type",
            "job",
            "status",
            "attempts",
            "max_attempts",
            "priority",
            "run_at",
            "lock_at",
            "lock_by",
            "done_at",
            "last_result",
        ],
    ),
    (
        "workers",
        &["id", "worker_type", "storage_name", "layers", "last_seen"],
    ),
];

/// Fails with [`JobError::QueueSchema`] naming the first column of [`REQUIRED_COLUMNS`] that the
/// database does not have (or that the pool's role may not see). A database without the apalis
/// tables at all is not migrated *yet*: that is an [`JobError::Internal`] the caller may wait out.
pub async fn check_schema(pool: &PgPool) -> Result<(), JobError> {
    let present: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = 'apalis' AND table_name IN ('jobs', 'workers')",
    )
    .fetch_all(pool)
    .await?;
    if present.is_empty() {
        return Err(JobError::Internal {
            context: "the apalis tables do not exist yet (migrations not run)",
            source: None,
        });
    }
    match first_missing(&present) {
        Some((table, column)) => Err(JobError::QueueSchema {
            table,
            column,
            version: APALIS_POSTGRES_VERSION,
        }),
        None => Ok(()),
    }
}

/// The first required `(table, column)` absent from `present`.
fn first_missing(present: &[(String, String)]) -> Option<(&'static str, &'static str)> {
    REQUIRED_COLUMNS.iter().find_map(|(table, columns)| {
        columns
            .iter()
            .find(|c| !present.iter().any(|(t, pc)| t == table && pc == *c))
            .map(|c| (*table, *c))
    })
}

/// Registers (or re-registers) a worker; returns nothing else to do.
pub async fn register(pool: &PgPool, worker: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen)
         VALUES ($1, $2, 'rythmiq-worker', '', now())
         ON CONFLICT (id) DO UPDATE SET last_seen = now()",
    )
    .bind(worker)
    .bind(QUEUE)
    .execute(pool)
    .await?;
    Ok(())
}

/// Moves a worker's `last_seen` to now; false when its row is gone.
pub async fn touch(pool: &PgPool, worker: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE apalis.workers SET last_seen = now() WHERE id = $1")
        .bind(worker)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Closes a task that has no live job behind it.
pub async fn close<'e, E>(executor: E, task_id: &str) -> Result<(), sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query("UPDATE apalis.jobs SET status = 'Done', done_at = now() WHERE id = $1")
        .bind(task_id)
        .execute(executor)
        .await?;
    Ok(())
}

/// The attempt that holds a running task: its id, the worker's name and the attempt number.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    pub task_id: &'a str,
    pub worker: &'a str,
    pub attempt: i32,
}

/// Ends the attempt `holder` (fenced, see the module's documentation): `Done` or `Killed` for
/// good (`delay` None), or back to `status` and re-queued, unlocked, after `delay`. Returns
/// false when the task is no longer held by this attempt.
pub async fn finish(
    conn: &mut PgConnection,
    holder: Holder<'_>,
    status: &str,
    delay: Option<Duration>,
) -> Result<bool, sqlx::Error> {
    let done = match delay {
        Some(delay) => {
            sqlx::query(
                "UPDATE apalis.jobs SET status = $4, lock_by = NULL, lock_at = NULL,
                        run_at = now() + make_interval(secs => $5)
                 WHERE id = $1 AND lock_by = $2 AND attempts = $3 AND status = 'Running'",
            )
            .bind(holder.task_id)
            .bind(holder.worker)
            .bind(holder.attempt)
            .bind(status)
            .bind(delay.as_secs_f64())
            .execute(conn)
            .await?
        }
        None => {
            sqlx::query(
                "UPDATE apalis.jobs SET status = $4, done_at = now()
                 WHERE id = $1 AND lock_by = $2 AND attempts = $3 AND status = 'Running'",
            )
            .bind(holder.task_id)
            .bind(holder.worker)
            .bind(holder.attempt)
            .bind(status)
            .execute(conn)
            .await?
        }
    };
    Ok(done.rows_affected() == 1)
}

/// Hands the attempt `holder` back without charging it (fenced like [`finish`]): the task is
/// `Pending` again at once. Returns false when the task is no longer held by this attempt.
pub async fn release(conn: &mut PgConnection, holder: Holder<'_>) -> Result<bool, sqlx::Error> {
    let released = sqlx::query(
        "UPDATE apalis.jobs SET status = 'Pending', attempts = GREATEST(attempts - 1, 0),
                lock_by = NULL, lock_at = NULL, run_at = now()
         WHERE id = $1 AND lock_by = $2 AND attempts = $3 AND status = 'Running'",
    )
    .bind(holder.task_id)
    .bind(holder.worker)
    .bind(holder.attempt)
    .execute(conn)
    .await?;
    Ok(released.rows_affected() == 1)
}

/// A task taken back from a worker that stopped responding.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Reaped {
    pub task_id: String,
    /// `Pending` (re-queued) or `Killed` (its attempts are spent).
    pub status: String,
    /// `Running` (the attempt had started, and counted) or `Queued` (claimed, not started).
    pub was: String,
}

/// Takes back the tasks of workers silent for longer than `orphan_timeout`: a running task is
/// re-queued after backoff (`retry_base` doubled per attempt, at most `retry_max`) while attempts
/// remain and killed when they are spent; a claimed but unstarted task is re-queued at once.
/// Rows another transaction holds are skipped (`SKIP LOCKED`), so every worker may run it.
pub async fn reap(
    conn: &mut PgConnection,
    orphan_timeout: Duration,
    retry_base: Duration,
    retry_max: Duration,
) -> Result<Vec<Reaped>, sqlx::Error> {
    sqlx::query_as(
        "WITH stale AS (
             SELECT j.id, j.status, j.attempts, j.max_attempts
             FROM apalis.jobs j JOIN apalis.workers w ON w.id = j.lock_by
             WHERE j.job_type = $1 AND j.status IN ('Queued', 'Running')
               AND w.last_seen < now() - make_interval(secs => $2)
             FOR UPDATE OF j SKIP LOCKED
         )
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
         RETURNING a.id AS task_id, a.status, s.status AS was",
    )
    .bind(QUEUE)
    .bind(orphan_timeout.as_secs_f64())
    .bind(retry_base.as_secs_f64())
    .bind(retry_max.as_secs_f64())
    .fetch_all(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_present() -> Vec<(String, String)> {
        REQUIRED_COLUMNS
            .iter()
            .flat_map(|(t, cs)| cs.iter().map(|c| ((*t).to_owned(), (*c).to_owned())))
            .collect()
    }

    #[test]
    fn a_complete_schema_passes() {
        assert_eq!(first_missing(&all_present()), None);
    }

    #[test]
    fn the_first_missing_column_is_named_with_its_table() {
        let mut present = all_present();
        present.retain(|(t, c)| !(t == "workers" && c == "last_seen"));
        assert_eq!(first_missing(&present), Some(("workers", "last_seen")));
        // A column of the same name in the other table does not stand in for it.
        present.retain(|(t, c)| !(t == "jobs" && c == "lock_by"));
        present.push(("workers".into(), "lock_by".into()));
        assert_eq!(first_missing(&present), Some(("jobs", "lock_by")));
    }
}
