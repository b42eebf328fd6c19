//! Logs and traces, end to end: the real `api` and `worker` binaries never write planted PII to
//! any log line, and one trace spans the HTTP request and every pipeline stage (the SDK's
//! in-memory exporter), with a retry starting a new trace linked to the enqueue.

mod common;

#[path = "../ocr/tests/support/render.rs"]
mod render;

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::{TestApp, eventually, fast_worker_settings, photo_jpeg, signal, slow_png, token_for};
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use rythmiq_shared::telemetry::{self, LogFormat, Telemetry, user_id_hash};
use serde_json::Value;
use uuid::Uuid;

/// The caller's trace: each test its own, as they run side by side in one exporter.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const RETRY_TRACE_ID: &str = "5cf92f3577b34da6a3ce929d0e0e4737";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

/// Log lines this test binary's own (in-process) API and worker write.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn lines(&self) -> Vec<Value> {
        let text = self
            .0
            .lock()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

struct Installed {
    exporter: InMemorySpanExporter,
    logs: Capture,
    telemetry: Telemetry,
}

/// One subscriber per process: installed once, shared by the tests of this binary.
fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let logs = Capture::default();
        let sink = logs.clone();
        let telemetry =
            telemetry::init_with("test", LogFormat::Json, move || sink.clone(), provider);
        Installed {
            exporter,
            logs,
            telemetry,
        }
    })
}

