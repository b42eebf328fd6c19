//! The observability SQL (rollups, alert inputs, thresholds, retention) against a real Postgres,
//! with rows inserted here and numbers computed by hand.

mod common;

#[path = "../ocr/tests/support/render.rs"]
mod render;

use anyhow::Result;
use common::*;
use sqlx::PgPool;
use uuid::Uuid;

async fn pool() -> Result<PgPool> {
    Ok(rythmiq_shared::db::connect(&fresh_database().await?, 4).await?)
}

/// A finished job: `latency` seconds from creation to finish, `age` seconds ago.
async fn job(pool: &PgPool, state: &str, latency: f64, age: f64) -> Result<Uuid> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO jobs (id, user_id, portal_schema_id, portal_schema_version, state,
                           correlation_id, request_fingerprint, task_id, input_key, input_bytes,
                           output_key, created_at, finished_at)
         SELECT $1, $2, id, version, $3, 'c', 'f', $1::text, 'raw/x', 1,
                CASE WHEN $3 = 'completed' THEN 'output/x' END,
                now() - make_interval(secs => $5 + $4), now() - make_interval(secs => $5)
         FROM portal_schemas WHERE slug = 'neet-ug-2026-photo' AND active",
    )
    .bind(id)
    .bind(Uuid::new_v4())
    .bind(state)
    .bind(latency)
    .bind(age)
    .execute(pool)
    .await?;
    Ok(id)
}

async fn cpu(pool: &PgPool, cpu_s: f64, cold: bool, path: &str, age_days: f64) -> Result<()> {
    sqlx::query(
        "INSERT INTO cpu_metrics (job_id, execution_temperature, processing_path,
                                  total_cpu_seconds, total_wall_seconds, created_at)
         VALUES ($1, $2, $3, $4, $4 * 2, now() - make_interval(days => 0, secs => $5 * 86400))",
    )
    .bind(Uuid::new_v4())
    .bind(if cold { "cold" } else { "warm" })
    .bind(path)
    .bind(cpu_s)
    .bind(age_days)
    .execute(pool)
    .await?;
    Ok(())
}

async fn scalar(pool: &PgPool, sql: &'static str) -> Result<f64> {
    Ok(sqlx::query_scalar(sql).fetch_one(pool).await?)
}

#[tokio::test]
async fn alert_inputs_match_hand_computed_values() -> Result<()> {
    let pool = pool().await?;
    assert_eq!(
        scalar(&pool, "SELECT get_error_rate()").await?,
        0.0,
        "no jobs, no errors"
    );

    // 20 jobs in the last hour: latencies 1..=20 s, two of them failed.
    for i in 1..=20 {
        let state = if i == 7 || i == 13 {
            "failed"
        } else {
            "completed"
        };
        job(&pool, state, f64::from(i), 60.0).await?;
    }
    // Outside the window: must not count.
    job(&pool, "failed", 500.0, 7200.0).await?;
    assert!((scalar(&pool, "SELECT get_error_rate()").await? - 0.10).abs() < 1e-9);
    // percentile_cont over 1..=20: position 0.95 × 19 = 18.05 → 19 + 0.05 × (20 − 19) = 19.05.
    assert!((scalar(&pool, "SELECT get_p95_latency()").await? - 19.05).abs() < 1e-6);
    assert!((scalar(&pool, "SELECT get_error_rate('3 hours')").await? - 3.0 / 21.0).abs() < 1e-9);

    // CPU: 4 jobs this hour, one cold: 0.5 + 1.5 + 2 + 3.2 = 7.2 CPU-s.
    for (s, cold) in [(0.5, true), (1.5, false), (2.0, false), (3.2, false)] {
        cpu(&pool, s, cold, "fast", 0.0).await?;
    }
    assert!((scalar(&pool, "SELECT get_cold_start_rate()").await? - 0.25).abs() < 1e-9);
    let month = scalar(&pool, "SELECT get_monthly_cpu_usage()").await?;
    assert!((month - 7.2 / 3600.0).abs() < 1e-9, "{month}");
    let left = scalar(&pool, "SELECT get_cpu_budget_remaining()").await?;
    assert!((left - (200.0 - 7.2 / 3600.0)).abs() < 1e-9);

    // Thresholds: error rate 10 % is over the 2 % critical line; latency 19.05 s is under 20 s.
    let levels: Vec<(String, String)> = sqlx::query_as("SELECT metric, level FROM alert_status()")
        .fetch_all(&pool)
        .await?;
    assert_eq!(
        levels,
        vec![
            ("cold_start_rate".into(), "critical".into()),
            ("cpu_hours_month".into(), "ok".into()),
            ("error_rate".into(), "critical".into()),
            ("p95_latency_seconds".into(), "ok".into()),
        ]
    );
    let thresholds: Vec<(String, f64, f64)> =
        sqlx::query_as("SELECT metric, warning, critical FROM alert_thresholds ORDER BY metric")
            .fetch_all(&pool)
            .await?;
    assert!(thresholds.contains(&("error_rate".into(), 0.01, 0.02)));
    assert!(thresholds.contains(&("p95_latency_seconds".into(), 20.0, 30.0)));
    Ok(())
}

