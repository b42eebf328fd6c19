//! Production roles: `rythmiq api`, `rythmiq worker`, `rythmiq migrate`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use rythmiq_pipeline::ocr::OcrStage;
use rythmiq_shared::config::{self, ApiSettings, StorageSettings, WorkerSettings};
use rythmiq_shared::crypto::KeyRing;
use rythmiq_shared::db;
use rythmiq_shared::storage::{Backend, Storage};
use tokio_util::sync::CancellationToken;

/// A pool on `DATABASE_URL`, acting as `role` (the services) or as the login (migrations).
async fn pool(role: Option<db::Role>) -> anyhow::Result<sqlx::PgPool> {
    let url = config::required("DATABASE_URL")?;
    let size = config::pool_size()?;
    match role {
        Some(role) => db::connect_as(&url, size, role).await.with_context(|| {
            format!(
                "connecting to DATABASE_URL as {} (the login needs that role: run `rythmiq migrate` \
                 with it, or GRANT it)",
                role.name()
            )
        }),
        None => db::connect(&url, size)
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

pub async fn api() -> anyhow::Result<ExitCode> {
    let settings = ApiSettings::from_env(None)?;
    let state = rythmiq_api::AppState::new(
        pool(Some(db::Role::Api)).await?,
        Storage::open(
            StorageSettings::from_env()?,
            &Backend::from_env()?,
            Arc::new(KeyRing::from_env()?),
        )?,
        settings.clone(),
    );
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    tracing::info!(listen_addr = %listener.local_addr()?, "api listening");
    rythmiq_api::serve(listener, state, on_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn worker() -> anyhow::Result<ExitCode> {
    let settings = WorkerSettings::from_env()?;
    let metrics = rythmiq_shared::metrics::install()?;
    let listen = config::var("RYTHMIQ_METRICS_LISTEN", "0.0.0.0:9100".to_string())?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen} for /metrics"))?;
    tracing::info!(listen_addr = %listener.local_addr()?, "worker metrics listening");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || std::future::ready(metrics.render())),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let storage = Storage::open(
        StorageSettings::from_env()?,
        &Backend::from_env()?,
        Arc::new(KeyRing::from_env()?),
    )?;
    let ocr = load_ocr(&settings, 1)?;
    let worker = rythmiq_worker::Worker::new(
        pool(Some(db::Role::Worker)).await?,
        rythmiq_worker::job::Pipeline::new(storage, ocr),
        settings,
    );
    worker.run(on_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// The OCR engine for a process running `runtimes` workers with `settings`, loaded once.
pub fn load_ocr(settings: &WorkerSettings, runtimes: usize) -> anyhow::Result<OcrStage> {
    OcrStage::load(
        rythmiq_ocr::default_models_dir(),
        settings.ocr_threads_for(runtimes),
        settings.ocr_timeout,
    )
    .context("loading the OCR models")
}

pub async fn migrate() -> anyhow::Result<ExitCode> {
    db::migrate(&pool(None).await?).await?;
    println!("migrations applied");
    Ok(ExitCode::SUCCESS)
}
