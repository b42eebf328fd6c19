//! Batches against a real Postgres, real storage and a real worker: one job per file in one
//! transaction, one ZIP of what succeeded with a manifest of what did not, signed links,
//! credits and validation that write nothing, and the sweep that packages a missed batch.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::*;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use rythmiq_shared::db::{self, Role};
use serde_json::Value;
use uuid::Uuid;

/// A real photo: the public-domain astronaut portrait the worker's tests use.
fn real_photo() -> Result<Vec<u8>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pipeline/tests/fixtures/photos/astronaut.jpg");
    std::fs::read(&path).with_context(|| path.display().to_string())
}

/// A signature as a phone photographs it: a pen stroke on slightly grey paper.
fn signature_png() -> Result<Vec<u8>> {
    let (w, h) = (1200u32, 480u32);
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([238, 236, 230]));
    for step in 0..4000u32 {
        let t = step as f32 / 4000.0;
        let x = 80.0 + t * 1040.0;
        let y = 240.0 + (t * 19.0).sin() * 110.0 * (1.0 - t * 0.5) + (t * 5.0).cos() * 40.0;
        for dx in -4i32..=4 {
            for dy in -4i32..=4 {
                if dx * dx + dy * dy <= 16 {
                    let (px, py) = (x as i32 + dx, y as i32 + dy);
                    if px >= 0 && py >= 0 && (px as u32) < w && (py as u32) < h {
                        img.put_pixel(px as u32, py as u32, image::Rgb([20, 24, 70]));
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)?;
    Ok(out)
}

/// JPEG magic, then garbage: passes sniffing, cannot decode.
fn undecodable() -> Vec<u8> {
    let mut bogus = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bogus.extend(std::iter::repeat_n(0x5Au8, 5000));
    bogus
}

fn form(files: &[(&[u8], &str, &str)]) -> Form {
    let mut f = Form::new();
    for (bytes, name, portal) in files {
        f = f
            .part(
                "file",
                Part::bytes(bytes.to_vec()).file_name(name.to_string()),
            )
            .text("portal", portal.to_string());
    }
    f
}

async fn post_batch(app: &TestApp, token: &str, form: Form) -> Result<reqwest::Response> {
    Ok(app
        .client
        .post(app.url("/v1/batches"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await?)
}

async fn batch(app: &TestApp, id: Uuid, wait: u64) -> Result<Value> {
    let resp = app
        .client
        .get(app.url(&format!("/v1/batches/{id}?wait={wait}")))
        .bearer_auth(app.token())
        .send()
        .await?;
    Ok(resp.error_for_status()?.json().await?)
}

/// Long-polls until the batch is completed or failed.
async fn wait_batch(app: &TestApp, id: Uuid, secs: u64) -> Result<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline
            .saturating_duration_since(std::time::Instant::now())
            .as_secs();
        let b = batch(app, id, left.clamp(1, 60)).await?;
        if matches!(b["status"].as_str(), Some("completed" | "failed")) {
            return Ok(b);
        }
        if std::time::Instant::now() >= deadline {
            bail!("batch {id} not finished after {secs}s: {b}");
        }
    }
}

/// Every entry of a ZIP, by name.
fn unzip(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))?;
    let mut out = BTreeMap::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i)?;
        let mut data = Vec::new();
        f.read_to_end(&mut data)?;
        out.insert(f.name()?.into_owned(), data);
    }
    Ok(out)
}

async fn counts(app: &TestApp) -> Result<(i64, i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT (SELECT count(*) FROM batches), (SELECT count(*) FROM jobs),
                (SELECT count(*) FROM apalis.jobs)",
    )
    .fetch_one(&app.pool)
    .await?)
}

fn id_of(v: &Value) -> Result<Uuid> {
    Ok(v.as_str().context("not a string")?.parse()?)
}