#[tokio::test]
async fn rollups_refresh_and_retention_purges_in_batches() -> Result<()> {
    let pool = pool().await?;
    for s in [1.0, 2.0, 3.0] {
        cpu(&pool, s, false, "standard", 0.0).await?;
    }
    cpu(&pool, 9.0, true, "fast", 0.0).await?;
    for _ in 0..7 {
        cpu(&pool, 1.0, false, "fast", 100.0).await?; // older than 90 days
    }
    sqlx::query(
        "INSERT INTO error_events (job_id, error_code, error_stage, retryable, created_at)
         SELECT gen_random_uuid(), 'DECODE_FAILED', 'decode', false, now() - make_interval(days => d)
         FROM generate_series(0, 0) d
         UNION ALL
         SELECT gen_random_uuid(), 'UPLOAD_FAILED', 'upload', true, now() - interval '95 days'
         FROM generate_series(1, 3)",
    )
    .execute(&pool)
    .await?;

    sqlx::query("SELECT refresh_rollups()")
        .execute(&pool)
        .await?;
    let (jobs, cpu_s, avg): (i64, f64, f64) = sqlx::query_as(
        "SELECT jobs, cpu_seconds, avg_cpu_seconds FROM cpu_metrics_daily
         WHERE bucket = date_trunc('day', now()) AND processing_path = 'standard'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!((jobs, cpu_s, avg), (3, 6.0, 2.0));
    let cold: i64 = sqlx::query_scalar(
        "SELECT sum(cold_starts)::bigint FROM cpu_metrics_hourly WHERE bucket >= now() - interval '1 hour'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(cold, 1);
    let decode: i64 = sqlx::query_scalar(
        "SELECT sum(final_events)::bigint FROM error_events_daily WHERE error_code = 'DECODE_FAILED'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(decode, 1);

    // 7 old cpu rows + 3 old error rows, removed 2 at a time.
    let removed: i64 = sqlx::query_scalar("SELECT purge_observability('90 days', 2)")
        .fetch_one(&pool)
        .await?;
    assert_eq!(removed, 10);
    let left: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM cpu_metrics), (SELECT count(*) FROM error_events)",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(left, (4, 1));
    Ok(())
}

#[tokio::test]
async fn every_finished_job_writes_one_cpu_metrics_row() -> Result<()> {
    let app = TestApp::spawn().await?;
    let mut settings = fast_worker_settings();
    settings.concurrency = 1;
    let (stop, _w) = app.start_worker(settings);
    let photo = photo_jpeg(1200, 1600, 21);
    let upload_len = photo.len() as i64;
    let first = app.submit_ok(photo, "neet-ug-2026-photo").await?;
    let first_job = app.wait_terminal(first, 60).await?;
    let second = app
        .submit_ok(photo_jpeg(800, 1000, 22), "neet-ug-2026-photo")
        .await?;
    app.wait_terminal(second, 60).await?;

    type Row = (
        String,
        String,
        f64,
        f64,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        i64,
        i64,
        f64,
        bool,
    );
    let row: Row = sqlx::query_as(
        "SELECT execution_temperature, processing_path, total_cpu_seconds, total_wall_seconds,
                decode_cpu_seconds, quality_cpu_seconds, schema_cpu_seconds,
                input_file_size_bytes, output_file_size_bytes, quality_score, enhancement_skipped
         FROM cpu_metrics WHERE job_id = $1",
    )
    .bind(first)
    .fetch_one(&app.pool)
    .await?;
    let (temp, path, cpu, wall, decode, quality, schema, input, output, score, skipped) = row;
    assert_eq!(temp, "cold", "the first job of a worker is cold");
    assert!(path == "fast" || path == "standard");
    assert_eq!(skipped, path == "fast");
    assert!(cpu > 0.0 && wall > 0.0);
    for stage in [decode, quality, schema] {
        assert!(
            stage.is_some_and(|s| s > 0.0 && s <= cpu + 1e-9),
            "{stage:?} of {cpu}"
        );
    }
    assert_eq!(input, upload_len);
    assert_eq!(
        output,
        first_job["output"]["bytes"].as_i64().unwrap_or_default()
    );
    assert!((0.0..=1.0).contains(&score));
    let (count, temp2): (i64, String) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM cpu_metrics), execution_temperature FROM cpu_metrics WHERE job_id = $1",
    )
    .bind(second)
    .fetch_one(&app.pool)
    .await?;
    assert_eq!((count, temp2.as_str()), (2, "warm"));
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn maintenance_runs_in_one_worker_at_a_time() -> Result<()> {
    let pool = pool().await?;
    let mut holder = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(rythmiq_worker::maintenance::MAINTENANCE_LOCK)
        .execute(&mut *holder)
        .await?;
    assert_eq!(
        rythmiq_worker::maintenance::run_locked(&pool, 90).await?,
        None
    );
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(rythmiq_worker::maintenance::MAINTENANCE_LOCK)
        .execute(&mut *holder)
        .await?;
    assert_eq!(
        rythmiq_worker::maintenance::run_locked(&pool, 90).await?,
        Some(0)
    );
    Ok(())
}

#[tokio::test]
async fn metrics_catalog_is_served_and_passes_promtool() -> Result<()> {
    let app = TestApp::spawn().await?;
    let (stop, _w) = app.start_worker(fast_worker_settings());
    let ok = app
        .submit_ok(photo_jpeg(900, 1200, 31), "neet-ug-2026-photo")
        .await?;
    let mut bogus = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bogus.extend([0u8; 300]);
    let bad = app.submit_ok(bogus, "neet-ug-2026-photo").await?;
    app.wait_terminal(ok, 60).await?;
    app.wait_terminal(bad, 60).await?;
    // One pending job for the queue gauges: submitted after the worker stopped.
    stop.cancel();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    app.submit_ok(photo_jpeg(300, 400, 32), "neet-ug-2026-photo")
        .await?;

    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    for name in [
        "rythmiq_jobs_total{",
        "rythmiq_job_latency_seconds_bucket",
        "rythmiq_job_cpu_seconds_bucket{stage=\"schema\"",
        "rythmiq_errors_total{code=\"DECODE_FAILED\",stage=\"decode\"}",
        "rythmiq_quality_score_bucket",
        "rythmiq_ocr_confidence_bucket",
        "rythmiq_job_cpu_seconds_bucket{stage=\"pre_ocr\"",
        "rythmiq_cold_starts_total",
        "rythmiq_api_requests_total{",
        "rythmiq_api_latency_seconds_bucket{route=\"/v1/jobs\"",
        "rythmiq_jobs_in_progress",
        "rythmiq_queue_depth{state=\"pending\"} 1",
        "rythmiq_queue_oldest_pending_age_seconds",
        "rythmiq_alert_threshold{metric=\"error_rate\",level=\"critical\"} 0.02",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    // Labels come from the matched route, never the raw path (bounded cardinality).
    assert!(
        !text.contains(&ok.to_string()),
        "a job id leaked into a label"
    );
    assert!(text.contains("route=\"/v1/jobs/{id}\""));

    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    {
        use std::io::Write;
        promtool
            .stdin
            .take()
            .map(|mut s| s.write_all(text.as_bytes()))
            .transpose()?;
    }
    let out = promtool.wait_with_output()?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<&str> = report.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        out.status.success() && problems.is_empty(),
        "promtool: {report}"
    );
    assert!(text.contains("rythmiq_cpu_seconds_current_month"));
    assert!(
        !text.contains("rythmiq_cpu_hours"),
        "the hours gauge is retired"
    );
    Ok(())
}

/// A worker process's `/metrics` before it has run anything, and its probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_worker_serves_every_known_series_and_probes_that_follow_its_heartbeat()
-> Result<()> {
    let app = TestApp::spawn().await?;
    let logs = shared_tempdir()?;
    let log = logs.path().join("worker.log");
    let mut worker = Reaped(app.spawn_logged("worker", &[("RYTHMIQ_LOG_FORMAT", "json")], &log)?);
    let base = format!(
        "http://{}",
        logged_address(&log, "worker metrics listening").await?
    );
    let get = |path: &'static str| {
        let url = format!("{base}{path}");
        let client = app.client.clone();
        async move { anyhow::Ok(client.get(url).send().await?) }
    };

    // No job has run: every error code, portal and stage is already there, at zero.
    let text = get("/metrics").await?.error_for_status()?.text().await?;
    for code in rythmiq_shared::domain::ErrorCode::ALL {
        let series = format!(
            "rythmiq_errors_total{{code=\"{}\",stage=\"{}\"}} 0",
            code.as_str(),
            code.stage()
        );
        assert!(text.contains(&series), "{series} missing:\n{text}");
    }
    for rule in rythmiq_shared::portals::builtin()? {
        let series = format!(
            "rythmiq_jobs_total{{status=\"completed\",path=\"fast\",portal=\"{}\"}} 0",
            rule.slug
        );
        assert!(text.contains(&series), "{series} missing:\n{text}");
    }
    for stage in rythmiq_shared::metrics::STAGES.iter().chain(&["total"]) {
        let series = format!("rythmiq_job_cpu_seconds_count{{stage=\"{stage}\"}} 0");
        assert!(text.contains(&series), "{series} missing:\n{text}");
    }
    for series in [
        "rythmiq_cold_starts_total 0",
        "rythmiq_ocr_rollbacks_total 0",
        "rythmiq_job_latency_seconds_count 0",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }

    // Registered and beating: live and ready.
    eventually(30, || async {
        Ok(get("/readyz").await?.status() == reqwest::StatusCode::OK)
    })
    .await?;
    assert_eq!(get("/healthz").await?.status(), reqwest::StatusCode::OK);

    // Heartbeats stop reaching the database (the table is locked): liveness fails after three
    // missed beats (1 s apart here), and recovers once they get through again.
    let mut lock = app.pool.begin().await?;
    sqlx::query("LOCK TABLE apalis.workers IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await?;
    eventually(15, || async {
        Ok(get("/healthz").await?.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE)
    })
    .await?;
    lock.rollback().await?;
    eventually(15, || async {
        Ok(get("/healthz").await?.status() == reqwest::StatusCode::OK)
    })
    .await?;

    // SIGTERM: a clean stop.
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &worker.0.id().to_string()])
        .status()?;
    assert!(killed.success());
    let status = tokio::task::block_in_place(|| worker.0.wait())?;
    assert!(status.success(), "{status}");
    Ok(())
}

