//! Test harness: one real Postgres cluster per test binary (started on first use and stopped
//! when the binary exits), a fresh migrated database per test, the real API on a random port,
//! real local object storage, and helpers to drive them.
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rythmiq_embedded_pg::{EmbeddedOptions, EmbeddedPostgres};
use rythmiq_shared::config::{ApiSettings, StorageSettings, WorkerSettings};
use rythmiq_shared::crypto::KeyRing;
use rythmiq_shared::storage::{Backend, Storage};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const SECRET: &str = "test-secret-of-reasonable-length";
pub const TEMPLATE_DB: &str = "rythmiq_template";

/// The shared cluster: its URL base and the watchdog that stops it when this process exits.
struct Cluster {
    port: u16,
    _dir: tempfile::TempDir,
    _watchdog: Mutex<(Child, ChildStdin)>,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// A temporary directory the unprivileged `postgres` account can traverse when we run as root.
/// The master key of every test's storage, also handed to worker processes.
pub const MASTER_KEY: &str = "test:KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

/// The key ring for [`MASTER_KEY`].
pub fn test_keys() -> Result<std::sync::Arc<KeyRing>> {
    Ok(std::sync::Arc::new(KeyRing::parse(MASTER_KEY, "")?))
}

pub fn shared_tempdir() -> Result<tempfile::TempDir> {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(base)?;
    let dir = tempfile::Builder::new()
        .prefix("rythmiq-")
        .tempdir_in(base)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

/// Starts a cluster in `dir` that stops when this process exits, however it exits: a watchdog
/// shell blocks reading our pipe and, at end of file, fast-shuts the postmaster down.
pub async fn start_cluster(
    dir: &Path,
    port: Option<u16>,
) -> Result<(EmbeddedPostgres, Child, ChildStdin)> {
    let pg = EmbeddedPostgres::start(EmbeddedOptions {
        data_dir: dir.to_path_buf(),
        port,
        fast: true,
        keep_running_on_drop: true,
    })
    .await?;
    let pidfile = dir.join("postmaster.pid");
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "read _ignored; pid=$(head -n1 '{pid}' 2>/dev/null) || exit 0; kill -INT \"$pid\"; \
             while kill -0 \"$pid\" 2>/dev/null; do sleep 0.1; done; rm -rf '{dir}'",
            pid = pidfile.display(),
            dir = dir.display()
        ))
        .stdin(Stdio::piped())
        .spawn()
        .context("starting the cluster watchdog")?;
    let stdin = watchdog.stdin.take().context("watchdog stdin")?;
    Ok((pg, watchdog, stdin))
}

async fn cluster_port() -> Result<u16> {
    // Tests race here; `get_or_init` lets exactly one start the cluster while the rest wait.
    // It starts on a plain thread with its own runtime, as each test runs its own runtime.
    let cluster = CLUSTER.get_or_init(|| {
        std::thread::spawn(start_shared_cluster)
            .join()
            .map_err(|_| "cluster start panicked".to_owned())
            .and_then(|r| r.map_err(|e| format!("{e:#}")))
    });
    match cluster {
        Ok(c) => Ok(c.port),
        Err(e) => bail!("test cluster unavailable: {e}"),
    }
}

fn start_shared_cluster() -> Result<Cluster> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dir = shared_tempdir()?;
        let (pg, child, stdin) = start_cluster(&dir.path().join("pg"), None).await?;
        pg.create_database(TEMPLATE_DB).await?;
        let pool = PgPool::connect(&pg.url_for(TEMPLATE_DB)).await?;
        rythmiq_shared::db::migrate(&pool).await?;
        pool.close().await;
        Ok(Cluster {
            port: pg.port(),
            _dir: dir,
            _watchdog: Mutex::new((child, stdin)),
        })
    })
}

fn url(port: u16, db: &str) -> String {
    format!("postgres://rythmiq@127.0.0.1:{port}/{db}")
}

/// A fresh database, migrated (cloned from the migrated template).
pub async fn fresh_database() -> Result<String> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let port = cluster_port().await?;
    let name = format!("t_{}", Uuid::new_v4().simple());
    // CREATE DATABASE … TEMPLATE needs the template to have no other sessions: serialise.
    let _guard = LOCK.lock().await;
    let admin = PgPool::connect(&url(port, "postgres")).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}"
    )))
    .execute(&admin)
    .await?;
    admin.close().await;
    Ok(url(port, &name))
}

