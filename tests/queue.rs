//! The worker fleet's promises, against a real Postgres: exactly-once processing across workers,
//! recovery from a killed worker, poison jobs, persisted backoff, graceful shutdown, prompt
//! pick-up, surviving a database restart, outcomes fenced to the attempt that holds the task,
//! the start-up check of apalis-postgres' schema, and the retention of finished tasks.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::*;
use rythmiq_shared::db::Role;
use rythmiq_shared::domain::ErrorCode;
use rythmiq_worker::job::JobOutput;
use rythmiq_worker::queue::apalis::{self, WorkerContext};
use rythmiq_worker::queue::claim::Started;
use rythmiq_worker::queue::{claim, heartbeat, outcome, reaper};
use uuid::Uuid;

#[tokio::test]
async fn many_workers_process_every_job_exactly_once() -> Result<()> {
    let app = TestApp::spawn().await?;
    let mut ids = Vec::new();
    for i in 0..24 {
        ids.push(
            app.submit_ok(photo_jpeg(500, 600, i), "neet-ug-2026-photo")
                .await?,
        );
    }
    let workers: Vec<_> = (0..3)
        .map(|_| app.start_worker(fast_worker_settings()))
        .collect();
    // Meanwhile, no worker ever holds more tasks than its concurrency (no over-prefetch).
    let sampler = {
        let pool = app.pool.clone();
        tokio::spawn(async move {
            let mut most = 0i64;
            for _ in 0..400 {
                let held: Option<i64> = sqlx::query_scalar(
                    "SELECT max(n) FROM (SELECT count(*) AS n FROM apalis.jobs
                     WHERE status IN ('Queued', 'Running') GROUP BY lock_by) t",
                )
                .fetch_one(&pool)
                .await?;
                most = most.max(held.unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            anyhow::Ok(most)
        })
    };
    for id in &ids {
        let job = app.wait_terminal(*id, 120).await?;
        assert_eq!(job["status"], "completed", "{job}");
    }
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT attempts FROM apalis.jobs")
        .fetch_all(&app.pool)
        .await?;
    assert_eq!(attempts.len(), ids.len());
    assert!(
        attempts.iter().all(|a| *a == 1),
        "each task ran once: {attempts:?}"
    );
    let (docs, distinct_workers): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM documents), (SELECT count(DISTINCT worker_id) FROM jobs)",
    )
    .fetch_one(&app.pool)
    .await?;
    assert_eq!(docs, ids.len() as i64);
    assert!(
        distinct_workers >= 2,
        "the work was shared: {distinct_workers} worker(s)"
    );
    let lost: i64 = sqlx::query_scalar("SELECT count(*) FROM error_events")
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(lost, 0);
    let most = sampler.await??;
    let concurrency = fast_worker_settings().concurrency as i64;
    assert!(
        most >= 1 && most <= concurrency,
        "a worker held {most} tasks (concurrency {concurrency})"
    );
    for (stop, _) in &workers {
        stop.cancel();
    }
    Ok(())
}

/// Waits until `id` is being processed by a worker process.
async fn wait_processing(app: &TestApp, id: Uuid) -> Result<()> {
    eventually(60, || async {
        Ok(app.job_state(id).await? == "processing")
    })
    .await
}