/// The `cpu_metrics` rows of a worker process add up to the CPU the process spent (within
/// 10 %): inference on the OCR pool's threads, fetch and upload, start-up and model loading and
/// the check of each output are all charged to jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_metrics_rows_add_up_to_the_worker_process_cpu() -> Result<()> {
    let app = TestApp::spawn().await?;
    // Every job is queued before the worker starts, so it is busy from start to finish.
    let mut jobs = Vec::new();
    for seed in 0..6 {
        let photo = photo_jpeg(900, 1200, 70 + seed);
        jobs.push(app.submit_ok(photo, "neet-ug-2026-photo").await?);
    }
    for n in 0..3 {
        let png = render::certificate_png(40.0, &format!(" {n}"));
        jobs.push(app.submit_ok(png, "aadhaar-update-document").await?);
    }
    // Rules whose output check runs models of its own: the IBPS photo's face line (no framing
    // placed the face) and the IBPS signature's capitals line (OCR).
    for seed in 0..2 {
        let photo = photo_jpeg(900, 1200, 80 + seed);
        jobs.push(app.submit_ok(photo, "ibps-2026-photo").await?);
        let photo = photo_jpeg(900, 1200, 90 + seed);
        jobs.push(app.submit_ok(photo, "ibps-2026-signature").await?);
    }

    let logs = shared_tempdir()?;
    let mut worker = Reaped(app.spawn_logged("worker", &[], &logs.path().join("worker.log"))?);
    for &id in &jobs {
        let job = app.wait_terminal(id, 180).await?;
        assert_eq!(job["status"], "completed", "{job}");
    }
    let process = rythmiq_shared::cpu::of_process(worker.0.id())?.as_secs_f64();
    signal(&worker.0, "TERM")?;
    let rows: f64 = sqlx::query_scalar("SELECT sum(total_cpu_seconds) FROM cpu_metrics")
        .fetch_one(&app.pool)
        .await?;
    let stages: f64 = sqlx::query_scalar(
        "SELECT sum(coalesce(fetch_cpu_seconds, 0) + coalesce(decode_cpu_seconds, 0)
                   + coalesce(quality_cpu_seconds, 0) + coalesce(pre_ocr_cpu_seconds, 0)
                   + coalesce(enhancement_cpu_seconds, 0) + coalesce(ocr_cpu_seconds, 0)
                   + coalesce(schema_cpu_seconds, 0) + coalesce(upload_cpu_seconds, 0)
                   + coalesce(face_cpu_seconds, 0) + coalesce(capture_cpu_seconds, 0)
                   + startup_cpu_seconds)
         FROM cpu_metrics",
    )
    .fetch_one(&app.pool)
    .await?;
    let ratio = rows / process;
    eprintln!(
        "worker process {process:.3} CPU-s, cpu_metrics rows {rows:.3} ({:.1} %)",
        ratio * 100.0
    );
    assert!(
        (0.9..=1.1).contains(&ratio),
        "rows {rows:.3} CPU-s against the process's {process:.3}"
    );
    assert!(
        (stages - rows).abs() < 1e-6,
        "stages {stages} != total {rows}"
    );
    tokio::task::block_in_place(|| worker.0.wait())?;
    Ok(())
}
