//! `rythmiq submit`: the HTTP client path a user takes — upload, wait, download.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;
use uuid::Uuid;

#[derive(Args)]
pub struct SubmitArgs {
    /// The photo, signature or scan to convert.
    file: PathBuf,
    /// Portal rule slug (see GET /v1/portal-schemas).
    #[arg(long)]
    portal: String,
    /// The API's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "RYTHMIQ_SERVER")]
    server: String,
    /// Where to write the output (default: the portal's file name in the current directory).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Bearer token; without one, a token is minted from the JWT secret for `--user`.
    #[arg(long, env = "RYTHMIQ_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// User to mint a token for when no token is given (default: a fixed local dev user).
    #[arg(long)]
    user: Option<Uuid>,
    /// Where `rythmiq dev` keeps its generated secret.
    #[arg(long, default_value = ".rythmiq")]
    data_dir: PathBuf,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Idempotency key, so a retried submit never creates a second job.
    #[arg(long)]
    idempotency_key: Option<String>,
    #[command(flatten)]
    secret: rythmiq_shared::config::JwtSecretArgs,
    #[command(flatten)]
    pub log: rythmiq_shared::config::CliLogArgs,
}

/// The user `submit` acts as when neither a token nor `--user` is given.
const DEV_USER: Uuid = Uuid::from_u128(0x6f1c_2a3e_8b4d_4c5e_9f60_7a8b_9c0d_1e2f);

pub async fn run(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let token = match &args.token {
        Some(t) => t.clone(),
        None => {
            let secret = super::jwt_secret(&args.secret, &args.data_dir, false)?;
            rythmiq_shared::auth::mint(&secret, args.user.unwrap_or(DEV_USER), 3600)?
        }
    };
    let base = args.server.trim_end_matches('/');
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let name = args
        .file
        .file_name()
        .map_or("upload".into(), |n| n.to_string_lossy().into_owned());
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        )
        .text("portal", args.portal.clone());
    let client = reqwest::Client::new();
    let mut req = client
        .post(format!("{base}/v1/jobs"))
        .bearer_auth(&token)
        .multipart(form);
    if let Some(k) = &args.idempotency_key {
        req = req.header("Idempotency-Key", k);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("connecting to {base}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("the API refused the upload ({status}): {body}");
    }
    let job_id = body["job_id"]
        .as_str()
        .context("no job_id in the response")?
        .to_owned();
    eprintln!("job {job_id} accepted; waiting…");

    let started = Instant::now();
    let job = loop {
        let job: Value = client
            .get(format!("{base}/v1/jobs/{job_id}?wait=30"))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        match job["status"].as_str() {
            Some("completed" | "failed") => break job,
            _ if started.elapsed() > Duration::from_secs(args.timeout) => {
                bail!(
                    "job {job_id} did not finish within {}s: {job}",
                    args.timeout
                )
            }
            _ => {}
        }
    };
    if job["status"] == "failed" {
        println!("{}", serde_json::to_string_pretty(&job)?);
        eprintln!(
            "job {job_id} failed: {} {}",
            job["error_code"], job["error_message"]
        );
        return Ok(ExitCode::from(2));
    }
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from(
            job["output"]["filename"]
                .as_str()
                .unwrap_or("rythmiq-output"),
        )
    });
    let file = client
        .get(format!("{base}/v1/jobs/{job_id}/output"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    std::fs::write(&out, &file).with_context(|| format!("writing {}", out.display()))?;
    println!("{}", serde_json::to_string_pretty(&job)?);
    eprintln!("wrote {} ({} bytes)", out.display(), file.len());
    Ok(ExitCode::SUCCESS)
}