/// The OCR engine, loaded once per test binary (as a worker process loads it once) from the
/// models `scripts/fetch-models.sh` installed.
pub fn ocr_stage() -> rythmiq_pipeline::ocr::OcrStage {
    static STAGE: OnceLock<Result<rythmiq_pipeline::ocr::OcrStage, String>> = OnceLock::new();
    let stage = STAGE.get_or_init(|| {
        let dir = std::env::var_os("RYTHMIQ_MODELS_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
            PathBuf::from,
        );
        rythmiq_pipeline::ocr::OcrStage::load(dir, 1, Duration::from_secs(120))
            .map_err(|e| e.to_string())
    });
    match stage {
        Ok(s) => s.clone(),
        Err(e) => panic!("OCR models unavailable ({e}); run scripts/setup.sh --test"),
    }
}

/// Settings for fast tests: short heartbeats and backoff.
pub fn fast_worker_settings() -> WorkerSettings {
    WorkerSettings {
        concurrency: 2,
        heartbeat: Duration::from_millis(500),
        orphan_timeout: Duration::from_secs(3),
        poll_interval: Duration::from_millis(500),
        retry_base: Duration::from_secs(1),
        retry_max: Duration::from_secs(4),
        shutdown_timeout: Duration::from_secs(10),
        job_timeout: Duration::from_secs(120),
        maintenance_interval: Duration::from_secs(2),
        retention_days: 90,
        raw_retention: Duration::from_secs(86_400),
        output_retention: Duration::from_secs(7 * 86_400),
        task_retention: Duration::from_secs(86_400),
        ocr_timeout: Duration::from_secs(120),
        ocr_threads: 1,
        hostname: None,
    }
}

/// The real application on a random port against a fresh database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db_url: String,
    pub pool: PgPool,
    pub storage: Storage,
    pub storage_dir: tempfile::TempDir,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
    pub user: Uuid,
}

