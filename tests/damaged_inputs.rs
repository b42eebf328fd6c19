//! Damaged and hostile uploads end to end: every file of the corpus
//! (`pipeline/tests/support/hostile.rs`: truncated JPEG, PNG, WebP and HEIC, bit errors, a lying
//! extension, zero bytes, polyglots, 16-bit and float TIFF, multi-page TIFF, CMYK progressive
//! JPEG, animated GIF and WebP) through `rythmiq process --json` and through the HTTP API with a
//! real worker, each with the outcome a user must get: a completed job with the expected
//! warning, or a failed one with the expected code and message.

mod common;

#[path = "../pipeline/tests/support/hostile.rs"]
mod hostile;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use common::{TestApp, error_of, fast_worker_settings, shared_tempdir, write_file};
use hostile::{Case, Expect, corpus};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rythmiq");
// A photo rule that does not frame by the face: the hostile files are not portraits.
const PORTAL: &str = "ibps-2026-photo";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline/tests/fixtures")
}

/// Whether `warnings` (a JSON array of strings) contains `fragment`.
fn warned(warnings: &Value, fragment: &str) -> bool {
    warnings
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|w| w.contains(fragment))
}

/// What is wrong with a job's (or `process`'s) outcome for `case`, if anything. `status` is
/// `completed`/`failed` (API) or `ok`/`error` (process).
fn mismatch(
    case: &Case,
    status: &str,
    code: &Value,
    message: &Value,
    warnings: &Value,
) -> Option<String> {
    let completed = matches!(status, "completed" | "ok");
    let right = match &case.expect {
        Expect::Completed { warning } => completed && warning.is_none_or(|w| warned(warnings, w)),
        Expect::Failed {
            code: want,
            message: fragment,
        } => !completed && code == want && message.as_str().is_some_and(|m| m.contains(fragment)),
        Expect::Empty => !completed && code == "PAYLOAD_INVALID",
    };
    (!right).then(|| {
        format!(
            "{}: expected {:?}, got {status} {code} {message} warnings {warnings}",
            case.name, case.expect
        )
    })
}

#[test]
fn every_hostile_file_gets_its_outcome_from_rythmiq_process() -> Result<()> {
    let dir = shared_tempdir()?;
    let mut wrong = Vec::new();
    for case in corpus(&fixtures()) {
        let input = write_file(dir.path(), &case.filename, &case.bytes)?;
        let out = dir.path().join(format!("{}.out.jpg", case.name));
        let o = Command::new(BIN)
            .arg("process")
            .arg(&input)
            .args(["--portal", PORTAL, "--json", "--out"])
            .arg(&out)
            .output()?;
        let v: Value = serde_json::from_slice(&o.stdout).with_context(|| {
            format!(
                "{}: not JSON: {}",
                case.name,
                String::from_utf8_lossy(&o.stderr)
            )
        })?;
        let status = v["status"].as_str().unwrap_or_default();
        if let Some(m) = mismatch(
            &case,
            status,
            &v["error_code"],
            &v["message"],
            &v["warnings"],
        ) {
            wrong.push(m);
        }
        // The exit status and the output file agree with the report.
        if o.status.success() != (status == "ok") || out.exists() != (status == "ok") {
            wrong.push(format!("{}: exit {} with {v}", case.name, o.status));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

#[tokio::test]
async fn every_hostile_file_gets_its_outcome_through_the_api() -> Result<()> {
    let app = TestApp::spawn().await?;
    let (stop, _worker) = app.start_worker(fast_worker_settings());
    let mut wrong = Vec::new();
    let mut submitted = Vec::new();
    for case in corpus(&fixtures()) {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(case.bytes.clone())
                    .file_name(case.filename.clone()),
            )
            .text("portal", PORTAL);
        let resp = app
            .client
            .post(app.url("/v1/jobs"))
            .bearer_auth(app.token())
            .multipart(form)
            .send()
            .await?;
        if case.expect == Expect::Empty {
            // Refused at the door: no job, no credit.
            let (status, code, _) = error_of(resp).await?;
            if (status.as_u16(), code.as_str()) != (400, "PAYLOAD_MISSING") {
                wrong.push(format!("{}: upload got {status} {code}", case.name));
            }
            continue;
        }
        let status = resp.status();
        let body: Value = resp.json().await?;
        if status != reqwest::StatusCode::ACCEPTED {
            wrong.push(format!("{}: upload got {status} {body}", case.name));
            continue;
        }
        let id: uuid::Uuid = body["job_id"].as_str().context("job_id")?.parse()?;
        submitted.push((case, id));
    }
    for (case, id) in submitted {
        let job = app.wait_terminal(id, 120).await?;
        let status = job["status"].as_str().unwrap_or_default();
        if let Some(m) = mismatch(
            &case,
            status,
            &job["error_code"],
            &job["error_message"],
            &job["warnings"],
        ) {
            wrong.push(m);
        }
        // A bad upload is final: not retried.
        if status == "failed" && job["attempts"] != 1 {
            wrong.push(format!("{}: retried: {job}", case.name));
        }
    }
    stop.cancel();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}
