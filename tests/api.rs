//! The HTTP API against a real Postgres and real storage: the happy path, every bad input,
//! isolation between users, transactional enqueue, idempotency and long-polling.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

async fn error_code(resp: reqwest::Response) -> Result<(StatusCode, String)> {
    let (status, code, _) = error_of(resp).await?;
    Ok((status, code))
}

#[tokio::test]
async fn a_photo_becomes_a_compliant_portal_file() -> Result<()> {
    let app = TestApp::spawn().await?;
    let (stop, _w) = app.start_worker(fast_worker_settings());
    let resp = app
        .submit(photo_jpeg(1200, 1600, 1), "neet-ug-2026-photo")
        .await?;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = resp.headers()["location"].to_str()?.to_owned();
    let body: Value = resp.json().await?;
    assert_eq!(body["status"], "pending");
    let id: Uuid = body["job_id"].as_str().unwrap_or_default().parse()?;
    assert_eq!(location, format!("/v1/jobs/{id}"));

    let job = app.wait_terminal(id, 60).await?;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["portal"], "neet-ug-2026-photo");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["output"]["width"], 200);
    assert_eq!(job["output"]["height"], 230);
    assert_eq!(job["output"]["dpi"], 200);
    assert_eq!(job["output"]["format"], "jpg");
    assert!(job["finished_at"].is_string());
    // OCR ran (cheaply: a photo) and the result says what it found.
    let conf = job["ocr"]["confidence"].as_f64().unwrap_or(-1.0);
    assert!((0.0..=1.0).contains(&conf), "{job}");
    assert!(job["ocr"]["rolled_back"].is_boolean() && job["ocr"]["chars"].is_i64());
    let pre_ocr: Option<f64> =
        sqlx::query_scalar("SELECT pre_ocr_cpu_seconds FROM cpu_metrics WHERE job_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await?;
    assert!(pre_ocr.is_some_and(|s| s > 0.0), "{pre_ocr:?}");

    let out = app.output(id).await?;
    assert_eq!(out.status(), StatusCode::OK);
    assert_eq!(out.headers()["content-type"], "image/jpeg");
    let bytes = out.bytes().await?;
    assert_eq!(job["output"]["bytes"], bytes.len());
    // NEET: 10–100 KB under both readings of a kilobyte.
    assert!(
        bytes.len() >= 10 * 1024 && bytes.len() <= 100 * 1000,
        "{} bytes",
        bytes.len()
    );
    let img = decode_output(&bytes)?;
    assert_eq!((img.width(), img.height()), (200, 230));

    // The signed link fetches the same file without a token; altered or expired links do not.
    let link = job["download_url"].as_str().unwrap_or_default().to_owned();
    assert!(
        link.starts_with(&format!("/v1/download/{id}?exp=")),
        "{job}"
    );
    let anon = reqwest::Client::new();
    let via_link = anon.get(app.url(&link)).send().await?;
    assert_eq!(via_link.status(), StatusCode::OK);
    assert_eq!(via_link.bytes().await?, bytes);
    let signer = rythmiq_shared::signing::LinkSigner::from_keyring(app.storage.keys());
    let expired = signer.download_link(
        id,
        chrono::Utc::now() - chrono::Duration::hours(25),
        rythmiq_shared::signing::DEFAULT_TTL,
    );
    let other_job = link.replace(&id.to_string(), &Uuid::new_v4().to_string());
    // One character of the signature changed (whatever it was).
    let (head, last) = link.split_at(link.len() - 1);
    let tampered = format!("{head}{}", if last == "A" { "B" } else { "A" });
    for bad in [expired, other_job, tampered, format!("/v1/download/{id}")] {
        let r = anon.get(app.url(&bad)).send().await?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or_default();
        assert_eq!(status, StatusCode::FORBIDDEN, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "LINK_INVALID", "{bad}");
    }
    let docs: i64 = sqlx::query_scalar("SELECT count(*) FROM documents WHERE job_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(docs, 1);
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn bad_requests_get_clear_json_errors() -> Result<()> {
    let app = TestApp::spawn_with(|s| s.max_upload_bytes = 1024 * 1024).await?;
    let photo = photo_jpeg(300, 400, 2);
    let url = app.url("/v1/jobs");
    let form = |file: Option<Vec<u8>>, portal: Option<&str>| {
        let mut f = reqwest::multipart::Form::new();
        if let Some(b) = file {
            f = f.part(
                "file",
                reqwest::multipart::Part::bytes(b).file_name("x.jpg"),
            );
        }
        if let Some(p) = portal {
            f = f.text("portal", p.to_owned());
        }
        f
    };
    let send = |f: reqwest::multipart::Form, token: Option<String>| {
        let mut r = app.client.post(&url).multipart(f);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let tok = Some(app.token());

    let cases: Vec<(reqwest::multipart::Form, Option<String>, StatusCode, &str)> = vec![
        (
            form(Some(photo.clone()), Some("neet-ug-2026-photo")),
            None,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        ),
        (
            form(Some(photo.clone()), Some("neet-ug-2026-photo")),
            Some("garbage".into()),
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        ),
        (
            form(Some(photo.clone()), Some("neet-ug-2026-photo")),
            Some(rythmiq_shared::auth::mint("another-secret", app.user, 60)?),
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        ),
        (
            form(None, Some("neet-ug-2026-photo")),
            tok.clone(),
            StatusCode::BAD_REQUEST,
            "PAYLOAD_MISSING",
        ),
        (
            form(Some(photo.clone()), None),
            tok.clone(),
            StatusCode::BAD_REQUEST,
            "PAYLOAD_MISSING",
        ),
        (
            form(Some(Vec::new()), Some("neet-ug-2026-photo")),
            tok.clone(),
            StatusCode::BAD_REQUEST,
            "PAYLOAD_MISSING",
        ),
        (
            form(Some(photo.clone()), Some("no-such-portal")),
            tok.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "UNKNOWN_PORTAL",
        ),
        (
            form(
                Some(b"just some text, renamed to photo.png".to_vec()),
                Some("neet-ug-2026-photo"),
            ),
            tok.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "PAYLOAD_INVALID",
        ),
        (
            form(
                Some(vec![0xFF; 2 * 1024 * 1024]),
                Some("neet-ug-2026-photo"),
            ),
            tok.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (i, (f, t, want_status, want_code)) in cases.into_iter().enumerate() {
        let (status, code) = error_code(send(f, t).await?).await?;
        assert_eq!(
            (status, code.as_str()),
            (want_status, want_code),
            "case {i}"
        );
    }

    // Not multipart at all, and an empty body.
    let resp = app
        .client
        .post(&url)
        .bearer_auth(app.token())
        .body("{}")
        .send()
        .await?;
    assert_eq!(
        error_code(resp).await?,
        (StatusCode::UNPROCESSABLE_ENTITY, "PAYLOAD_INVALID".into())
    );
    let resp = app
        .client
        .post(&url)
        .bearer_auth(app.token())
        .header("content-type", "multipart/form-data; boundary=x")
        .send()
        .await?;
    let (status, code) = error_code(resp).await?;
    assert!(status.is_client_error(), "{status}");
    assert!(
        code == "PAYLOAD_MISSING" || code == "PAYLOAD_INVALID",
        "{code}"
    );

    // Unknown routes and malformed ids are JSON errors too, never a 500.
    let resp = app
        .client
        .get(app.url("/v1/jobs/not-a-uuid"))
        .bearer_auth(app.token())
        .send()
        .await?;
    assert!(resp.status().is_client_error());
    let (status, code) = error_code(app.client.get(app.url("/nope")).send().await?).await?;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );

    // Nothing was enqueued by any of it.
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&app.pool)
        .await?;
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs")
        .fetch_one(&app.pool)
        .await?;
    assert_eq!((jobs, tasks), (0, 0));
    Ok(())
}

#[tokio::test]
async fn an_undecodable_image_fails_as_decode_failed_without_retries() -> Result<()> {
    let app = TestApp::spawn().await?;
    let (stop, _w) = app.start_worker(fast_worker_settings());
    // JPEG magic, then garbage: passes sniffing, cannot decode.
    let mut bogus = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bogus.extend(std::iter::repeat_n(0x5Au8, 5000));
    let id = app.submit_ok(bogus, "neet-ug-2026-photo").await?;
    let job = app.wait_terminal(id, 30).await?;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error_code"], "DECODE_FAILED", "{job}");
    assert_eq!(job["attempts"], 1, "a final error is not retried");
    assert!(job["output"].is_null());
    let events: Vec<(String, bool)> =
        sqlx::query_as("SELECT error_code, retryable FROM error_events WHERE job_id = $1")
            .bind(id)
            .fetch_all(&app.pool)
            .await?;
    assert_eq!(events, vec![("DECODE_FAILED".to_owned(), false)]);
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn a_user_never_sees_another_users_job() -> Result<()> {
    let app = TestApp::spawn().await?;
    let id = app
        .submit_ok(photo_jpeg(300, 400, 3), "neet-ug-2026-photo")
        .await?;
    let other = token_for(Uuid::new_v4());
    for path in [format!("/v1/jobs/{id}"), format!("/v1/jobs/{id}/output")] {
        let resp = app
            .client
            .get(app.url(&path))
            .bearer_auth(&other)
            .send()
            .await?;
        assert_eq!(
            error_code(resp).await?,
            (StatusCode::NOT_FOUND, "NOT_FOUND".into()),
            "{path}"
        );
    }
    // The owner sees it.
    assert_eq!(app.job(id, 0).await?["job_id"], id.to_string());
    // Output of an unfinished job is not there yet.
    let resp = app.output(id).await?;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn enqueue_is_all_or_nothing() -> Result<()> {
    let app = TestApp::spawn().await?;
    // Make the queue insert fail: the job row must not survive it, nor the upload.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'queue unavailable'; END; $$;
         CREATE TRIGGER refuse_tasks BEFORE INSERT ON apalis.jobs FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .execute(&app.pool)
    .await?;
    let resp = app
        .submit(photo_jpeg(300, 400, 4), "neet-ug-2026-photo")
        .await?;
    assert_eq!(
        error_code(resp).await?,
        (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL".into())
    );
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(jobs, 0, "a job row without its task must not exist");
    assert_eq!(
        count_files(app.storage_dir.path()),
        0,
        "the upload was removed"
    );

    // And the other way round: a failing job insert leaves no task.
    sqlx::raw_sql(
        "DROP TRIGGER refuse_tasks ON apalis.jobs;
         CREATE TRIGGER refuse_jobs BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .execute(&app.pool)
    .await?;
    let resp = app
        .submit(photo_jpeg(300, 400, 4), "neet-ug-2026-photo")
        .await?;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs")
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(tasks, 0);

    // With the fault gone, the same request goes through whole.
    sqlx::raw_sql("DROP TRIGGER refuse_jobs ON jobs")
        .execute(&app.pool)
        .await?;
    app.submit_ok(photo_jpeg(300, 400, 4), "neet-ug-2026-photo")
        .await?;
    let (jobs, tasks): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM apalis.jobs)")
            .fetch_one(&app.pool)
            .await?;
    assert_eq!((jobs, tasks), (1, 1));
    Ok(())
}

fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        count_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn idempotent_repeats_return_one_job_even_when_concurrent() -> Result<()> {
    let app = TestApp::spawn().await?;
    let photo = photo_jpeg(400, 500, 5);
    let token = app.token();
    let attempts =
        (0..12).map(|_| app.submit_as(&token, photo.clone(), "neet-ug-2026-photo", Some("key-1")));
    let mut ids = std::collections::HashSet::new();
    for resp in futures::future::join_all(attempts).await {
        let resp = resp?;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let body: Value = resp.json().await?;
        ids.insert(body["job_id"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let (jobs, tasks): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM apalis.jobs)")
            .fetch_one(&app.pool)
            .await?;
    assert_eq!((jobs, tasks), (1, 1), "enqueued exactly once");
    assert_eq!(
        count_files(app.storage_dir.path()),
        1,
        "losing racers removed their uploads"
    );

    // The same key with a different request is refused.
    let resp = app
        .submit_as(
            &token,
            photo_jpeg(400, 500, 6),
            "neet-ug-2026-photo",
            Some("key-1"),
        )
        .await?;
    assert_eq!(
        error_code(resp).await?,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "IDEMPOTENCY_KEY_REUSED".into()
        )
    );
    // Keys are per user: another user's identical key is a new job.
    let other = token_for(Uuid::new_v4());
    let resp = app
        .submit_as(&other, photo.clone(), "neet-ug-2026-photo", Some("key-1"))
        .await?;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(jobs, 2);
    Ok(())
}

#[tokio::test]
async fn waiting_clients_are_woken_by_notify_not_polling() -> Result<()> {
    let app = TestApp::spawn().await?;
    let id = app
        .submit_ok(photo_jpeg(600, 800, 7), "neet-ug-2026-photo")
        .await?;
    // wait=0 answers at once.
    assert_eq!(app.job(id, 0).await?["status"], "pending");
    // A long-poll with nothing happening holds for its full time.
    let t = Instant::now();
    assert_eq!(app.job(id, 1).await?["status"], "pending");
    assert!(t.elapsed() >= Duration::from_millis(950));

    let waiter = {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/jobs/{id}?wait=60"));
        let token = app.token();
        tokio::spawn(async move {
            let t = Instant::now();
            let v: Value = client
                .get(url)
                .bearer_auth(token)
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok((v, t.elapsed()))
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (stop, _w) = app.start_worker(fast_worker_settings());
    let (job, took) = waiter.await??;
    assert_eq!(job["status"], "completed", "{job}");
    assert!(
        took < Duration::from_secs(30),
        "woken on completion, not at the deadline: {took:?}"
    );
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn service_endpoints_describe_themselves() -> Result<()> {
    let app = TestApp::spawn().await?;
    let health: Value = app.get_json("/healthz").await?;
    assert_eq!(health["status"], "ok");
    let ready = app.client.get(app.url("/readyz")).send().await?;
    assert_eq!(ready.status(), StatusCode::OK);

    let portals: Vec<Value> = app.get_json("/v1/portal-schemas").await?;
    let slugs: Vec<&str> = portals.iter().filter_map(|p| p["slug"].as_str()).collect();
    for slug in [
        "neet-ug-2026-photo",
        "neet-ug-2026-signature",
        "jee-main-2026-photo",
        "jee-main-2026-signature",
        "passport-india-photo",
        "ibps-2026-photo",
        "ibps-2026-signature",
        "aadhaar-update-document",
        "college-generic-photo",
    ] {
        assert!(slugs.contains(&slug), "{slug} missing from {slugs:?}");
    }
    let neet = portals
        .iter()
        .find(|p| p["slug"] == "neet-ug-2026-photo")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (neet["width"].as_i64(), neet["height"].as_i64()),
        (Some(200), Some(230))
    );
    assert_eq!(
        (
            neet["min_kb"].as_i64(),
            neet["max_kb"].as_i64(),
            neet["dpi"].as_i64()
        ),
        (Some(10), Some(100), Some(200))
    );

    let spec: Value = app.get_json("/openapi.json").await?;
    for path in [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/output",
        "/v1/portal-schemas",
        "/healthz",
        "/readyz",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }

    // Readiness notices a database that is not migrated.
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .execute(&app.pool)
    .await?;
    let ready = app.client.get(app.url("/readyz")).send().await?;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    Ok(())
}

#[tokio::test]
async fn compiled_in_portal_rules_match_the_database() -> Result<()> {
    let app = TestApp::spawn().await?;
    let from_db = rythmiq_shared::db::active_portals(&app.pool).await?;
    let mut builtin = rythmiq_shared::portals::builtin()?;
    builtin.sort_by(|a, b| a.slug.cmp(&b.slug));
    assert_eq!(from_db.len(), builtin.len());
    for (db, bi) in from_db.iter().zip(&builtin) {
        // Same rule but for the row id and version, which only the database assigns.
        let mut bi = bi.clone();
        bi.id = db.id;
        bi.version = db.version;
        assert_eq!(db, &bi);
    }
    Ok(())
}

#[tokio::test]
async fn raw_uploads_and_outputs_are_deleted_when_their_retention_runs_out() -> Result<()> {
    let app = TestApp::spawn().await?;
    let mut settings = fast_worker_settings();
    // Raw uploads go at the first sweep after the job; outputs after an hour.
    settings.raw_retention = Duration::ZERO;
    settings.output_retention = Duration::from_secs(3600);
    let (stop, _w) = app.start_worker(settings);
    let id = app
        .submit_ok(photo_jpeg(900, 1200, 77), "neet-ug-2026-photo")
        .await?;
    let job = app.wait_terminal(id, 60).await?;
    assert_eq!(job["status"], "completed", "{job}");
    let (input_key, output_key): (String, String) =
        sqlx::query_as("SELECT input_key, output_key FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await?;
    let stored = |key: String| {
        let storage = app.storage.clone();
        async move {
            let key = rythmiq_shared::storage::ObjectKey::parse(&key)?;
            anyhow::Ok(storage.get_object(&key).await.is_ok())
        }
    };
    let pool = app.pool.clone();
    let deleted = |column: &'static str| {
        let pool = pool.clone();
        move || {
            let pool = pool.clone();
            async move {
                let at: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
                    sqlx::AssertSqlSafe(format!("SELECT {column} FROM jobs WHERE id = $1")),
                )
                .bind(id)
                .fetch_one(&pool)
                .await?;
                Ok(at.is_some())
            }
        }
    };
    eventually(30, deleted("input_deleted_at")).await?;
    assert!(!stored(input_key).await?, "the raw upload is gone");
    assert!(stored(output_key.clone()).await?, "the output is kept");
    let out = app.output(id).await?;
    assert_eq!(out.status(), StatusCode::OK);

    // A week later, as far as the sweep can tell.
    sqlx::query("UPDATE jobs SET finished_at = now() - interval '2 hours' WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await?;
    eventually(30, deleted("output_deleted_at")).await?;
    assert!(!stored(output_key).await?, "the output is gone");
    let out = app.output(id).await?;
    assert_eq!(out.status(), StatusCode::GONE);
    let body: Value = out.json().await?;
    assert_eq!(body["error"]["code"], "OUTPUT_EXPIRED");
    let job = app.job(id, 0).await?;
    assert!(job["download_url"].is_null(), "{job}");
    stop.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submissions_never_overdraw_credits() -> Result<()> {
    let app = TestApp::spawn_with(|s| s.starting_credits = 5).await?;
    let submissions = (0..12u32).map(|i| {
        let app = &app;
        async move {
            app.submit(photo_jpeg(200, 240, 1000 + i), "neet-ug-2026-photo")
                .await
        }
    });
    let responses = futures::future::join_all(submissions).await;
    let (mut accepted, mut refused) = (0, 0);
    for r in responses {
        let r = r?;
        match r.status() {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::PAYMENT_REQUIRED => {
                let body: Value = r.json().await?;
                assert_eq!(body["error"]["code"], "INSUFFICIENT_CREDITS");
                refused += 1;
            }
            other => anyhow::bail!("unexpected {other}"),
        }
    }
    assert_eq!((accepted, refused), (5, 7));
    let balance: i32 = sqlx::query_scalar("SELECT balance FROM user_credits WHERE user_id = $1")
        .bind(app.user)
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(balance, 0);
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE user_id = $1")
        .bind(app.user)
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(jobs, 5, "a refused request enqueues nothing");
    let raw = app
        .storage
        .list(rythmiq_shared::storage::ObjectKind::Raw)
        .await?;
    assert_eq!(raw.len(), 5, "a refused request leaves no upload behind");
    Ok(())
}

#[tokio::test]
async fn failures_that_are_ours_are_refunded_and_bad_uploads_are_not() -> Result<()> {
    let app = TestApp::spawn_with(|s| s.starting_credits = 5).await?;
    // The user's fault: an undecodable upload. No refund.
    let (stop, _w) = app.start_worker(fast_worker_settings());
    let mut bogus = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bogus.extend([0u8; 300]);
    let theirs = app.submit_ok(bogus, "neet-ug-2026-photo").await?;
    let b = app.wait_terminal(theirs, 60).await?;
    assert_eq!(b["error_code"], "DECODE_FAILED", "{b}");
    stop.cancel();
    // Ours: every attempt runs out of time (INTERNAL, retried, then failed). Refunded.
    let mut settings = fast_worker_settings();
    settings.job_timeout = Duration::from_millis(1);
    let (stop, _w) = app.start_worker(settings);
    let ours = app
        .submit_ok(slow_png(3000, 3000), "neet-ug-2026-photo")
        .await?;
    let a = app.wait_terminal(ours, 60).await?;
    assert_eq!(a["error_code"], "INTERNAL", "{a}");
    stop.cancel();
    let balance: i32 = sqlx::query_scalar("SELECT balance FROM user_credits WHERE user_id = $1")
        .bind(app.user)
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(balance, 4, "5 − 2 charged + 1 refunded");
    let owed: Vec<i32> =
        sqlx::query_scalar("SELECT credits_charged FROM jobs WHERE user_id = $1 ORDER BY id")
            .bind(app.user)
            .fetch_all(&app.pool)
            .await?;
    assert_eq!(owed.iter().sum::<i32>(), 1, "{owed:?}");
    Ok(())
}

#[tokio::test]
async fn job_creation_is_rate_limited_per_user() -> Result<()> {
    let app = TestApp::spawn_with(|s| s.rate_limit_per_minute = 3).await?;
    for i in 0..3 {
        app.submit_ok(photo_jpeg(200, 240, 500 + i), "neet-ug-2026-photo")
            .await?;
    }
    let r = app
        .submit(photo_jpeg(200, 240, 599), "neet-ug-2026-photo")
        .await?;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = r.headers()["retry-after"].to_str()?.parse()?;
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = r.json().await?;
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    // Another user is not affected.
    let other = token_for(Uuid::new_v4());
    let r = app
        .submit_as(
            &other,
            photo_jpeg(200, 240, 600),
            "neet-ug-2026-photo",
            None,
        )
        .await?;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    Ok(())
}

/// A provider's token for `user`, signed with a fixture key (`tests/fixtures/jwks`).
fn provider_token(
    alg: jsonwebtoken::Algorithm,
    pem: &str,
    kid: &str,
    user: Uuid,
    aud: &str,
    exp_in: i64,
) -> Result<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwks");
    let pem = std::fs::read(dir.join(pem))?;
    let key = match alg {
        jsonwebtoken::Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(&pem)?,
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(&pem)?,
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.into());
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({"sub": user.to_string(), "aud": aud,
                                    "iss": "https://auth.example.test", "iat": now,
                                    "exp": now + exp_in});
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}

#[tokio::test]
async fn identity_provider_tokens_are_checked_against_its_jwks() -> Result<()> {
    // The provider: its published keys on a local port.
    let jwks = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwks/jwks.json"),
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let jwks_url = format!("http://{}/.well-known/jwks.json", listener.local_addr()?);
    let provider = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || std::future::ready(jwks.clone())),
    );
    tokio::spawn(async move { axum::serve(listener, provider).await });

    let app = TestApp::spawn_with(|s| {
        s.provider = rythmiq_shared::auth::ProviderSettings {
            jwks_url: Some(jwks_url),
            audience: Some("authenticated".into()),
            issuer: Some("https://auth.example.test".into()),
        }
    })
    .await?;
    let list = |token: String| {
        let app = &app;
        async move {
            let r = app
                .client
                .get(app.url(&format!("/v1/jobs/{}", Uuid::new_v4())))
                .bearer_auth(token)
                .send()
                .await?;
            anyhow::Ok(r.status())
        }
    };
    use jsonwebtoken::Algorithm::{ES256, RS256};
    let user = Uuid::new_v4();
    // Accepted: a valid RS256 and ES256 token (the job does not exist: 404, not 401).
    for token in [
        provider_token(RS256, "rsa.pem", "test-rsa", user, "authenticated", 600)?,
        provider_token(ES256, "ec.pem", "test-ec", user, "authenticated", 600)?,
        token_for(user),
    ] {
        assert_eq!(list(token).await?, StatusCode::NOT_FOUND);
    }
    // Refused: expired, wrong audience, signed by a key the JWKS does not hold, an unknown key
    // id, a key used with another algorithm's id, and `alg: none`.
    let valid = provider_token(RS256, "rsa.pem", "test-rsa", user, "authenticated", 600)?;
    let unsigned = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIiwia2lkIjoidGVzdC1yc2EifQ.{}.",
        valid.split('.').nth(1).unwrap_or_default()
    );
    for (why, token) in [
        (
            "expired",
            provider_token(RS256, "rsa.pem", "test-rsa", user, "authenticated", -600)?,
        ),
        (
            "audience",
            provider_token(RS256, "rsa.pem", "test-rsa", user, "somebody-else", 600)?,
        ),
        (
            "forged",
            provider_token(
                RS256,
                "rsa-other.pem",
                "test-rsa",
                user,
                "authenticated",
                600,
            )?,
        ),
        (
            "unknown kid",
            provider_token(RS256, "rsa.pem", "no-such-key", user, "authenticated", 600)?,
        ),
        (
            "kid of the EC key",
            provider_token(RS256, "rsa.pem", "test-ec", user, "authenticated", 600)?,
        ),
        ("alg none", unsigned),
    ] {
        assert_eq!(list(token).await?, StatusCode::UNAUTHORIZED, "{why}");
    }
    Ok(())
}

/// `POST /v1/checks` with `file` and `portal`, as `token`'s user.
async fn post_check(
    app: &TestApp,
    token: &str,
    file: Vec<u8>,
    portal: &str,
) -> Result<reqwest::Response> {
    Ok(app
        .client
        .post(app.url("/v1/checks"))
        .bearer_auth(token)
        .multipart(common::upload_form(file, portal))
        .send()
        .await?)
}

#[tokio::test]
async fn a_check_explains_a_file_without_a_job_or_a_credit_and_is_rate_limited() -> Result<()> {
    let app = TestApp::spawn_with(|s| {
        s.rate_limit_per_minute = 3;
        s.starting_credits = 5;
    })
    .await?;
    let astronaut = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline/tests/fixtures/photos/astronaut.jpg"),
    )?;
    let r = post_check(&app, &app.token(), astronaut.clone(), "neet-ug-2026-photo").await?;
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await?;
    assert_eq!(report["portal"], "neet-ug-2026-photo");
    assert_eq!(report["compliant"], false);
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["passed"] == false)
        .filter_map(|l| l["rule"].as_str())
        .collect();
    assert_eq!(
        failed,
        [
            "pixels",
            "dpi",
            "orientation",
            "background",
            "face_height",
            "face_centre"
        ],
        "{report:#}"
    );
    // The face is found, and measured: about a fifth of the photo's height.
    let line = |name: &str| {
        report["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["rule"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(line("face")["passed"], true, "{report:#}");
    let height = line("face_height");
    assert!(
        height["message"]
            .as_str()
            .is_some_and(|m| m.contains("this rule needs 70–80 %")),
        "{height}"
    );

    // Not an image, and an unknown portal: the API's error envelope.
    let r = post_check(
        &app,
        &app.token(),
        b"plain text".to_vec(),
        "neet-ug-2026-photo",
    )
    .await?;
    let (status, code, _) = error_of(r).await?;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "PAYLOAD_INVALID")
    );
    let r = post_check(&app, &app.token(), astronaut.clone(), "no-such-portal").await?;
    let (status, code, _) = error_of(r).await?;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "UNKNOWN_PORTAL")
    );

    // The fourth check in the minute is refused, with Retry-After; another user is not.
    let r = post_check(&app, &app.token(), astronaut.clone(), "neet-ug-2026-photo").await?;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = r.headers()["retry-after"].to_str()?.parse()?;
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let other = token_for(Uuid::new_v4());
    let r = post_check(&app, &other, astronaut, "neet-ug-2026-photo").await?;
    assert_eq!(r.status(), StatusCode::OK);

    // No job, no credit: the user has no job rows and was never charged.
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(jobs, 0);
    let charged: Option<i32> =
        sqlx::query_scalar("SELECT balance FROM user_credits WHERE user_id = $1")
            .bind(app.user)
            .fetch_optional(&app.pool)
            .await?;
    assert!(charged.is_none_or(|b| b == 5), "{charged:?}");
    // A token is required.
    let r = app.client.post(app.url("/v1/checks")).send().await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn a_completed_job_carries_the_check_report_of_its_output() -> Result<()> {
    let app = TestApp::spawn().await?;
    let (stop, _w) = app.start_worker(fast_worker_settings());
    let id = app
        .submit_ok(photo_jpeg(900, 1100, 77), "ibps-2026-photo")
        .await?;
    let job = app.wait_terminal(id, 60).await?;
    stop.cancel();
    assert_eq!(job["status"], "completed", "{job}");
    let report = &job["report"];
    assert_eq!(report["portal"], "ibps-2026-photo", "{job:#}");
    assert!(report["compliant"].is_boolean());
    // What the fit guarantees, the report confirms line by line.
    for rule in ["format", "pixels", "dpi", "size", "colour", "orientation"] {
        let line = report["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["rule"] == rule)
            .cloned()
            .unwrap_or_default();
        assert_eq!(line["passed"], true, "{rule}: {report:#}");
    }
    let pixels = report["checks"][1].clone();
    assert_eq!(pixels["found"], "200 × 230 px", "{pixels}");
    Ok(())
}
