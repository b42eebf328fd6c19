//! The worker fleet's promises, against a real Postgres: exactly-once processing across workers,
//! recovery from a killed worker, poison jobs, persisted backoff, graceful shutdown, prompt
//! pick-up, and surviving a database restart.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::*;
use rythmiq_shared::db::Role;
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
        .submit_ok(slow_png(7000, 7000), "passport-india-photo")
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
        .submit_ok(slow_png(7000, 7000), "passport-india-photo")
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
            app.submit_ok(slow_png(6000, 5000), "passport-india-photo")
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

#[test]
fn the_slow_fixture_fits_the_upload_limit() {
    let png = slow_png(7000, 7000);
    assert!(png.len() < 20 * 1024 * 1024, "{} bytes", png.len());
}
