//! `rythmiq-burst`: the capacity plan's burst. Every user uploads their documents at the same
//! moment through the HTTP API, then waits for each with `?wait=`; the report splits each job's
//! time into waiting (queued → started) and processing, and sets the CPU the `cpu_metrics` rows
//! charge beside the CPU the serving process really spent. `load/burst.sh` prepares the inputs
//! and, without `--host`, a fresh `rythmiq dev` to run against.

mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::future::join_all;
use serde_json::Value;
use uuid::Uuid;

/// The burst, against a running API.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The API's base address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    host: String,
    /// The API's HS256 secret: each simulated user gets a token of their own.
    #[arg(long, env = "RYTHMIQ_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Users uploading at once.
    #[arg(long, default_value_t = 50)]
    users: usize,
    /// Documents each user uploads.
    #[arg(long, default_value_t = 5)]
    docs: usize,
    /// Share of heavy inputs (document scans and poor photos), in percent; the rest are
    /// photos and signatures.
    #[arg(long, default_value_t = 30)]
    heavy_percent: usize,
    /// Photos (JPEG/PNG) for the photo and signature rules.
    #[arg(long)]
    photos: PathBuf,
    /// Scanned document pages for the document rule.
    #[arg(long)]
    documents: PathBuf,
    /// Poor photos (dark, blurred) that take the standard path.
    #[arg(long)]
    poor: PathBuf,
    /// The database, to read the burst's `cpu_metrics` rows (optional).
    #[arg(long)]
    database_url: Option<String>,
    /// The serving process (API and workers), whose CPU is measured over the burst (optional).
    #[arg(long)]
    pid: Option<u32>,
    /// Count the `--pid` process's CPU from its start (it was started for this burst), so its
    /// start-up, which the rows charge to the first job, is on both sides.
    #[arg(long, requires = "pid")]
    since_start: bool,
    /// Jobs the fleet runs at once (worker slots), for the sizing line.
    #[arg(long, default_value_t = 2)]
    slots: usize,
    /// The serving machine, as the report should name it (CPU model, cores, matrix-product
    /// kernel); `load/burst.sh` fills it in for the `rythmiq dev` it starts.
    #[arg(long)]
    machine: Option<String>,
    /// Where to write `burst.json` and `burst.html`.
    #[arg(long, default_value = "target/burst")]
    out: PathBuf,
    /// Give up on a job after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

/// What a job is made of: its input class, file and portal rule.
#[derive(Debug, Clone)]
pub struct Planned {
    pub class: &'static str,
    pub file: PathBuf,
    pub portal: &'static str,
}

/// One job as the client saw it, with the times the API reported.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub class: &'static str,
    pub portal: &'static str,
    pub job_id: Option<Uuid>,
    pub status: String,
    pub error_code: Option<String>,
    /// Seconds after the burst started.
    pub submitted_at: f64,
    pub finished_at: f64,
    pub waiting_seconds: Option<f64>,
    pub processing_seconds: Option<f64>,
    pub end_to_end_seconds: f64,
}

/// Photo rules without a `[face]` table: the corpus holds photos without a face (a cup, a cat, a
/// rocket), which the rules that frame by the face (passport, NEET, JEE) refuse with
/// `FACE_NOT_FOUND`.
const PHOTO_RULES: [&str; 2] = ["ibps-2026-photo", "college-generic-photo"];
const SIGNATURE_RULES: [&str; 3] = [
    "neet-ug-2026-signature",
    "jee-main-2026-signature",
    "ibps-2026-signature",
];

fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{} holds no input file", dir.display());
    }
    Ok(files)
}

/// The burst's jobs in a fixed order: job `i` is heavy when it falls in the heavy share of every
/// hundred (spread evenly), and light jobs alternate between photo and signature rules.
fn plan(args: &Args) -> Result<Vec<Planned>> {
    let (photos, documents, poor) = (
        files_in(&args.photos)?,
        files_in(&args.documents)?,
        files_in(&args.poor)?,
    );
    let total = args.users * args.docs;
    let mut jobs = Vec::with_capacity(total);
    let (mut light, mut heavy) = (0usize, 0usize);
    for i in 0..total {
        // Bresenham-style spreading: heavy while the heavy count is behind its share.
        let is_heavy = (heavy + 1) * 100 <= (i + 1) * args.heavy_percent;
        if is_heavy {
            let job = if heavy % 2 == 0 {
                Planned {
                    class: "document",
                    file: documents[(heavy / 2) % documents.len()].clone(),
                    portal: "aadhaar-update-document",
                }
            } else {
                Planned {
                    class: "poor-photo",
                    file: poor[(heavy / 2) % poor.len()].clone(),
                    portal: PHOTO_RULES[(heavy / 2) % PHOTO_RULES.len()],
                }
            };
            heavy += 1;
            jobs.push(job);
        } else {
            let rules = if light % 2 == 0 {
                (&PHOTO_RULES[..], "photo")
            } else {
                (&SIGNATURE_RULES[..], "signature")
            };
            jobs.push(Planned {
                class: rules.1,
                file: photos[(light / 2) % photos.len()].clone(),
                portal: rules.0[(light / 2) % rules.0.len()],
            });
            light += 1;
        }
    }
    Ok(jobs)
}

