//! Our queue: jobs enqueued with the API's statements (the `jobs` row and its apalis task, one
//! transaction per chunk), then worker loops that claim and complete through
//! `rythmiq_worker::queue` ([`claim::claim`], [`outcome::complete`]), the functions a worker's
//! slots call, with a no-op in place of the pipeline. One worker name for all loops, as one
//! `rythmiq worker` process with that concurrency; its heartbeat and orphan reaper run on the
//! production interval during the window, as in a worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use rythmiq_domain::OutputFormat;
use rythmiq_pipeline::quality::QualityReport;
use rythmiq_pipeline::{Processed, ProcessingPath};
use rythmiq_shared::db::{self, QUEUE, Role};
use rythmiq_shared::domain::JobTask;
use rythmiq_worker::job::JobOutput;
use rythmiq_worker::queue::apalis::WorkerContext;
use rythmiq_worker::queue::outcome::AttemptCost;
use rythmiq_worker::queue::{claim, heartbeat, outcome, reaper};
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::cluster::Target;
use crate::report::{Rate, Run};
use crate::stats::Window;

/// Rows per enqueue transaction.
const ENQUEUE_CHUNK: usize = 1_000;
/// The production worker's defaults (`RYTHMIQ_HEARTBEAT_SECS`, `RYTHMIQ_ORPHAN_TIMEOUT_SECS`,
/// `RYTHMIQ_RETRY_BASE_SECS`, `RYTHMIQ_RETRY_MAX_SECS`).
const HEARTBEAT: Duration = Duration::from_secs(5);
const ORPHAN_TIMEOUT: Duration = Duration::from_secs(20);
const RETRY_BASE: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// A loop that finds nothing to claim while others still run waits this long (only at the very
/// end, when the last tasks are locked by other loops).
const EMPTY_WAIT: Duration = Duration::from_millis(2);
/// A run that takes longer than this has lost tasks: stop rather than spin.
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

/// Our schema as the run uses it: as migrated, or cut down for a diagnosis (what a part of it
/// costs a job). Only [`Schema::Migrated`] is how Rythmiq runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schema {
    Migrated,
    /// The trigger that announces finished jobs (NOTIFY) disabled.
    WithoutJobNotify,
    /// Everything a job's rows are checked and indexed for that graphile-worker's one row is
    /// not: see [`BARE_SCHEMA`].
    Bare,
}

/// The `bare` diagnosis: what is left is the work of the claim and completion statements
/// themselves (two tables updated twice, two rows inserted), with nothing checked or indexed
/// beyond what the queue needs to find and fence a task and a job.
const BARE_SCHEMA: &str = "
    -- The claim's update of the job becomes HOT: no index reads `state`, and pages keep room.
    DROP INDEX jobs_state_created;
    DROP INDEX jobs_raw_retention;
    DROP INDEX jobs_output_retention;
    ALTER TABLE jobs SET (fillfactor = 50);
    -- No trigger on a job's state.
    DROP TRIGGER jobs_notify_change ON jobs;
    -- No foreign-key checks: the documents row's, and the claimed task's lock on its worker.
    ALTER TABLE documents DROP CONSTRAINT documents_job_id_fkey,
                          DROP CONSTRAINT documents_portal_schema_id_fkey;
    ALTER TABLE apalis.jobs DROP CONSTRAINT fk_worker_lock_by;
    -- apalis' two duplicate indexes (beside idx_apalis_jobs_lock_by and the primary key).
    DROP INDEX apalis.lidx;
    DROP INDEX apalis.unique_job_id;
";

