//! The API keeps the promises of its README and `/openapi.json`: every rejection, axum's own
//! included, is the `{"error": {"code", "message"}}` envelope with a documented code; the
//! document names the bearer scheme and every error a route sends; and schemathesis, driven by
//! the document against the real server, finds nothing.

mod common;

use std::process::Command;

use anyhow::{Context, Result};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

/// Status, code and the `Allow` header of a response that must carry the envelope.
async fn envelope(resp: reqwest::Response) -> Result<(StatusCode, String)> {
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (status, code, message) = error_of(resp).await?;
    assert_eq!(content_type, "application/json", "{status} {code}");
    assert!(!message.is_empty(), "{status} {code} has no message");
    Ok((status, code))
}

#[tokio::test]
async fn every_rejection_is_the_json_envelope() -> Result<()> {
    let app = TestApp::spawn().await?;
    let token = app.token();
    let get = |path: &str| app.client.get(app.url(path)).bearer_auth(&token).send();
    let exp = chrono::Utc::now().timestamp() + 3600;
    // Malformed path and query parameters: the cases a fuzzer found answered in plain text.
    for path in [
        "/v1/jobs/0".to_owned(),
        "/v1/jobs/not-a-uuid/output".to_owned(),
        "/v1/batches/%F1%B8%88%AFf/output".to_owned(),
        "/v1/batches/0".to_owned(),
        format!("/v1/download/null,null?exp={exp}&sig=x"),
        format!("/v1/download/batches/12?exp={exp}&sig=x"),
        format!("/v1/jobs/{}?wait=-1", Uuid::new_v4()),
        format!("/v1/batches/{}?wait=soon", Uuid::new_v4()),
    ] {
        let got = envelope(get(&path).await?).await?;
        assert_eq!(
            got,
            (StatusCode::BAD_REQUEST, "INVALID_REQUEST".to_owned()),
            "{path}"
        );
    }
    // A well-formed id of nobody's job is still 404, and a link without its signature 403.
    let got = envelope(get(&format!("/v1/jobs/{}", Uuid::new_v4())).await?).await?;
    assert_eq!(got, (StatusCode::NOT_FOUND, "NOT_FOUND".to_owned()));
    let got = envelope(get(&format!("/v1/download/{}", Uuid::new_v4())).await?).await?;
    assert_eq!(got, (StatusCode::FORBIDDEN, "LINK_INVALID".to_owned()));

    // No token comes before a malformed id: a stranger learns nothing about the path.
    let anon = app.client.get(app.url("/v1/jobs/0")).send().await?;
    assert_eq!(
        envelope(anon).await?,
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".to_owned())
    );

    // Not multipart at all.
    let resp = app
        .client
        .post(app.url("/v1/jobs"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await?;
    assert_eq!(
        envelope(resp).await?,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "PAYLOAD_INVALID".to_owned()
        )
    );

    // An unknown route, and a known one with a method it does not answer.
    let got = envelope(get("/v2/jobs").await?).await?;
    assert_eq!(got, (StatusCode::NOT_FOUND, "NOT_FOUND".to_owned()));
    for (method, path) in [
        (Method::DELETE, "/v1/jobs"),
        (Method::PUT, "/v1/jobs/0"),
        (Method::POST, "/v1/portal-schemas"),
        (Method::PATCH, "/healthz"),
    ] {
        let resp = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth(&token)
            .send()
            .await?;
        let allow = resp
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(!allow.is_empty(), "{method} {path}: no Allow header");
        let got = envelope(resp).await?;
        assert_eq!(
            got,
            (
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED".to_owned()
            ),
            "{method} {path}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_openapi_document_names_its_security_and_errors() -> Result<()> {
    let app = TestApp::spawn().await?;
    let spec: Value = app.get_json("/openapi.json").await?;
    let scheme = &spec["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");

    let paths = spec["paths"].as_object().context("no paths")?;
    let mut secured = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().into_iter().flatten() {
            let responses = &op["responses"];
            let needs_token = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            // The signed links, the portal list, guest sign-in and the probes are public;
            // everything else under /v1 needs the token.
            let public = path.starts_with("/v1/download/")
                || path == "/v1/portal-schemas"
                || path == "/v1/sessions"
                || !path.starts_with("/v1/");
            assert_eq!(needs_token, !public, "{method} {path}: security");
            if needs_token {
                secured += 1;
                assert!(
                    responses["401"].is_object(),
                    "{method} {path}: 401 undocumented"
                );
            }
            for (status, response) in responses.as_object().into_iter().flatten() {
                let is_error = status.starts_with('4') || status.starts_with('5');
                if !is_error || path == "/readyz" {
                    continue;
                }
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
            if path.contains("{id}") {
                assert!(responses["400"].is_object(), "{method} {path}: 400");
            }
        }
    }
    assert!(secured >= 6, "only {secured} operations need a token");
    let limited = &paths["/v1/jobs"]["post"]["responses"]["429"];
    assert!(limited["headers"]["Retry-After"].is_object(), "{limited}");
    Ok(())
}

/// schemathesis (`scripts/setup.sh --test` installs the pinned version) runs every check it has
/// against the real server with a valid token: a fixed seed and a bounded number of examples
/// per operation keep it reproducible and within a couple of minutes on two cores.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_broken_promise() -> Result<()> {
    let app = TestApp::spawn().await?;
    let (stop, _worker) = app.start_worker(fast_worker_settings());
    let schema = app.url("/openapi.json");
    let token = app.token();
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    let out = tokio::task::spawn_blocking(move || {
        // As a module of the Python pip installed it for, wherever its scripts went.
        Command::new("python3")
            .args(["-m", "schemathesis.cli"])
            .arg("--config-file")
            .arg(&config)
            .args(["run", &schema])
            .args(["--checks", "all"])
            // A job's or batch's output exists only once it has completed: `GET …/output` of
            // one that is pending or failed is 404 NOT_FOUND ("no output or package (yet)", the
            // README's error table), which ensure_resource_availability reads as a resource
            // lost right after its POST. The only other path under a created resource,
            // `GET /v1/{jobs,batches}/{id}`, is checked by tests/api.rs and tests/batches.rs.
            .args(["--exclude-checks", "ensure_resource_availability"])
            .args(["--seed", "20260501"])
            .args(["--max-examples", "25"])
            .args(["--workers", "2"])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args(["--output-truncate", "false"])
            .env("NO_COLOR", "1")
            // It keeps a cache in `.schemathesis/` of its working directory: not in the repo.
            .current_dir(std::env::temp_dir())
            .output()
    })
    .await?
    .context("running schemathesis (scripts/setup.sh --test installs it)")?;
    stop.cancel();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