impl TestApp {
    pub async fn spawn() -> Result<Self> {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut ApiSettings)) -> Result<Self> {
        let db_url = fresh_database().await?;
        let pool = rythmiq_shared::db::connect(&db_url, 10).await?;
        let storage_dir = shared_tempdir()?;
        let storage = Storage::open(
            StorageSettings {
                root: storage_dir.path().to_path_buf(),
                fetch_timeout: Duration::from_secs(10),
                upload_timeout: Duration::from_secs(10),
            },
            &Backend::Local,
            test_keys()?,
        )?;
        let mut settings = ApiSettings {
            listen: "127.0.0.1:0".into(),
            jwt_secret: SECRET.into(),
            max_upload_bytes: 20 * 1024 * 1024,
            max_batch_files: 10,
            max_attempts: 3,
            rate_limit_per_minute: 0,
            starting_credits: 100,
            provider: Default::default(),
            guest_sessions: Default::default(),
        };
        tweak(&mut settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        // The API acts as its own database role, as `rythmiq api` does; `pool` (the login) is
        // for the tests' own queries.
        let api_pool =
            rythmiq_shared::db::connect_as(&db_url, 10, rythmiq_shared::db::Role::Api).await?;
        let state = rythmiq_api::AppState::new(api_pool, storage.clone(), settings)
            .with_models(ocr_stage());
        let shutdown = CancellationToken::new();
        tokio::spawn(rythmiq_api::serve(listener, state, shutdown.clone()));
        Ok(Self {
            addr,
            db_url,
            pool,
            storage,
            storage_dir,
            client: reqwest::Client::new(),
            shutdown,
            user: Uuid::new_v4(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET path` (no token), read as JSON.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        Ok(self.client.get(self.url(path)).send().await?.json().await?)
    }

    pub fn token(&self) -> String {
        token_for(self.user)
    }

    /// Starts an in-process worker; cancel the token to stop it.
    pub fn start_worker(
        &self,
        settings: WorkerSettings,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let pool =
            rythmiq_shared::db::connect_lazy_as(&self.db_url, 10, rythmiq_shared::db::Role::Worker)
                .expect("a valid database URL");
        let worker = rythmiq_worker::Worker::new(
            pool,
            rythmiq_worker::job::Pipeline::new(self.storage.clone(), ocr_stage()),
            settings,
        );
        let stop = CancellationToken::new();
        let s = stop.clone();
        let handle = tokio::spawn(async move {
            let _ = worker.run(s).await;
        });
        (stop, handle)
    }

    /// `rythmiq COMMAND` against this app's database and storage, with test-speed queue timings.
    fn command(&self, command: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rythmiq"));
        cmd.arg(command)
            .env("DATABASE_URL", &self.db_url)
            .env("RYTHMIQ_STORAGE_DIR", self.storage_dir.path())
            .env("RYTHMIQ_MASTER_KEY", MASTER_KEY)
            .env("RYTHMIQ_JWT_SECRET", SECRET)
            .env("RYTHMIQ_LISTEN", "127.0.0.1:0")
            .env("RYTHMIQ_HEARTBEAT_SECS", "1")
            .env("RYTHMIQ_ORPHAN_TIMEOUT_SECS", "3")
            .env("RYTHMIQ_RETRY_BASE_SECS", "1")
            .env("RYTHMIQ_POLL_INTERVAL_MS", "500")
            .env("RYTHMIQ_METRICS_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info");
        if std::env::var_os("RYTHMIQ_MODELS_DIR").is_none() {
            cmd.env(
                "RYTHMIQ_MODELS_DIR",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
            );
        }
        cmd
    }

    /// Starts `rythmiq worker` as a separate process against this app's database and storage.
    pub fn spawn_worker_process(&self, extra_env: &[(&str, &str)]) -> Result<Child> {
        let mut cmd = self.command("worker");
        cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Ok(cmd.spawn()?)
    }

    /// Starts `rythmiq COMMAND` (`api` or `worker`) with everything it writes going to `log`.
    pub fn spawn_logged(
        &self,
        command: &str,
        extra_env: &[(&str, &str)],
        log: &Path,
    ) -> Result<Child> {
        let file = std::fs::File::create(log)?;
        let mut cmd = self.command(command);
        cmd.stdout(file.try_clone()?).stderr(file);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Ok(cmd.spawn()?)
    }

    /// `POST /v1/jobs` as this app's user.
    pub async fn submit(&self, file: Vec<u8>, portal: &str) -> Result<reqwest::Response> {
        self.submit_as(&self.token(), file, portal, None).await
    }

    pub async fn submit_as(
        &self,
        token: &str,
        file: Vec<u8>,
        portal: &str,
        idempotency_key: Option<&str>,
    ) -> Result<reqwest::Response> {
        let form = upload_form(file, portal);
        let mut req = self
            .client
            .post(self.url("/v1/jobs"))
            .bearer_auth(token)
            .multipart(form);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        Ok(req.send().await?)
    }

    /// Submits and returns the job id, insisting on 202.
    pub async fn submit_ok(&self, file: Vec<u8>, portal: &str) -> Result<Uuid> {
        let resp = self.submit(file, portal).await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if status != reqwest::StatusCode::ACCEPTED {
            bail!("submit returned {status}: {body}");
        }
        Ok(body["job_id"].as_str().context("job_id")?.parse()?)
    }

    /// `GET /v1/jobs/{id}?wait=N`.
    pub async fn job(&self, id: Uuid, wait: u64) -> Result<Value> {
        let resp = self
            .client
            .get(self.url(&format!("/v1/jobs/{id}?wait={wait}")))
            .bearer_auth(self.token())
            .send()
            .await?;
        Ok(resp.error_for_status()?.json().await?)
    }

    /// Waits (long-polling) until the job is completed or failed, up to `secs`.
    pub async fn wait_terminal(&self, id: Uuid, secs: u64) -> Result<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline
                .saturating_duration_since(std::time::Instant::now())
                .as_secs();
            let job = self.job(id, left.clamp(1, 60)).await?;
            if matches!(job["status"].as_str(), Some("completed" | "failed")) {
                return Ok(job);
            }
            if std::time::Instant::now() >= deadline {
                bail!("job {id} not finished after {secs}s: {job}");
            }
        }
    }

    /// `GET /v1/jobs/{id}/output` as this app's user.
    pub async fn output(&self, id: Uuid) -> Result<reqwest::Response> {
        Ok(self
            .client
            .get(self.url(&format!("/v1/jobs/{id}/output")))
            .bearer_auth(self.token())
            .send()
            .await?)
    }

    pub async fn job_state(&self, id: Uuid) -> Result<String> {
        Ok(sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn task_attempts(&self, id: Uuid) -> Result<i32> {
        Ok(sqlx::query_scalar(
            "SELECT a.attempts FROM apalis.jobs a JOIN jobs j ON j.task_id = a.id WHERE j.id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?)
    }
}

pub fn token_for(user: Uuid) -> String {
    rythmiq_shared::auth::mint(SECRET, user, 3600).unwrap_or_default()
}

/// A photo-like JPEG: a real portrait (scikit-image's public-domain `astronaut`, the pipeline's
/// fixture) centred on gradients, with noise everywhere (noise keeps it from compressing to
/// nothing). A real face, because the passport, NEET and JEE photo rules frame by it and fail
/// an upload without one (`FACE_NOT_FOUND`).
pub fn photo_jpeg(width: u32, height: u32, seed: u32) -> Vec<u8> {
    static PORTRAIT: OnceLock<Option<image::RgbImage>> = OnceLock::new();
    let portrait = PORTRAIT.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("pipeline/tests/fixtures/photos/astronaut.jpg");
        image::open(path).ok().map(|i| i.into_rgb8())
    });
    let side = (width.min(height) * 4 / 5).max(1);
    let face = portrait
        .as_ref()
        .map(|p| image::imageops::resize(p, side, side, image::imageops::FilterType::Triangle));
    let (fx, fy) = ((width - side) / 2, (height - side) / 2);
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        let n = hash(x, y, seed);
        let inside = x >= fx && y >= fy && x < fx + side && y < fy + side;
        let base = match &face {
            Some(f) if inside => f.get_pixel(x - fx, y - fy).0,
            _ => [(x * 255 / width) as u8, 120, (y * 255 / height) as u8],
        };
        let jitter = (n % 41) as i16 - 20;
        image::Rgb(base.map(|c| (i16::from(c) + jitter).clamp(0, 255) as u8))
    });
    let mut out = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
    img.write_with_encoder(enc).unwrap_or_default();
    out
}

/// A large PNG: slow enough to decode that a test can catch a worker mid-job.
pub fn slow_png(width: u32, height: u32) -> Vec<u8> {
    // Smooth bands with sparse noise: many pixels to decode, yet a file well under the
    // upload limit.
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        let n = if (x ^ y) % 61 == 0 {
            hash(x, y, 7) & 0x3f
        } else {
            0
        };
        let v = ((x / 29 + y / 17) % 256) as u8;
        image::Rgb([v.wrapping_add(n as u8), v / 2, 255 - v])
    });
    let mut out = Vec::new();
    let enc = image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Best,
        image::codecs::png::FilterType::Adaptive,
    );
    img.write_with_encoder(enc).unwrap_or_default();
    out
}

fn hash(x: u32, y: u32, seed: u32) -> u32 {
    let mut h = x.wrapping_mul(374_761_393)
        ^ y.wrapping_mul(668_265_263)
        ^ seed.wrapping_mul(2_246_822_519);
    h = (h ^ (h >> 13)).wrapping_mul(1_274_126_177);
    h ^ (h >> 16)
}

/// A child process that is killed when dropped, so a failing test leaves no process behind.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends a signal to a child process with the `kill` command (no unsafe code needed).
pub fn signal(child: &Child, sig: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()?;
    if !status.success() {
        bail!("kill -{sig} failed");
    }
    Ok(())
}

/// Polls `check` every 20 ms until it returns true or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("condition not met within {secs}s")
}

/// The `listen_addr` a process logged (JSON log lines) with `message`, once it has.
pub async fn logged_address(log: &Path, message: &str) -> Result<String> {
    let mut addr = None;
    eventually(30, || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        addr = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["message"] == message)
            .and_then(|l| l["extra"]["listen_addr"].as_str().map(ToOwned::to_owned));
        let found = addr.is_some();
        async move { Ok(found) }
    })
    .await
    .with_context(|| std::fs::read_to_string(log).unwrap_or_default())?;
    addr.context("listen address")
}

pub fn decode_output(bytes: &[u8]) -> Result<image::DynamicImage> {
    Ok(image::load_from_memory(bytes)?)
}

/// `rythmiq dev` on a random port with two workers and its data under `data`, with a fresh
/// JWT secret and plain (uncoloured) output on a piped stdout; the caller picks stderr.
pub fn dev_command(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rythmiq"));
    cmd.args([
        "dev",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--data-dir",
    ])
    .arg(data)
    .env_remove("RYTHMIQ_JWT_SECRET")
    .env("NO_COLOR", "1")
    .stdout(Stdio::piped());
    cmd
}

/// The multipart form of one upload (`POST /v1/jobs`, `POST /v1/checks`): `file` and `portal`.
pub fn upload_form(file: Vec<u8>, portal: &str) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(file).file_name("photo.jpg"),
        )
        .text("portal", portal.to_owned())
}

pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::File::create(&path)?.write_all(bytes)?;
    Ok(path)
}

/// An error response's status, `error.code` and `error.message`.
pub async fn error_of(resp: reqwest::Response) -> Result<(reqwest::StatusCode, String, String)> {
    let status = resp.status();
    let body: Value = resp.json().await?;
    let field = |k: &str| body["error"][k].as_str().unwrap_or_default().to_owned();
    Ok((status, field("code"), field("message")))
}