/// Migrates, enqueues `tasks`, runs them with `loops` loops and checks every job completed.
pub async fn run(
    target: &Target,
    tasks: usize,
    loops: usize,
    pool_size: u32,
    schema: Schema,
) -> Result<Run> {
    let admin = db::connect(&target.ours_url, 2).await?;
    db::migrate(&admin).await.context("migrating")?;
    // Diagnoses only: never how we run.
    match schema {
        Schema::Migrated => {}
        Schema::WithoutJobNotify => {
            sqlx::query("ALTER TABLE jobs DISABLE TRIGGER jobs_notify_change")
                .execute(&admin)
                .await?;
        }
        Schema::Bare => {
            sqlx::raw_sql(BARE_SCHEMA)
                .execute(&admin)
                .await
                .context("cutting the schema down")?;
        }
    }
    enqueue(&admin, tasks).await.context("enqueueing")?;

    let window = Window::open(&target.ours_url, target.statements).await?;
    // The worker's pool, as `rythmiq worker` opens it.
    let pool = db::connect_as(&target.ours_url, pool_size, Role::Worker).await?;
    let rate = work(&pool, tasks, loops).await?;
    pool.close().await;
    // Closed backends report their transactions as they exit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counted = window.close().await?;

    let (completed, done): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM jobs WHERE state = 'completed'),
                (SELECT count(*) FROM apalis.jobs WHERE status = 'Done')",
    )
    .fetch_one(&admin)
    .await?;
    admin.close().await;
    let want = i64::try_from(tasks)?;
    if completed != want || done != want {
        bail!("{completed} jobs completed and {done} tasks done, of {want}");
    }
    Ok(Run {
        rate,
        counted: Some(counted),
    })
}