#[tokio::test]
async fn a_batch_packages_what_succeeded_and_reports_what_did_not() -> Result<()> {
    let app = TestApp::spawn().await?;
    let mut settings = fast_worker_settings();
    // No sweep during the test (its first run is at start-up): the last job's worker packages.
    settings.maintenance_interval = Duration::from_secs(3600);
    let (stop, _w) = app.start_worker(settings);
    let (photo, signature, broken) = (real_photo()?, signature_png()?, undecodable());
    let resp = post_batch(
        &app,
        &app.token(),
        form(&[
            (&photo, "photo.jpg", "neet-ug-2026-photo"),
            (&signature, "my signature.png", "neet-ug-2026-signature"),
            (&broken, "broken.jpg", "neet-ug-2026-photo"),
        ]),
    )
    .await?;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = resp.headers()["location"].to_str()?.to_owned();
    let created: Value = resp.json().await?;
    let id = id_of(&created["batch_id"])?;
    assert_eq!(location, format!("/v1/batches/{id}"));
    assert_eq!(created["status"], "processing");
    let jobs = created["jobs"].as_array().context("jobs")?;
    let portals: Vec<&str> = jobs.iter().filter_map(|j| j["portal"].as_str()).collect();
    assert_eq!(
        portals,
        [
            "neet-ug-2026-photo",
            "neet-ug-2026-signature",
            "neet-ug-2026-photo"
        ]
    );
    assert_eq!(jobs[1]["filename"], "my_signature.png");
    assert!(jobs.iter().all(|j| j["status"] == "pending"), "{created}");

    let b = wait_batch(&app, id, 120).await?;
    assert_eq!(b["status"], "completed", "{b}");
    assert_eq!(
        (b["succeeded"].as_u64(), b["failed"].as_u64()),
        (Some(2), Some(1)),
        "{b}"
    );
    assert_eq!(b["jobs"][0]["status"], "completed");
    assert_eq!(b["jobs"][1]["status"], "completed");
    assert_eq!(b["jobs"][2]["status"], "failed");
    assert_eq!(b["jobs"][2]["error_code"], "DECODE_FAILED");
    assert!(b["jobs"][2]["output"].is_null());
    assert_eq!(b["package"]["files"], 2);
    assert!(b["error_code"].is_null(), "{b}");

    // The ZIP, through the signed link and no token.
    let link = b["download_url"].as_str().unwrap_or_default().to_owned();
    assert!(
        link.starts_with(&format!("/v1/download/batches/{id}?exp=")),
        "{b}"
    );
    let anon = reqwest::Client::new();
    let resp = anon.get(app.url(&link)).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/zip");
    let zip_bytes = resp.bytes().await?;
    assert_eq!(b["package"]["bytes"].as_u64(), Some(zip_bytes.len() as u64));
    let entries = unzip(&zip_bytes)?;

    // Exactly the two outputs, under their portal file names, byte for byte the jobs' outputs.
    let mut want: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for j in &b["jobs"].as_array().context("jobs")?[..2] {
        let name = j["output"]["filename"]
            .as_str()
            .context("filename")?
            .to_owned();
        let out = app.output(id_of(&j["job_id"])?).await?;
        assert_eq!(out.status(), StatusCode::OK);
        want.insert(name, out.bytes().await?.to_vec());
    }
    assert!(
        want.contains_key(&format!(
            "neet_photo_{}.jpg",
            b["jobs"][0]["job_id"].as_str().unwrap_or_default()
        )),
        "{want:?}"
    );
    let files: BTreeMap<String, Vec<u8>> = entries
        .iter()
        .filter(|(n, _)| *n != "manifest.json" && *n != "README.txt")
        .map(|(n, d)| (n.clone(), d.clone()))
        .collect();
    assert_eq!(files, want, "the ZIP holds exactly the two outputs");
    assert!(entries.contains_key("README.txt"));

    // The manifest names the failure with its code.
    let manifest: Value = serde_json::from_slice(&entries["manifest.json"])?;
    assert_eq!(manifest["batch_id"], id.to_string());
    assert_eq!(
        (manifest["succeeded"].as_u64(), manifest["failed"].as_u64()),
        (Some(2), Some(1))
    );
    let entry = &manifest["files"][2];
    assert_eq!(entry["status"], "failed");
    assert_eq!(entry["error_code"], "DECODE_FAILED");
    assert_eq!(entry["upload"], "broken.jpg");
    assert_eq!(entry["portal"], "neet-ug-2026-photo");
    assert!(entry["file"].is_null());
    assert!(
        entry["error_message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(manifest["files"][1]["portal"], "neet-ug-2026-signature");
    assert_eq!(
        manifest["files"][1]["file"],
        b["jobs"][1]["output"]["filename"]
    );
    // Each packaged file carries its check report; a failed one has none.
    let report = &manifest["files"][1]["report"];
    assert_eq!(report["portal"], "neet-ug-2026-signature", "{manifest:#}");
    let pixels = report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|l| l["rule"] == "pixels"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(pixels["passed"], true, "{report:#}");
    assert!(entry["report"].is_null());
    let readme = String::from_utf8(entries["README.txt"].clone())?;
    assert!(
        readme.contains("2 of 3 files") && readme.contains("DECODE_FAILED"),
        "{readme}"
    );

    // The owner's download with the bearer token is the same ZIP.
    let resp = app
        .client
        .get(app.url(&format!("/v1/batches/{id}/output")))
        .bearer_auth(app.token())
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await?, zip_bytes);

    // Stored encrypted, under the key layout of `ObjectKey::build`.
    let zip_key: String = sqlx::query_scalar("SELECT zip_key FROM batches WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await?;
    assert!(
        zip_key.starts_with(&format!("output/{}/{id}/", app.user))
            && zip_key.ends_with("_output.zip.enc"),
        "{zip_key}"
    );
    let on_disk = std::fs::read(app.storage_dir.path().join(&zip_key))?;
    assert!(
        !on_disk.starts_with(b"PK"),
        "the package is encrypted at rest"
    );

    // Altered links are refused; a job's link never opens a batch and the other way round.
    let (path, query) = link.split_once('?').context("query")?;
    let signer = rythmiq_shared::signing::LinkSigner::from_keyring(app.storage.keys());
    let job_link =
        signer.download_link(id, chrono::Utc::now(), rythmiq_shared::signing::DEFAULT_TTL);
    let job_query = job_link.split_once('?').context("query")?.1;
    let expired = signer.batch_download_link(
        id,
        chrono::Utc::now() - chrono::Duration::hours(25),
        rythmiq_shared::signing::DEFAULT_TTL,
    );
    let (before_sig, sig) = link.split_once("&sig=").context("sig")?;
    let flipped = if sig.starts_with('A') { 'B' } else { 'A' };
    for bad in [
        format!("{before_sig}&sig={flipped}{}", &sig[1..]),
        link.replace(&id.to_string(), &Uuid::new_v4().to_string()),
        format!("/v1/download/{id}?{query}"),
        format!("{path}?{job_query}"),
        expired,
        path.to_owned(),
    ] {
        let resp = anon.get(app.url(&bad)).send().await?;
        let (status, code, _) = error_of(resp).await.with_context(|| bad.clone())?;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::FORBIDDEN, "LINK_INVALID"),
            "{bad}"
        );
    }

    // Another user sees nothing of it.
    let other = token_for(Uuid::new_v4());
    for p in [
        format!("/v1/batches/{id}"),
        format!("/v1/batches/{id}/output"),
    ] {
        let resp = app
            .client
            .get(app.url(&p))
            .bearer_auth(&other)
            .send()
            .await?;
        let (status, code, _) = error_of(resp).await?;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::NOT_FOUND, "NOT_FOUND"),
            "{p}"
        );
    }
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn a_batch_costs_a_credit_per_file_all_or_nothing() -> Result<()> {
    let app = TestApp::spawn_with(|s| s.starting_credits = 2).await?;
    let photo = photo_jpeg(300, 400, 11);
    let three = form(&[
        (&photo, "a.jpg", "neet-ug-2026-photo"),
        (&photo, "b.jpg", "jee-main-2026-photo"),
        (&photo, "c.jpg", "college-generic-photo"),
    ]);
    let (status, code, _) = error_of(post_batch(&app, &app.token(), three).await?).await?;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PAYMENT_REQUIRED, "INSUFFICIENT_CREDITS")
    );
    assert_eq!(counts(&app).await?, (0, 0, 0), "nothing is enqueued");
    let raw = app
        .storage
        .list(rythmiq_shared::storage::ObjectKind::Raw)
        .await?;
    assert!(raw.is_empty(), "the uploads were removed: {raw:?}");
    // Not even the account was opened: the refused request left no trace.
    let balance: Option<i32> =
        sqlx::query_scalar("SELECT balance FROM user_credits WHERE user_id = $1")
            .bind(app.user)
            .fetch_optional(&app.pool)
            .await?;
    assert_eq!(balance, None, "nothing was charged");

    // Two files fit the balance exactly.
    let two = form(&[
        (&photo, "a.jpg", "neet-ug-2026-photo"),
        (&photo, "b.jpg", "jee-main-2026-photo"),
    ]);
    assert_eq!(
        post_batch(&app, &app.token(), two).await?.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(counts(&app).await?, (1, 2, 2));
    let (balance, charged): (i32, i64) = sqlx::query_as(
        "SELECT (SELECT balance FROM user_credits WHERE user_id = $1),
                (SELECT sum(credits_charged) FROM jobs WHERE user_id = $1)",
    )
    .bind(app.user)
    .fetch_one(&app.pool)
    .await?;
    assert_eq!((balance, charged), (0, 2));
    Ok(())
}