fn spans() -> Vec<SpanData> {
    let i = installed();
    i.telemetry.flush();
    i.exporter.get_finished_spans().unwrap_or_default()
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

async fn submit_traced(
    app: &TestApp,
    file: Vec<u8>,
    portal: &str,
    correlation: &str,
    trace_id: &str,
) -> Result<Uuid> {
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(file).file_name("photo.jpg"),
        )
        .text("portal", portal.to_owned());
    let resp = app
        .client
        .post(app.url("/v1/jobs"))
        .bearer_auth(app.token())
        .header("traceparent", format!("00-{trace_id}-{PARENT_SPAN}-01"))
        .header("x-correlation-id", correlation)
        .multipart(form)
        .send()
        .await?;
    if resp.status() != reqwest::StatusCode::ACCEPTED {
        bail!("submit: {}", resp.status());
    }
    let echoed = resp
        .headers()
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .map(ToOwned::to_owned);
    if echoed.as_deref() != Some(correlation) {
        bail!("correlation id not echoed: {echoed:?}");
    }
    let body: Value = resp.json().await?;
    Ok(body["job_id"].as_str().context("job_id")?.parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_spans_the_request_and_every_stage() -> Result<()> {
    installed();
    let app = TestApp::spawn().await?;
    let (stop, worker) = app.start_worker(fast_worker_settings());
    let correlation = format!("trace-test-{}", Uuid::new_v4());
    let job = submit_traced(
        &app,
        photo_jpeg(1200, 1600, 5),
        "neet-ug-2026-photo",
        &correlation,
        TRACE_ID,
    )
    .await?;
    let done = app.wait_terminal(job, 60).await?;
    assert_eq!(done["status"], "completed", "{done}");
    stop.cancel();
    let _ = worker.await;

    let trace_id = TraceId::from_hex(TRACE_ID)?;
    let mut ours: Vec<SpanData> = Vec::new();
    // The job span ends after the outcome is recorded, a moment after the API reports it.
    eventually(10, || {
        ours = spans()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace_id)
            .collect();
        let done = ours.iter().any(|s| s.name == "job");
        async move { Ok(done) }
    })
    .await?;
    let names: HashSet<&str> = ours.iter().map(|s| s.name.as_ref()).collect();
    for expected in [
        "POST /v1/jobs",
        "job",
        "fetch",
        "decode",
        "quality",
        "pre_ocr",
        "schema",
        "upload",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
    let by_name = |n: &str| ours.iter().find(|s| s.name == n);
    let request = by_name("POST /v1/jobs").context("request span")?;
    let job_span = by_name("job").context("job span")?;
    // The request continues the caller's span; the job continues the request; stages nest in
    // the job.
    assert_eq!(request.parent_span_id, SpanId::from_hex(PARENT_SPAN)?);
    assert_eq!(job_span.parent_span_id, request.span_context.span_id());
    for stage in ["fetch", "decode", "quality", "pre_ocr", "schema", "upload"] {
        let s = by_name(stage).context("stage")?;
        assert_eq!(s.parent_span_id, job_span.span_context.span_id(), "{stage}");
    }
    assert_eq!(attr(job_span, "correlation_id"), Some(correlation.clone()));
    assert_eq!(attr(job_span, "job_id"), Some(job.to_string()));

    // Every line about this job carries its ids; the stage lines name their stage.
    let lines: Vec<Value> = installed()
        .logs
        .lines()
        .into_iter()
        .filter(|l| l["job_id"] == job.to_string())
        .collect();
    let stage_lines: HashSet<String> = lines
        .iter()
        .filter(|l| l["message"] == "stage completed")
        .filter_map(|l| l["stage"].as_str().map(ToOwned::to_owned))
        .collect();
    assert!(
        stage_lines.len() >= 5,
        "stage lines: {stage_lines:?} in {lines:?}"
    );
    for l in &lines {
        assert_eq!(l["correlation_id"], correlation.as_str(), "{l}");
        assert_eq!(l["trace_id"], TRACE_ID, "{l}");
        assert_eq!(
            l["user_id_hash"],
            user_id_hash(&app.user.to_string()).as_str(),
            "{l}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_starts_a_new_trace_linked_to_the_enqueue() -> Result<()> {
    installed();
    let app = TestApp::spawn().await?;
    let mut settings = fast_worker_settings();
    // Every attempt runs out of time: three attempts, then failed.
    settings.job_timeout = Duration::from_millis(1);
    let (stop, worker) = app.start_worker(settings);
    let correlation = format!("retry-test-{}", Uuid::new_v4());
    let job = submit_traced(
        &app,
        slow_png(3000, 3000),
        "ibps-2026-photo",
        &correlation,
        RETRY_TRACE_ID,
    )
    .await?;
    let done = app.wait_terminal(job, 60).await?;
    assert_eq!(done["status"], "failed", "{done}");
    stop.cancel();
    let _ = worker.await;

    let trace_id = TraceId::from_hex(RETRY_TRACE_ID)?;
    let mut attempts: Vec<SpanData> = Vec::new();
    eventually(10, || {
        attempts = spans()
            .into_iter()
            .filter(|s| s.name == "job" && attr(s, "job_id") == Some(job.to_string()))
            .collect();
        let n = attempts.len();
        async move { Ok(n >= 3) }
    })
    .await?;
    attempts.sort_by_key(|s| attr(s, "attempt"));
    let first = &attempts[0];
    assert_eq!(attr(first, "attempt").as_deref(), Some("1"));
    assert_eq!(first.span_context.trace_id(), trace_id);
    let request_span = first.parent_span_id;
    for retry in &attempts[1..] {
        assert_ne!(
            retry.span_context.trace_id(),
            trace_id,
            "a retry is a trace of its own"
        );
        let linked: Vec<_> = retry.links.iter().map(|l| l.span_context.clone()).collect();
        assert!(
            linked
                .iter()
                .any(|c| c.trace_id() == trace_id && c.span_id() == request_span),
            "retry links to the enqueue: {linked:?}"
        );
    }

    // Each failed attempt left an error_events row carrying the correlation id.
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT error_code, correlation_id FROM error_events WHERE job_id = $1 ORDER BY attempt",
    )
    .bind(job)
    .fetch_all(&app.pool)
    .await?;
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (_, c) in &rows {
        assert_eq!(c.as_deref(), Some(correlation.as_str()));
    }
    Ok(())
}

/// Text that must never be written to a log: it stands for a student's name, e-mail, address,
/// document number and file name, planted in every place a request can carry it.
const PLANTED: &[&str] = &[
    "Raghunathan",
    "7730 9912",
    "priya.r@example.in",
    "203.0.113.199",
    "4821-7730-9912",
    "PII-CONTENT-7731",
];

/// A scan showing a name and document number (for OCR to read), whose bytes also carry
/// planted text in a JPEG comment segment.
fn jpeg_with_comment(comment: &str) -> Vec<u8> {
    let font = render::font("DejaVuSans-Bold.ttf");
    let lines = ["PRIYA RAGHUNATHAN".to_owned(), "4821 7730 9912".to_owned()];
    let page = render::render_lines(&font, 90.0, &lines, 1200, 900);
    let mut jpeg = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90);
    if page.write_with_encoder(enc).is_err() {
        return photo_jpeg(900, 1200, 9);
    }
    let mut out = jpeg[..2].to_vec();
    let len = u16::try_from(comment.len() + 2).unwrap_or(u16::MAX);
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(comment.as_bytes());
    out.extend_from_slice(&jpeg[2..]);
    out
}

async fn api_address(log: &std::path::Path) -> Result<String> {
    common::logged_address(log, "api listening").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_planted_pii_reaches_any_log_line_of_the_api_or_worker() -> Result<()> {
    let app = TestApp::spawn().await?;
    let logs = common::shared_tempdir()?;
    let (api_log, worker_log) = (logs.path().join("api.log"), logs.path().join("worker.log"));
    // DEBUG everywhere: the blocklist must hold for every line, not just the default level.
    let env = [("RUST_LOG", "debug"), ("RYTHMIQ_LOG_FORMAT", "json")];
    let mut api = app.spawn_logged("api", &env, &api_log)?;
    let mut worker = app.spawn_logged("worker", &env, &worker_log)?;
    let base = format!("http://{}", api_address(&api_log).await?);

    let user = Uuid::new_v4();
    let token = token_for(user);
    let client = reqwest::Client::new();
    let submit = |file: Vec<u8>, name: &'static str| {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(file).file_name(name),
            )
            .text("portal", "ibps-2026-photo")
            .text("email", "priya.r@example.in")
            .text("aadhaar", "4821-7730-9912");
        client
            .post(format!("{base}/v1/jobs"))
            .bearer_auth(&token)
            .header("x-forwarded-for", "203.0.113.199")
            .header("x-real-ip", "203.0.113.199")
            .multipart(form)
            .send()
    };
    let good = submit(
        jpeg_with_comment("PII-CONTENT-7731 Priya_Raghunathan"),
        "Priya_Raghunathan_Aadhaar_4821-7730-9912.jpg",
    )
    .await?;
    assert_eq!(good.status(), reqwest::StatusCode::ACCEPTED);
    let good: Uuid = good.json::<Value>().await?["job_id"]
        .as_str()
        .context("job_id")?
        .parse()?;
    // A file that sniffs as JPEG but cannot be decoded: the failure path logs too.
    let mut broken = jpeg_with_comment("PII-CONTENT-7731");
    broken.truncate(600);
    let bad = submit(broken, "Priya_Raghunathan_marksheet.jpg").await?;
    assert_eq!(bad.status(), reqwest::StatusCode::ACCEPTED);
    let bad: Uuid = bad.json::<Value>().await?["job_id"]
        .as_str()
        .context("job_id")?
        .parse()?;
    // Error responses: a malformed id and a missing token.
    let _ = client
        .get(format!("{base}/v1/jobs/priya.r@example.in"))
        .bearer_auth(&token)
        .send()
        .await?;
    let _ = client
        .get(format!("{base}/v1/jobs/{good}"))
        .header("x-forwarded-for", "203.0.113.199")
        .send()
        .await?;

    for id in [good, bad] {
        eventually(60, || {
            let pool = app.pool.clone();
            async move {
                let s: String = sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await?;
                Ok(s == "completed" || s == "failed")
            }
        })
        .await?;
    }
    assert_eq!(app.job_state(good).await?, "completed");
    // OCR did read the planted text, so the worker had it in hand.
    let chars: Option<i64> =
        sqlx::query_scalar("SELECT (ocr->>'chars')::bigint FROM jobs WHERE id = $1")
            .bind(good)
            .fetch_one(&app.pool)
            .await?;
    assert!(
        chars.is_some_and(|c| c >= 10),
        "OCR read {chars:?} characters"
    );
    assert_eq!(app.job_state(bad).await?, "failed");
    signal(&api, "TERM")?;
    signal(&worker, "TERM")?;
    let _ = api.wait();
    let _ = worker.wait();

    let raw_user = user.to_string();
    let simple_user = user.simple().to_string();
    let mut seen = 0;
    let mut worker_job_lines = 0;
    for (service, log) in [("api", &api_log), ("worker", &worker_log)] {
        let text = std::fs::read_to_string(log)?;
        for line in text.lines() {
            seen += 1;
            let lower = line.to_lowercase();
            for pii in PLANTED
                .iter()
                .copied()
                .chain([raw_user.as_str(), simple_user.as_str()])
            {
                assert!(
                    !lower.contains(&pii.to_lowercase()),
                    "{service} wrote {pii}: {line}"
                );
            }
            let v: Value = serde_json::from_str(line)
                .with_context(|| format!("{service} wrote a non-JSON line: {line}"))?;
            for field in ["timestamp", "level", "service", "message"] {
                assert!(v.get(field).is_some(), "{field} missing: {line}");
            }
            if service == "worker" && v["job_id"] == good.to_string() {
                worker_job_lines += 1;
                assert_eq!(
                    v["user_id_hash"],
                    user_id_hash(&raw_user).as_str(),
                    "{line}"
                );
                assert!(v["correlation_id"].is_string(), "{line}");
            }
        }
    }
    // The test means something only if the processes did log the jobs, at length.
    assert!(seen > 30, "only {seen} log lines");
    assert!(
        worker_job_lines >= 6,
        "{worker_job_lines} worker lines about the job"
    );
    Ok(())
}
