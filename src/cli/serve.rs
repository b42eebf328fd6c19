//! Production roles: `rythmiq api`, `rythmiq worker`, `rythmiq migrate`. Each is configured by
//! its own struct of settings, every one a flag with an environment variable and a default
//! (`rythmiq ROLE --help` lists them); in use they take no arguments, only the environment.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use rythmiq_pipeline::ocr::OcrStage;
use rythmiq_shared::config::{
    self, DatabaseArgs, MasterKeyArgs, ModelsDirArgs, ServiceLogArgs, StorageArgs, WorkerSettings,
};
use rythmiq_shared::db;
use rythmiq_shared::storage::Storage;
use tokio_util::sync::CancellationToken;

/// `rythmiq api`.
#[derive(Args)]
pub struct ApiCommand {
    /// API listen address.
    #[arg(
        long,
        env = "RYTHMIQ_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:8080"
    )]
    listen: String,
    #[command(flatten)]
    secret: config::JwtSecretArgs,
    #[command(flatten)]
    api: config::ApiArgs,
    /// The face and OCR models, for the face and text lines of `POST /v1/checks`; when none are
    /// configured or found, those lines say they were not checked.
    #[command(flatten)]
    models: config::ModelsDirArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// `rythmiq worker`.
#[derive(Args)]
pub struct WorkerCommand {
    /// Jobs one worker process runs at once (default: the number of cores).
    #[arg(long, env = "RYTHMIQ_WORKER_CONCURRENCY", value_name = "N", default_value_t = config::available_cores())]
    worker_concurrency: usize,
    /// Where the worker serves /metrics (the API serves its own).
    #[arg(
        long,
        env = "RYTHMIQ_METRICS_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:9100"
    )]
    metrics_listen: String,
    #[command(flatten)]
    worker: config::WorkerArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// What both services need besides their own settings: the database, the object store with
/// its keys, and the logs.
#[derive(Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    storage: StorageArgs,
    #[command(flatten)]
    keys: MasterKeyArgs,
    #[command(flatten)]
    pub log: ServiceLogArgs,
}

impl ServiceArgs {
    /// A pool acting as the service's own database role.
    async fn pool(&self, role: db::Role) -> anyhow::Result<sqlx::PgPool> {
        pool(&self.database, Some(role)).await
    }

    /// The object store, encrypting with the master keys.
    fn storage(&self) -> anyhow::Result<Storage> {
        Ok(Storage::open(
            self.storage.settings(),
            &self.storage.store.backend()?,
            Arc::new(self.keys.key_ring()?),
        )?)
    }
}

/// `rythmiq migrate`.
#[derive(Args)]
pub struct MigrateCommand {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    pub log: ServiceLogArgs,
}

/// A pool on `DATABASE_URL`, acting as `role` (the services) or as the login (migrations).
async fn pool(database: &DatabaseArgs, role: Option<db::Role>) -> anyhow::Result<sqlx::PgPool> {
    let url = &database.database_url;
    let size = database.pool.db_pool_size;
    match role {
        Some(role) => db::connect_as(url, size, role).await.with_context(|| {
            format!(
                "connecting to DATABASE_URL as {} (the login needs that role: run `rythmiq migrate` \
                 with it, or GRANT it)",
                role.name()
            )
        }),
        None => db::connect(url, size)
            .await
            .context("connecting to DATABASE_URL"),
    }
}

/// Cancels the returned token on Ctrl-C or SIGTERM.
fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        tracing::info!("shutdown requested");
        t.cancel();
    });
    token
}