#[tokio::test]
async fn invalid_batches_are_refused_before_anything_is_written() -> Result<()> {
    let app = TestApp::spawn_with(|s| {
        s.max_batch_files = 3;
        s.max_upload_bytes = 1024 * 1024;
    })
    .await?;
    let photo = photo_jpeg(300, 400, 12);
    let text = b"just some text, renamed to photo.png".to_vec();
    let big = vec![0xFF; 2 * 1024 * 1024];
    let tok = app.token();
    let cases: Vec<(Form, StatusCode, &str, &str)> = vec![
        (
            form(&[
                (&photo, "a.jpg", "neet-ug-2026-photo"),
                (&photo, "b.jpg", "no-such-portal"),
            ]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "UNKNOWN_PORTAL",
            "file 2",
        ),
        (
            form(&[
                (&photo, "a.jpg", "neet-ug-2026-photo"),
                (&photo, "b.jpg", "neet-ug-2026-photo"),
                (&photo, "c.jpg", "neet-ug-2026-photo"),
                (&photo, "d.jpg", "neet-ug-2026-photo"),
            ]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "TOO_MANY_FILES",
            "at most 3",
        ),
        (
            form(&[
                (&text, "a.png", "neet-ug-2026-photo"),
                (&photo, "b.jpg", "neet-ug-2026-photo"),
            ]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "PAYLOAD_INVALID",
            "file 1",
        ),
        (
            form(&[(&photo, "a.jpg", "neet-ug-2026-photo")])
                .part("file", Part::bytes(photo.clone()).file_name("b.jpg")),
            StatusCode::BAD_REQUEST,
            "PAYLOAD_MISSING",
            "portal",
        ),
        (
            form(&[
                (&photo, "a.jpg", "neet-ug-2026-photo"),
                (&[], "empty.jpg", "neet-ug-2026-photo"),
            ]),
            StatusCode::BAD_REQUEST,
            "PAYLOAD_MISSING",
            "file 2",
        ),
        (
            form(&[
                (&photo, "a.jpg", "neet-ug-2026-photo"),
                (&big, "big.jpg", "neet-ug-2026-photo"),
            ]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "file 2",
        ),
        (
            Form::new().text("portal", "neet-ug-2026-photo"),
            StatusCode::BAD_REQUEST,
            "PAYLOAD_MISSING",
            "file",
        ),
    ];
    for (i, (f, want_status, want_code, says)) in cases.into_iter().enumerate() {
        let (status, code, message) = error_of(post_batch(&app, &tok, f).await?).await?;
        assert_eq!(
            (status, code.as_str()),
            (want_status, want_code),
            "case {i}: {message}"
        );
        assert!(
            message.contains(says),
            "case {i}: {message:?} should mention {says:?}"
        );
    }
    let unauthenticated = app
        .client
        .post(app.url("/v1/batches"))
        .multipart(form(&[(&photo, "a.jpg", "neet-ug-2026-photo")]))
        .send()
        .await?;
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);

    assert_eq!(
        counts(&app).await?,
        (0, 0, 0),
        "no batch, job or task was written"
    );
    let stored = app
        .storage
        .list(rythmiq_shared::storage::ObjectKind::Raw)
        .await?;
    assert!(stored.is_empty(), "no upload was stored: {stored:?}");
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM user_credits")
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(accounts, 0, "no credit was touched");

    // The batch routes are in the OpenAPI document.
    let spec: Value = app.get_json("/openapi.json").await?;
    for path in [
        "/v1/batches",
        "/v1/batches/{id}",
        "/v1/batches/{id}/output",
        "/v1/download/batches/{id}",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    Ok(())
}

#[tokio::test]
async fn batches_count_against_the_rate_limit_and_repeat_idempotently() -> Result<()> {
    let app = TestApp::spawn_with(|s| s.rate_limit_per_minute = 3).await?;
    let photo = photo_jpeg(300, 400, 13);
    let two = || {
        form(&[
            (&photo, "a.jpg", "neet-ug-2026-photo"),
            (&photo, "b.jpg", "neet-ug-2026-signature"),
        ])
    };
    let send = |key: Option<&'static str>| {
        let mut req = app
            .client
            .post(app.url("/v1/batches"))
            .bearer_auth(app.token())
            .multipart(two());
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        req.send()
    };
    let first = send(Some("batch-1")).await?;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await?;
    // A repeat returns the same batch and enqueues nothing (nor counts against the limit).
    let again = send(Some("batch-1")).await?;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await?;
    assert_eq!(again["batch_id"], first["batch_id"]);
    assert_eq!(again["jobs"], first["jobs"]);
    assert_eq!(counts(&app).await?, (1, 2, 2));

    // 2 jobs in the window, limit 3: another two-file batch is over it, whole.
    let resp = send(None).await?;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = resp.headers()["retry-after"].to_str()?.parse()?;
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let (_, code, _) = error_of(resp).await?;
    assert_eq!(code, "RATE_LIMITED");
    assert_eq!(counts(&app).await?, (1, 2, 2));
    // One more file still fits.
    let one = app
        .submit(photo_jpeg(300, 400, 14), "neet-ug-2026-photo")
        .await?;
    assert_eq!(one.status(), StatusCode::ACCEPTED);
    Ok(())
}

/// Makes a job completed by hand, with `bytes` stored as its output under `name`.
async fn complete_by_sql(app: &TestApp, job: Uuid, name: &str, bytes: &[u8]) -> Result<()> {
    let key = rythmiq_shared::storage::ObjectKey::output(app.user, job, 1_800_000_000, name)?;
    app.storage.put_object(&key, bytes.to_vec().into()).await?;
    sqlx::query(
        "UPDATE jobs SET state = 'completed', output_key = $2, output_filename = $3,
                output_format = 'jpg', output_bytes = $4, output_width = 200,
                output_height = 230, output_dpi = 200, finished_at = now()
         WHERE id = $1",
    )
    .bind(job)
    .bind(key.as_str())
    .bind(name)
    .bind(bytes.len() as i64)
    .execute(&app.pool)
    .await?;
    Ok(())
}

async fn fail_by_sql(app: &TestApp, job: Uuid, code: &str) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET state = 'failed', error_code = $2, error_message = 'by the test',
                finished_at = now()
         WHERE id = $1",
    )
    .bind(job)
    .bind(code)
    .execute(&app.pool)
    .await?;
    Ok(())
}

async fn new_batch(app: &TestApp, n: usize) -> Result<(Uuid, Vec<Uuid>)> {
    let photo = photo_jpeg(300, 400, 15);
    let files: Vec<(&[u8], &str, &str)> = (0..n)
        .map(|_| (&photo[..], "p.jpg", "neet-ug-2026-photo"))
        .collect();
    let resp = post_batch(app, &app.token(), form(&files)).await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    if status != StatusCode::ACCEPTED {
        bail!("batch refused: {status} {body}");
    }
    let jobs = body["jobs"]
        .as_array()
        .context("jobs")?
        .iter()
        .map(|j| id_of(&j["job_id"]))
        .collect::<Result<_>>()?;
    Ok((id_of(&body["batch_id"])?, jobs))
}

#[tokio::test]
async fn the_sweep_packages_batches_that_were_missed_or_abandoned() -> Result<()> {
    let app = TestApp::spawn().await?;
    let settings = fast_worker_settings();
    // As `rythmiq worker` does: its role's grants must be enough to package and expire.
    let worker_pool = db::connect_as(&app.db_url, 4, Role::Worker).await?;
    let sweep =
        || rythmiq_worker::maintenance::batch_sweep::sweep(&worker_pool, &app.storage, &settings);
    // No worker runs: the jobs are finished by hand, so nothing triggers packaging.
    let (missed, jobs) = new_batch(&app, 3).await?;
    complete_by_sql(&app, jobs[0], "same.jpg", b"first output").await?;
    complete_by_sql(&app, jobs[1], "same.jpg", b"second output").await?;
    fail_by_sql(&app, jobs[2], "SIZE_EXCEEDED").await?;
    // A batch with an unfinished job is left alone.
    let (unfinished, ujobs) = new_batch(&app, 2).await?;
    complete_by_sql(&app, ujobs[0], "u.jpg", b"u").await?;
    // A packager that died an hour ago, and one that is at work right now.
    let (abandoned, ajobs) = new_batch(&app, 1).await?;
    complete_by_sql(&app, ajobs[0], "a.jpg", b"abandoned output").await?;
    let (busy, bjobs) = new_batch(&app, 1).await?;
    complete_by_sql(&app, bjobs[0], "b.jpg", b"busy output").await?;
    sqlx::query(
        "UPDATE batches SET state = 'packaging', packaging_attempts = 1,
                packaging_started_at = CASE WHEN id = $1 THEN now() - interval '1 hour'
                                            ELSE now() END
         WHERE id = ANY($2)",
    )
    .bind(abandoned)
    .bind([abandoned, busy])
    .execute(&app.pool)
    .await?;
    // Every file failed: a failed batch, no package.
    let (hopeless, hjobs) = new_batch(&app, 2).await?;
    fail_by_sql(&app, hjobs[0], "DECODE_FAILED").await?;
    fail_by_sql(&app, hjobs[1], "SIZE_EXCEEDED").await?;

    let report = sweep().await?;
    assert_eq!(report.packaged, 3, "{report:?}");
    assert_eq!(report.retried, 0, "{report:?}");

    let b = batch(&app, missed, 0).await?;
    assert_eq!(b["status"], "completed", "{b}");
    let link = b["download_url"].as_str().context("download_url")?;
    let zip_bytes = reqwest::get(app.url(link)).await?.bytes().await?;
    let entries = unzip(&zip_bytes)?;
    assert_eq!(entries["same.jpg"], b"first output");
    assert_eq!(
        entries["same_2.jpg"], b"second output",
        "colliding names are told apart"
    );
    assert_eq!(entries.len(), 4, "{:?}", entries.keys());
    let manifest: Value = serde_json::from_slice(&entries["manifest.json"])?;
    assert_eq!(manifest["files"][2]["error_code"], "SIZE_EXCEEDED");
    assert_eq!(manifest["files"][1]["file"], "same_2.jpg");

    let a = batch(&app, abandoned, 0).await?;
    assert_eq!(a["status"], "completed", "{a}");
    let attempts: i32 = sqlx::query_scalar("SELECT packaging_attempts FROM batches WHERE id = $1")
        .bind(abandoned)
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(attempts, 2, "the dead packager's attempt counts");
    assert_eq!(
        batch(&app, busy, 0).await?["status"],
        "packaging",
        "a live claim is respected"
    );
    assert_eq!(batch(&app, unfinished, 0).await?["status"], "processing");

    let h = batch(&app, hopeless, 0).await?;
    assert_eq!(h["status"], "failed", "{h}");
    assert_eq!(h["error_code"], "ALL_FILES_FAILED");
    assert!(h["download_url"].is_null() && h["package"].is_null(), "{h}");
    let resp = app
        .client
        .get(app.url(&format!("/v1/batches/{hopeless}/output")))
        .bearer_auth(app.token())
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let report: Value = sqlx::query_scalar("SELECT report FROM batches WHERE id = $1")
        .bind(hopeless)
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(
        report["failed"], 2,
        "the manifest is kept on the batch: {report}"
    );

    // A second sweep finds nothing more to do.
    assert_eq!(
        sweep().await?,
        rythmiq_worker::maintenance::batch_sweep::SweepReport::default()
    );

    // Packages follow the output retention: gone after it, then 410.
    sqlx::query("UPDATE batches SET finished_at = now() - interval '8 days' WHERE id = $1")
        .bind(missed)
        .execute(&app.pool)
        .await?;
    let deleted = rythmiq_worker::maintenance::retention::delete_expired_packages(
        &worker_pool,
        &app.storage,
        &settings,
    )
    .await?;
    assert_eq!(deleted, 1);
    let resp = reqwest::get(app.url(link)).await?;
    let (status, code, _) = error_of(resp).await?;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::GONE, "OUTPUT_EXPIRED")
    );
    let b = batch(&app, missed, 0).await?;
    assert!(b["download_url"].is_null(), "{b}");
    let zips = app
        .storage
        .list(rythmiq_shared::storage::ObjectKind::Output)
        .await?
        .into_iter()
        .filter(|o| o.key.binding() == missed)
        .count();
    assert_eq!(zips, 0, "the package object is gone");
    Ok(())
}