/// The API's rows for `tasks` jobs of one user on one active portal rule: `jobs` (as
/// `insert_job` writes them) and the apalis tasks (`push_tasks`), in chunks.
async fn enqueue(pool: &PgPool, tasks: usize) -> Result<()> {
    let (portal, version): (Uuid, i32) =
        sqlx::query_as("SELECT id, version FROM portal_schemas WHERE active ORDER BY slug LIMIT 1")
            .fetch_one(pool)
            .await?;
    let user = Uuid::new_v4();
    let mut left = tasks;
    while left > 0 {
        let n = left.min(ENQUEUE_CHUNK);
        left -= n;
        let ids: Vec<(Uuid, ulid::Ulid)> = (0..n)
            .map(|_| (Uuid::new_v4(), ulid::Ulid::generate()))
            .collect();
        let correlation = format!("queue-bench-{}", Uuid::new_v4().simple());
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO jobs (id, user_id, portal_schema_id, portal_schema_version, max_attempts,
                               correlation_id, request_fingerprint, task_id, input_key,
                               input_bytes, input_content_type, upload_filename)
             SELECT id, $2, $3, $4, 3, $5, 'queue-bench', task_id, 'queue-bench/' || id, 0,
                    'image/jpeg', 'noop.jpg'
             FROM unnest($1::uuid[], $6::text[]) AS t(id, task_id)",
        )
        .bind(ids.iter().map(|(j, _)| *j).collect::<Vec<_>>())
        .bind(user)
        .bind(portal)
        .bind(version)
        .bind(&correlation)
        .bind(ids.iter().map(|(_, t)| t.to_string()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        let mut batch = Vec::with_capacity(n);
        for &(job_id, task_id) in &ids {
            let payload = serde_json::to_vec(&JobTask {
                job_id,
                correlation_id: correlation.clone(),
                traceparent: None,
            })?;
            batch.push(
                TaskBuilder::new(payload)
                    .task_id(TaskId::from_ulid(task_id))
                    .max_attempts(3)
                    .build(),
            );
        }
        apalis_postgres::queries::push_tasks(&mut *tx, QUEUE, batch).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// What the no-op "pipeline" hands to `complete`: an output of no bytes.
fn noop_output() -> JobOutput {
    JobOutput {
        output_key: "queue-bench/noop".into(),
        filename: "noop.jpg".into(),
        bytes: 0,
        ocr_text_key: None,
        processed: Processed {
            bytes: Vec::new(),
            path: ProcessingPath::Fast,
            quality: QualityReport {
                score: 1.0,
                sharpness: 1.0,
                exposure: 1.0,
                contrast: 1.0,
                noise: 1.0,
                resolution: 1.0,
                flat_fill: 0.0,
            },
            enhancement: None,
            width: 1,
            height: 1,
            dpi: 300,
            format: OutputFormat::Jpeg,
            warnings: Vec::new(),
            capture: None,
            stages: Vec::new(),
            ocr: None,
            face: None,
        },
        report: None,
    }
}

/// The measured part: from the first claim that returns a task to the last completion.
async fn work(pool: &PgPool, tasks: usize, loops: usize) -> Result<Rate> {
    let name = rythmiq_worker::queue::unique_name(Some("queue-bench"));
    heartbeat::register(pool, &name).await?;
    let (stop, stopped) = watch::channel(false);
    let beat = tokio::spawn(heartbeat_loop(pool.clone(), name.clone(), stopped));

    let completed = Arc::new(AtomicUsize::new(0));
    let output = Arc::new(noop_output());
    let started = Instant::now();
    let mut slots = tokio::task::JoinSet::new();
    for _ in 0..loops {
        slots.spawn(slot(
            pool.clone(),
            name.clone(),
            Arc::clone(&output),
            Arc::clone(&completed),
            tasks,
            started,
        ));
    }
    let mut span: Option<(Instant, Instant)> = None;
    while let Some(res) = slots.join_next().await {
        if let Some((first, last)) = res.context("a worker loop panicked")?? {
            span = Some(match span {
                Some((f, l)) => (f.min(first), l.max(last)),
                None => (first, last),
            });
        }
    }
    let _ = stop.send(true);
    beat.await.context("the heartbeat loop panicked")?;
    let (first, last) = span.context("no task was claimed")?;
    Ok(Rate {
        jobs: completed.load(Ordering::Relaxed),
        seconds: last.duration_since(first).as_secs_f64(),
    })
}

/// One worker loop: claim, (no-op), complete, until every task is done. Returns when it first
/// held a task and when it last completed one.
async fn slot(
    pool: PgPool,
    name: String,
    output: Arc<JobOutput>,
    completed: Arc<AtomicUsize>,
    tasks: usize,
    started: Instant,
) -> Result<Option<(Instant, Instant)>> {
    let ctx = WorkerContext::new(&name);
    let cost = AttemptCost {
        cold: false,
        wall_seconds: 0.0,
        startup_cpu_seconds: 0.0,
    };
    let mut span: Option<(Instant, Instant)> = None;
    // As a worker's slot does: a completed job is announced with the loop's next claim.
    let mut announce = Vec::new();
    while completed.load(Ordering::Relaxed) < tasks {
        if started.elapsed() > GIVE_UP_AFTER {
            bail!("gave up after {GIVE_UP_AFTER:?}: tasks were lost");
        }
        let claimed = claim::claim(&pool, &ctx, &announce).await?;
        announce.clear();
        let Some(job) = claimed else {
            tokio::time::sleep(EMPTY_WAIT).await;
            continue;
        };
        let first = span.map_or_else(Instant::now, |(f, _)| f);
        let Some(done) = outcome::complete(&pool, &name, &job, &output, &cost).await? else {
            bail!("task {} was taken back while it ran", job.task_id);
        };
        announce.push(done);
        completed.fetch_add(1, Ordering::Relaxed);
        span = Some((first, Instant::now()));
    }
    outcome::announce(&pool, &announce).await;
    Ok(span)
}

/// The worker's heartbeat and orphan reaper, on the production interval.
async fn heartbeat_loop(pool: PgPool, name: String, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = heartbeat::heartbeat(&pool, &name).await {
            eprintln!("queue-bench: heartbeat failed: {e}");
        }
        if let Err(e) = reaper::reap_orphans(&pool, ORPHAN_TIMEOUT, RETRY_BASE, RETRY_MAX).await {
            eprintln!("queue-bench: reaper failed: {e}");
        }
    }
}