/// How long the OCR of one file check may take in the API.
const CHECK_OCR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub async fn api(args: ApiCommand) -> anyhow::Result<ExitCode> {
    let secret = args
        .secret
        .get()
        .context("RYTHMIQ_JWT_SECRET must be set")?;
    let settings = args.api.settings(args.listen.clone(), secret)?;
    let mut state = rythmiq_api::AppState::new(
        args.service.pool(db::Role::Api).await?,
        args.service.storage()?,
        settings.clone(),
    );
    match models_dir(&args.models) {
        // One thread: a check is one request's work, beside the API's own.
        Ok(dir) => {
            let models = OcrStage::load(dir, 1, CHECK_OCR_TIMEOUT).context("loading the models")?;
            state = state.with_models(models);
        }
        // Configured but absent is an error (above); nowhere configured and none found: the
        // API runs without them.
        Err(e) if args.models.models_dir.is_none() => {
            tracing::warn!(error = %e, "no models: file checks will not check faces or text");
        }
        Err(e) => return Err(e),
    }
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    tracing::info!(listen_addr = %listener.local_addr()?, "api listening");
    rythmiq_api::serve(listener, state, on_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn worker(args: WorkerCommand) -> anyhow::Result<ExitCode> {
    let settings = args.worker.settings(args.worker_concurrency)?;
    let metrics = rythmiq_shared::metrics::install()?;
    let storage = args.service.storage()?;
    let ocr = load_ocr(&args.worker.ocr.models, &settings, 1)?;
    // Liveness allows two missed beats: one slow statement is not a dead worker.
    let silence_allowed = settings.heartbeat * 3;
    let worker = rythmiq_worker::Worker::new(
        args.service.pool(db::Role::Worker).await?,
        rythmiq_worker::job::Pipeline::new(storage, ocr),
        settings,
    )
    .with_startup_cpu(rythmiq_worker::StartupCpu::so_far());
    let listen = &args.metrics_listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen} for /metrics"))?;
    tracing::info!(listen_addr = %listener.local_addr()?, "worker metrics listening");
    let app = worker_probes(worker.health.clone(), silence_allowed).route(
        "/metrics",
        axum::routing::get(move || std::future::ready(metrics.render())),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    worker.run(on_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// The worker's probes: `/healthz` fails once no heartbeat has reached the database for
/// `silence_allowed` (so the orchestrator restarts a worker the fleet presumes dead),
/// `/readyz` while the worker does not take work (starting, or shutting down).
fn worker_probes(
    health: rythmiq_worker::queue::health::Health,
    silence_allowed: std::time::Duration,
) -> axum::Router {
    use axum::http::StatusCode;
    use axum::routing::get;
    let status = |ok: bool| {
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    let live = health.clone();
    axum::Router::new()
        .route(
            "/healthz",
            get(move || {
                let silence = live.silence().as_secs_f64();
                let ok = live.is_live(silence_allowed);
                std::future::ready((
                    status(ok),
                    axum::Json(serde_json::json!({
                        "status": if ok { "ok" } else { "heartbeat stopped" },
                        "seconds_since_heartbeat": silence,
                    })),
                ))
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let ok = health.is_ready();
                std::future::ready((
                    status(ok),
                    axum::Json(serde_json::json!({
                        "status": if ok { "ready" } else { "not taking work" },
                    })),
                ))
            }),
        )
}

/// The configured models directory, or the first standard place that holds the models
/// ([`rythmiq_ocr::models_dir_candidates`]); the error names every place looked in.
pub fn models_dir(models: &ModelsDirArgs) -> anyhow::Result<std::path::PathBuf> {
    match &models.models_dir {
        Some(dir) => Ok(dir.clone()),
        None => Ok(rythmiq_ocr::find_models_dir()?),
    }
}

/// The OCR engine for a process running `runtimes` workers with `settings`, loaded once.
pub fn load_ocr(
    models: &ModelsDirArgs,
    settings: &WorkerSettings,
    runtimes: usize,
) -> anyhow::Result<OcrStage> {
    let stage = OcrStage::load(
        models_dir(models)?,
        settings.ocr_threads_for(runtimes),
        settings.ocr_timeout,
    )
    .context("loading the OCR models")?;
    tracing::info!(matmul = %rythmiq_ocr::matmul_kernel(), "models loaded");
    Ok(stage)
}

pub async fn migrate(args: MigrateCommand) -> anyhow::Result<ExitCode> {
    db::migrate(&pool(&args.database, None).await?).await?;
    println!("migrations applied");
    Ok(ExitCode::SUCCESS)
}