#[tokio::test]
async fn row_security_confines_batches_to_their_user() -> Result<()> {
    let app = TestApp::spawn().await?;
    let (mine, _) = new_batch(&app, 1).await?;
    let other = Uuid::new_v4();
    let api = db::connect_as(&app.db_url, 2, Role::Api).await?;
    let denied = |e: &sqlx::Error| matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("42501"));

    // The owner's transaction sees the batch and its job; another user's sees neither.
    let mut tx = db::user_scope(&api, app.user).await?;
    let seen: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM batches")
        .fetch_all(&mut *tx)
        .await?;
    assert_eq!(seen, vec![mine]);
    tx.rollback().await?;
    let mut tx = db::user_scope(&api, other).await?;
    let (batches, jobs): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM batches), (SELECT count(*) FROM jobs WHERE batch_id = $1)",
    )
    .bind(mine)
    .fetch_one(&mut *tx)
    .await?;
    assert_eq!((batches, jobs), (0, 0));
    // Nor can it plant a batch under someone else's id, or change or remove one.
    let planted = sqlx::query(
        "INSERT INTO batches (id, user_id, correlation_id, request_fingerprint, file_count)
         VALUES ($1, $2, 'c', 'f', 1)",
    )
    .bind(Uuid::new_v4())
    .bind(app.user)
    .execute(&mut *tx)
    .await;
    assert!(planted.as_ref().is_err_and(denied), "{planted:?}");
    tx.rollback().await?;
    let mut tx = db::user_scope(&api, app.user).await?;
    let changed = sqlx::query("UPDATE batches SET state = 'failed'")
        .execute(&mut *tx)
        .await;
    assert!(changed.as_ref().is_err_and(denied), "{changed:?}");
    tx.rollback().await?;

    // A verified signed link opens its one batch, and a transaction naming nobody sees none.
    let mut tx = db::signed_link_scope(&api, mine).await?;
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM batches")
        .fetch_one(&mut *tx)
        .await?;
    assert_eq!(seen, 1);
    tx.rollback().await?;
    let none: i64 = sqlx::query_scalar("SELECT count(*) FROM batches")
        .fetch_one(&api)
        .await?;
    assert_eq!(none, 0);
    Ok(())
}