fn seconds(v: &Value, from: &str, to: &str) -> Option<f64> {
    let at = |k: &str| {
        v[k].as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    };
    let d = at(to)? - at(from)?;
    Some(d.num_microseconds()? as f64 / 1e6)
}

/// Uploads one file as `token`'s user and waits for the job to end.
async fn run_one(
    client: &reqwest::Client,
    args: &Args,
    token: &str,
    job: &Planned,
    bytes: Vec<u8>,
    start: Instant,
) -> Outcome {
    let submitted_at = start.elapsed().as_secs_f64();
    let name = job
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "upload".to_owned());
    let result = async {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name),
            )
            .text("portal", job.portal);
        let resp = client
            .post(format!("{}/v1/jobs", args.host))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if !status.is_success() {
            return Ok::<_, anyhow::Error>((None, body));
        }
        let id: Uuid = body["job_id"].as_str().context("job_id")?.parse()?;
        let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
        loop {
            let v: Value = client
                .get(format!("{}/v1/jobs/{id}?wait=60", args.host))
                .bearer_auth(token)
                .send()
                .await?
                .json()
                .await?;
            if matches!(v["status"].as_str(), Some("completed" | "failed")) {
                return Ok((Some(id), v));
            }
            if Instant::now() > deadline {
                bail!("job {id} not finished after {} s", args.timeout_secs);
            }
        }
    }
    .await;
    let finished_at = start.elapsed().as_secs_f64();
    let (job_id, v) = match result {
        Ok(r) => r,
        Err(e) => (
            None,
            serde_json::json!({"status": "client-error", "error": {"message": e.to_string()}}),
        ),
    };
    Outcome {
        class: job.class,
        portal: job.portal,
        job_id,
        status: v["status"].as_str().unwrap_or("rejected").to_owned(),
        error_code: v["error_code"]
            .as_str()
            .or_else(|| v["error"]["code"].as_str())
            .map(str::to_owned),
        submitted_at,
        finished_at,
        waiting_seconds: seconds(&v, "created_at", "started_at"),
        processing_seconds: seconds(&v, "started_at", "finished_at"),
        end_to_end_seconds: seconds(&v, "created_at", "finished_at")
            .unwrap_or(finished_at - submitted_at),
    }
}

/// CPU seconds process `pid` has spent so far (all threads, user and system), from `/proc`.
fn process_cpu_seconds(pid: u32) -> Result<f64> {
    let cpu = rythmiq_shared::cpu::of_process(pid)
        .with_context(|| format!("reading the CPU time of process {pid}"))?;
    Ok(cpu.as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let jobs = plan(&args)?;
    let tokens: Vec<String> = (0..args.users)
        .map(|_| rythmiq_shared::auth::mint(&args.jwt_secret, Uuid::new_v4(), 86_400))
        .collect::<Result<_, _>>()?;
    let inputs: Vec<Vec<u8>> = jobs
        .iter()
        .map(|j| std::fs::read(&j.file).with_context(|| format!("reading {}", j.file.display())))
        .collect::<Result<_>>()?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.users * args.docs)
        .timeout(Duration::from_secs(120))
        .build()?;

    eprintln!(
        "burst: {} users x {} documents ({} % heavy) against {}",
        args.users, args.docs, args.heavy_percent, args.host
    );
    let cpu_before = match args.pid {
        Some(_) if args.since_start => Some(0.0),
        Some(pid) => Some(process_cpu_seconds(pid)?),
        None => None,
    };
    let start = Instant::now();
    let runs = jobs
        .iter()
        .zip(inputs)
        .enumerate()
        .map(|(i, (job, bytes))| {
            let token = &tokens[i % tokens.len()];
            run_one(&client, &args, token, job, bytes, start)
        });
    let outcomes = join_all(runs).await;
    let wall = start.elapsed().as_secs_f64();
    let process_cpu = match (args.pid, cpu_before) {
        (Some(pid), Some(before)) => Some(process_cpu_seconds(pid)? - before),
        _ => None,
    };

    let rows = match &args.database_url {
        Some(url) => {
            let ids: Vec<Uuid> = outcomes.iter().filter_map(|o| o.job_id).collect();
            Some(report::cpu_rows(url, &ids).await?)
        }
        None => None,
    };
    let report = report::Report::new(&args_summary(&args), outcomes, wall, process_cpu, rows);
    std::fs::create_dir_all(&args.out)?;
    let json = args.out.join("burst.json");
    std::fs::write(&json, serde_json::to_vec_pretty(&report)?)?;
    let html = args.out.join("burst.html");
    std::fs::write(&html, report.html())?;
    println!("{}", report.text());
    println!("written: {} and {}", json.display(), html.display());
    Ok(())
}

fn args_summary(args: &Args) -> report::Setup {
    report::Setup {
        host: args.host.clone(),
        users: args.users,
        docs: args.docs,
        heavy_percent: args.heavy_percent,
        slots: args.slots,
        machine: args.machine.clone(),
    }
}