#[tokio::test]
async fn a_job_whose_worker_is_killed_completes_on_another() -> Result<()> {
    let app = TestApp::spawn().await?;
    let id = app
        .submit_ok(slow_png(7000, 7000), "ibps-2026-photo")
        .await?;
    let mut doomed = app.spawn_worker_process(&[("RYTHMIQ_WORKER_CONCURRENCY", "1")])?;
    wait_processing(&app, id).await?;
    signal(&doomed, "KILL")?;
    doomed.wait()?;

    let (stop, _w) = app.start_worker(fast_worker_settings());
    // Claimed again within the bound (orphan timeout 3 s, a 2 s sweep, a 1 s backoff), however
    // long the run itself then takes on a busy machine.
    eventually(30, || async { Ok(app.task_attempts(id).await? == 2) }).await?;
    let job = app.wait_terminal(id, 120).await?;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["attempts"], 2, "the crashed attempt counts");
    let lost: Vec<(String, bool)> =
        sqlx::query_as("SELECT error_code, retryable FROM error_events WHERE job_id = $1")
            .bind(id)
            .fetch_all(&app.pool)
            .await?;
    assert_eq!(lost, vec![("WORKER_LOST".to_owned(), true)]);
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn a_poison_job_that_kills_every_worker_fails_after_max_attempts() -> Result<()> {
    let app = TestApp::spawn().await?;
    let id = app
        .submit_ok(slow_png(7000, 7000), "ibps-2026-photo")
        .await?;
    // Every worker that picks the job up dies, as with an input that crashes the decoder.
    for attempt in 1..=3 {
        let mut worker = app.spawn_worker_process(&[("RYTHMIQ_WORKER_CONCURRENCY", "1")])?;
        // Wait for *this* attempt: the previous one may still show as processing until reaped.
        eventually(60, || async {
            Ok(app.job_state(id).await? == "processing" && app.task_attempts(id).await? == attempt)
        })
        .await?;
        signal(&worker, "KILL")?;
        worker.wait()?;
    }
    // A healthy worker reaps the last orphan and gives up on the job rather than running it again.
    let (stop, _w) = app.start_worker(fast_worker_settings());
    let job = app.wait_terminal(id, 60).await?;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error_code"], "WORKER_LOST");
    assert_eq!(job["attempts"], 3);
    assert!(
        job["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("3 attempts")
    );
    assert_eq!(app.task_attempts(id).await?, 3, "never a fourth run");
    let status: String = sqlx::query_scalar(
        "SELECT a.status FROM apalis.jobs a JOIN jobs j ON j.task_id = a.id WHERE j.id = $1",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await?;
    assert_eq!(status, "Killed");
    // A lost worker is never the student's fault: the job's credit comes back.
    eventually(10, || async {
        let balance: i32 =
            sqlx::query_scalar("SELECT balance FROM user_credits WHERE user_id = $1")
                .bind(app.user)
                .fetch_one(&app.pool)
                .await?;
        Ok(balance == 100)
    })
    .await?;
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn retryable_failures_back_off_in_the_database_then_fail() -> Result<()> {
    let app = TestApp::spawn().await?;
    let id = app
        .submit_ok(photo_jpeg(800, 1000, 9), "neet-ug-2026-photo")
        .await?;
    let mut settings = fast_worker_settings();
    // Every attempt overruns its time limit: a retryable failure.
    settings.job_timeout = Duration::from_millis(1);
    settings.retry_base = Duration::from_secs(2);
    let (stop, _w) = app.start_worker(settings);

    // After the first failure the task waits, unlocked, with run_at pushed into the future.
    eventually(20, || async {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM error_events WHERE job_id = $1")
                .bind(id)
                .fetch_one(&app.pool)
                .await?
                >= 1,
        )
    })
    .await?;
    let (status, lock_by, delay): (String, Option<String>, f64) = sqlx::query_as(
        "SELECT a.status, a.lock_by, EXTRACT(EPOCH FROM a.run_at - now())::float8
         FROM apalis.jobs a JOIN jobs j ON j.task_id = a.id WHERE j.id = $1",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await?;
    assert_eq!(status, "Failed");
    assert!(lock_by.is_none());
    assert!(
        delay > 0.5 && delay <= 2.0,
        "first retry waits ~2 s, got {delay}"
    );
    assert_eq!(app.job_state(id).await?, "pending");

    let job = app.wait_terminal(id, 60).await?;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error_code"], "INTERNAL");
    assert_eq!(job["attempts"], 3);
    let times: Vec<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM created_at)::float8 FROM error_events WHERE job_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await?;
    assert_eq!(times.len(), 3);
    // Backoff doubles: ~2 s, then ~4 s between attempts.
    assert!(times[1] - times[0] >= 1.9, "{times:?}");
    assert!(times[2] - times[1] >= 3.9, "{times:?}");
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn sigterm_finishes_or_releases_in_flight_jobs_and_loses_nothing() -> Result<()> {
    let app = TestApp::spawn().await?;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            app.submit_ok(slow_png(6000, 5000), "ibps-2026-photo")
                .await?,
        );
    }
    let mut worker = app.spawn_worker_process(&[
        ("RYTHMIQ_WORKER_CONCURRENCY", "2"),
        ("RYTHMIQ_SHUTDOWN_TIMEOUT_SECS", "1"),
    ])?;
    eventually(60, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'processing'")
            .fetch_one(&app.pool)
            .await?;
        Ok(n >= 1)
    })
    .await?;
    signal(&worker, "TERM")?;
    let status = tokio::task::spawn_blocking(move || worker.wait()).await??;
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let stuck: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'processing'")
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(stuck, 0, "nothing left claimed by the stopped worker");

    let (stop, _w) = app.start_worker(fast_worker_settings());
    for id in &ids {
        let job = app.wait_terminal(*id, 120).await?;
        assert_eq!(job["status"], "completed", "{job}");
        assert_eq!(
            job["attempts"], 1,
            "a released job is not charged an attempt"
        );
    }
    let errors: i64 = sqlx::query_scalar("SELECT count(*) FROM error_events")
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(errors, 0);
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn an_idle_worker_is_woken_by_notify_not_by_its_poll() -> Result<()> {
    let app = TestApp::spawn().await?;
    let mut settings = fast_worker_settings();
    settings.poll_interval = Duration::from_secs(120);
    settings.heartbeat = Duration::from_secs(30);
    settings.orphan_timeout = Duration::from_secs(90);
    let (stop, _w) = app.start_worker(settings);
    // Let it go idle first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = Instant::now();
    let id = app
        .submit_ok(photo_jpeg(400, 500, 11), "neet-ug-2026-photo")
        .await?;
    let job = app.wait_terminal(id, 60).await?;
    assert_eq!(job["status"], "completed");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "picked up promptly: {:?}",
        t.elapsed()
    );
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn workers_survive_a_database_restart() -> Result<()> {
    // A cluster of its own: this test stops and starts it.
    let dir = shared_tempdir()?;
    let (pg, _watchdog, _pipe) = start_cluster(&dir.path().join("pg"), None).await?;
    let port = pg.port();
    pg.create_database("rythmiq").await?;
    let url = pg.url_for("rythmiq");
    let pool = rythmiq_shared::db::connect(&url, 5).await?;
    rythmiq_shared::db::migrate(&pool).await?;
    let storage_dir = shared_tempdir()?;
    let storage = rythmiq_shared::storage::Storage::open(
        rythmiq_shared::config::StorageSettings {
            root: storage_dir.path().to_path_buf(),
            fetch_timeout: Duration::from_secs(10),
            upload_timeout: Duration::from_secs(10),
        },
        &rythmiq_shared::storage::Backend::Local,
        common::test_keys()?,
    )?;
    // The worker's pool acts as its role: a reconnection after the restart must take it again.
    let worker_pool = rythmiq_shared::db::connect_as(&url, 5, Role::Worker).await?;
    let worker = rythmiq_worker::Worker::new(
        worker_pool,
        rythmiq_worker::job::Pipeline::new(storage.clone(), common::ocr_stage()),
        fast_worker_settings(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(worker.run(stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;

    pg.stop().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!handle.is_finished(), "the worker outlives its database");
    let (pg, _watchdog2, _pipe2) = start_cluster(&dir.path().join("pg"), Some(port)).await?;

    // A job submitted through the API after the restart is processed by the same worker.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let api_pool = rythmiq_shared::db::connect_as(&url, 5, Role::Api).await?;
    let state = rythmiq_api::AppState::new(
        api_pool,
        storage,
        rythmiq_shared::config::ApiSettings {
            listen: addr.to_string(),
            jwt_secret: SECRET.into(),
            max_upload_bytes: 20 << 20,
            max_batch_files: 10,
            max_attempts: 3,
            rate_limit_per_minute: 0,
            starting_credits: 100,
            provider: Default::default(),
            guest_sessions: Default::default(),
        },
    );
    tokio::spawn(rythmiq_api::serve(listener, state, stop.clone()));
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(photo_jpeg(400, 500, 12)).file_name("p.jpg"),
        )
        .text("portal", "neet-ug-2026-photo");
    let token = token_for(Uuid::new_v4());
    let client = reqwest::Client::new();
    let created: serde_json::Value = client
        .post(format!("http://{addr}/v1/jobs"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await?
        .json()
        .await?;
    let id = created["job_id"].as_str().unwrap_or_default().to_owned();
    let job: serde_json::Value = client
        .get(format!("http://{addr}/v1/jobs/{id}?wait=30"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(job["status"], "completed", "{job}");
    stop.cancel();
    let _ = handle.await;
    pool.close().await;
    pg.stop().await?;
    Ok(())
}

/// A job whose first attempt (by `stale`) was presumed dead: the worker's heartbeat went silent,
/// the reaper re-queued the task and `rerun` started it again. Returns both attempts.
async fn presumed_dead_and_rerun(
    app: &TestApp,
    pool: &sqlx::PgPool,
    stale: &str,
    rerun: &str,
    seed: u32,
) -> Result<(Started, Started)> {
    app.submit_ok(photo_jpeg(400, 500, seed), "neet-ug-2026-photo")
        .await?;
    heartbeat::register(pool, stale).await?;
    heartbeat::register(pool, rerun).await?;
    let first = claim::claim(pool, &WorkerContext::new(stale), &[])
        .await?
        .context("the first attempt claims the job")?;
    assert_eq!(first.attempt, 1);
    // The worker goes silent (a long pause, a partition): the fleet presumes it dead.
    sqlx::query("UPDATE apalis.workers SET last_seen = now() - interval '1 hour' WHERE id = $1")
        .bind(stale)
        .execute(&app.pool)
        .await?;
    let reaped = reaper::reap_orphans(
        pool,
        Duration::from_secs(60),
        Duration::ZERO,
        Duration::ZERO,
    )
    .await?;
    assert_eq!(reaped, vec![(first.input.job_id, "pending".to_owned())]);
    heartbeat::heartbeat(pool, rerun).await?;
    let second = claim::claim(pool, &WorkerContext::new(rerun), &[])
        .await?
        .context("the re-run claims the job")?;
    assert_eq!(second.input.job_id, first.input.job_id);
    assert_eq!(second.attempt, 2);
    Ok((first, second))
}

/// The cost of a warm attempt of a second, for outcomes recorded by hand.
fn warm_attempt() -> outcome::AttemptCost {
    outcome::AttemptCost {
        cold: false,
        wall_seconds: 1.0,
        startup_cpu_seconds: 0.0,
    }
}

/// Everything a woken stale attempt may try to record; none of it may land.
async fn stale_attempt_tries_every_outcome(
    pool: &sqlx::PgPool,
    worker: &str,
    stale: &Started,
    out: &JobOutput,
) -> Result<()> {
    let mut stale_out = out.clone();
    stale_out.filename = "stale.jpg".into();
    let cost = warm_attempt();
    assert!(
        outcome::complete(pool, worker, stale, &stale_out, &cost)
            .await?
            .is_none(),
        "a stale attempt completed the job"
    );
    for retryable in [true, false] {
        let failed = outcome::fail(
            pool,
            worker,
            stale,
            ErrorCode::Internal,
            retryable,
            "stale",
            Duration::ZERO,
        )
        .await?;
        assert_eq!(failed, None, "a stale attempt failed the job");
    }
    outcome::release(pool, worker, stale).await?;
    Ok(())
}

/// The task and job as the queue sees them: task status and attempts, job state, attempts,
/// output file name and error code, and the job's error events.
async fn queue_view(
    app: &TestApp,
    job: Uuid,
) -> Result<(
    String,
    i32,
    String,
    i32,
    Option<String>,
    Option<String>,
    i64,
)> {
    Ok(sqlx::query_as(
        "SELECT a.status, a.attempts, j.state, j.attempts, j.output_filename, j.error_code,
                (SELECT count(*) FROM error_events e WHERE e.job_id = j.id)
         FROM apalis.jobs a JOIN jobs j ON j.task_id = a.id WHERE j.id = $1",
    )
    .bind(job)
    .fetch_one(&app.pool)
    .await?)
}

#[tokio::test]
async fn a_worker_presumed_dead_cannot_overwrite_the_rerun() -> Result<()> {
    let app = TestApp::spawn().await?;
    let pool = rythmiq_shared::db::connect_as(&app.db_url, 5, Role::Worker).await?;
    let pipeline = rythmiq_worker::job::Pipeline::new(app.storage.clone(), ocr_stage());
    let cost = warm_attempt();
    // The re-run by another slot of the same worker (same name), and by another worker.
    let mut seed = 40;
    for rerun in ["worker-a", "worker-b"] {
        let stale = "worker-a";

        // The stale attempt wakes while the re-run still runs.
        seed += 1;
        let (first, second) = presumed_dead_and_rerun(&app, &pool, stale, rerun, seed).await?;
        let job = first.input.job_id;
        let out = pipeline.run(&first.input).await?;
        stale_attempt_tries_every_outcome(&pool, stale, &first, &out).await?;
        assert_eq!(
            queue_view(&app, job).await?,
            (
                "Running".into(),
                2,
                "processing".into(),
                2,
                None,
                Some("WORKER_LOST".into()),
                1
            ),
            "re-run by {rerun}: the re-run still holds the job"
        );
        assert!(
            outcome::complete(&pool, rerun, &second, &out, &cost)
                .await?
                .is_some()
        );
        assert_eq!(
            queue_view(&app, job).await?,
            (
                "Done".into(),
                2,
                "completed".into(),
                2,
                Some(out.filename.clone()),
                None,
                1
            ),
            "re-run by {rerun}"
        );

        // The stale attempt wakes after the re-run completed.
        seed += 1;
        let (first, second) = presumed_dead_and_rerun(&app, &pool, stale, rerun, seed).await?;
        let job = first.input.job_id;
        let out = pipeline.run(&second.input).await?;
        assert!(
            outcome::complete(&pool, rerun, &second, &out, &cost)
                .await?
                .is_some()
        );
        stale_attempt_tries_every_outcome(&pool, stale, &first, &out).await?;
        assert_eq!(
            queue_view(&app, job).await?,
            (
                "Done".into(),
                2,
                "completed".into(),
                2,
                Some(out.filename.clone()),
                None,
                1
            ),
            "re-run by {rerun}: the re-run's result stands"
        );
        let (documents, cpu_rows): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM documents WHERE job_id = $1),
                    (SELECT count(*) FROM cpu_metrics WHERE job_id = $1)",
        )
        .bind(job)
        .fetch_one(&app.pool)
        .await?;
        assert_eq!((documents, cpu_rows), (1, 1));
    }
    Ok(())
}

/// A finished job is announced exactly once on the jobs channel: a completion by the worker
/// after its commit, with the slot's next claim (the trigger stays quiet for it), a failure by
/// the trigger; a stale attempt's completion, which records nothing, announces nothing.
#[tokio::test]
async fn each_finished_job_is_announced_once() -> Result<()> {
    let app = TestApp::spawn().await?;
    let pool = rythmiq_shared::db::connect_as(&app.db_url, 5, Role::Worker).await?;
    let mut listener = sqlx::postgres::PgListener::connect(&app.db_url).await?;
    listener
        .listen(rythmiq_shared::db::JOB_EVENTS_CHANNEL)
        .await?;
    let pipeline = rythmiq_worker::job::Pipeline::new(app.storage.clone(), ocr_stage());
    let cost = warm_attempt();
    let worker = "announcer";
    heartbeat::register(&pool, worker).await?;
    let ctx = WorkerContext::new(worker);

    app.submit_ok(photo_jpeg(400, 500, 71), "neet-ug-2026-photo")
        .await?;
    let done = claim::claim(&pool, &ctx, &[])
        .await?
        .context("a task to complete")?;
    let out = pipeline.run(&done.input).await?;
    let announcement = outcome::complete(&pool, worker, &done, &out, &cost)
        .await?
        .context("the attempt completes its job")?;
    assert!(
        outcome::complete(&pool, worker, &done, &out, &cost)
            .await?
            .is_none(),
        "the second completion of one attempt is stale"
    );

    app.submit_ok(photo_jpeg(400, 500, 72), "neet-ug-2026-photo")
        .await?;
    // The completion is announced with the slot's next claim.
    let failed = claim::claim(&pool, &ctx, &[announcement])
        .await?
        .context("a task to fail")?;
    let state = outcome::fail(
        &pool,
        worker,
        &failed,
        ErrorCode::DecodeFailed,
        false,
        "not an image",
        Duration::ZERO,
    )
    .await?;
    assert_eq!(state, Some("failed"));

    // Everything announced until the channel has been quiet for a second.
    let mut heard = Vec::new();
    while let Ok(n) = tokio::time::timeout(Duration::from_secs(1), listener.recv()).await {
        heard.push(n?.payload().to_owned());
    }
    assert_eq!(
        heard,
        vec![
            format!("{}:completed", done.input.job_id),
            format!("{}:failed", failed.input.job_id),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_worker_refuses_to_start_on_an_apalis_schema_it_was_not_written_for() -> Result<()> {
    let app = TestApp::spawn().await?;
    let pool = rythmiq_shared::db::connect_as(&app.db_url, 5, Role::Worker).await?;
    apalis::check_schema(&pool).await?;

    sqlx::query("ALTER TABLE apalis.jobs RENAME COLUMN lock_at TO locked_at")
        .execute(&app.pool)
        .await?;
    let err = apalis::check_schema(&pool)
        .await
        .err()
        .context("a missing column is refused")?;
    assert!(
        matches!(
            err,
            rythmiq_worker::JobError::QueueSchema {
                table: "jobs",
                column: "lock_at",
                version: "1.0.0"
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("apalis.jobs.lock_at"), "{message}");
    assert!(message.contains("apalis-postgres 1.0.0"), "{message}");

    // The worker stops at once with that error rather than claiming against the wrong schema.
    let worker = rythmiq_worker::Worker::new(
        pool,
        rythmiq_worker::job::Pipeline::new(app.storage.clone(), ocr_stage()),
        fast_worker_settings(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let run = tokio::time::timeout(Duration::from_secs(30), worker.run(stop)).await?;
    assert!(
        matches!(run, Err(rythmiq_worker::JobError::QueueSchema { .. })),
        "{run:?}"
    );
    Ok(())
}

#[test]
fn the_slow_fixture_fits_the_upload_limit() {
    let png = slow_png(7000, 7000);
    assert!(png.len() < 20 * 1024 * 1024, "{} bytes", png.len());
}

#[tokio::test]
async fn finished_tasks_are_purged_after_their_retention_and_their_jobs_stay() -> Result<()> {
    use rythmiq_worker::maintenance::retention::purge_finished_tasks;
    let app = TestApp::spawn().await?;
    let task_exists = |task: String| {
        let pool = app.pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE id = $1")
                .bind(task)
                .fetch_one(&pool)
                .await?;
            anyhow::Ok(n == 1)
        }
    };

    // A completed job, then a pending one (no worker running).
    let (stop, worker) = app.start_worker(fast_worker_settings());
    let done = app
        .submit_ok(photo_jpeg(500, 600, 91), "neet-ug-2026-photo")
        .await?;
    assert_eq!(app.wait_terminal(done, 60).await?["status"], "completed");
    stop.cancel();
    worker.await?;
    let pending = app
        .submit_ok(photo_jpeg(500, 600, 92), "neet-ug-2026-photo")
        .await?;
    let (done_task, pending_task): (String, String) = sqlx::query_as(
        "SELECT (SELECT task_id FROM jobs WHERE id = $1), (SELECT task_id FROM jobs WHERE id = $2)",
    )
    .bind(done)
    .bind(pending)
    .fetch_one(&app.pool)
    .await?;

    // Within its retention the finished task stays; a live task always does.
    let hour = Duration::from_secs(3600);
    assert_eq!(purge_finished_tasks(&app.pool, hour).await?, 0);
    assert!(task_exists(done_task.clone()).await?);
    // Finished two hours ago: gone, and only it; its job still reads as completed.
    sqlx::query("UPDATE apalis.jobs SET done_at = now() - interval '2 hours' WHERE id = $1")
        .bind(&done_task)
        .execute(&app.pool)
        .await?;
    assert_eq!(purge_finished_tasks(&app.pool, hour).await?, 1);
    assert!(!task_exists(done_task).await?);
    assert!(task_exists(pending_task.clone()).await?);
    assert_eq!(app.job(done, 0).await?["status"], "completed");
    // A backlog larger than one statement's batch (5,000) goes in one pass.
    sqlx::query(
        "INSERT INTO apalis.jobs (job, id, job_type, status, done_at)
         SELECT '\\x'::bytea, 'backlog-' || n, 'x', CASE WHEN n % 2 = 0 THEN 'Done' ELSE 'Killed' END,
                now() - interval '2 hours'
         FROM generate_series(1, 5001) AS n",
    )
    .execute(&app.pool)
    .await?;
    assert_eq!(purge_finished_tasks(&app.pool, hour).await?, 5001);
    assert!(task_exists(pending_task.clone()).await?);

    // The workers' maintenance pass applies it: with no retention, the pending job's task goes
    // once the job has completed.
    let mut settings = fast_worker_settings();
    settings.task_retention = Duration::ZERO;
    let (stop, _w) = app.start_worker(settings);
    assert_eq!(app.wait_terminal(pending, 60).await?["status"], "completed");
    eventually(30, || {
        let task = pending_task.clone();
        async { Ok(!task_exists(task).await?) }
    })
    .await?;
    assert_eq!(app.job(pending, 0).await?["status"], "completed");
    stop.cancel();
    Ok(())
}
