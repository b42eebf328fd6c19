//! The Rythmiq HTTP API (axum). [`router`] builds the whole application so tests can drive it
//! without a socket; [`serve`] runs it with graceful shutdown.

pub mod auth;
mod enqueue;
pub mod error;
pub mod events;
pub mod extract;
mod limiter;
pub mod observe;
pub mod openapi;
pub mod routes;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use rythmiq_shared::auth::TokenVerifier;
use rythmiq_shared::config::ApiSettings;
use rythmiq_shared::signing::LinkSigner;
use rythmiq_shared::storage::Storage;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::error::ApiError;
use crate::openapi::Contract;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub storage: Storage,
    pub settings: ApiSettings,
    pub events: events::JobEvents,
    pub metrics: Option<PrometheusHandle>,
    /// Signs `download_url`s; keyed from the storage master key, so no extra secret.
    pub links: LinkSigner,
    pub verifier: TokenVerifier,
    /// Guest sessions opened per client address (`POST /v1/sessions`).
    pub guests: routes::sessions::GuestLimiter,
    /// File checks per user in the last minute (`POST /v1/checks`).
    pub checks: routes::checks::CheckLimiter,
    /// The face and OCR models, for the face and text lines of `POST /v1/checks`; `None`: those
    /// lines are not checked (see [`AppState::with_models`]).
    pub models: Option<rythmiq_pipeline::ocr::OcrStage>,
}

impl AppState {
    /// Lets `POST /v1/checks` find faces and read text with `models` (`rythmiq dev` shares its
    /// workers' engine; a production API without the model files goes without).
    pub fn with_models(mut self, models: rythmiq_pipeline::ocr::OcrStage) -> Self {
        self.models = Some(models);
        self
    }

    pub fn new(pool: PgPool, storage: Storage, settings: ApiSettings) -> Self {
        let events = events::JobEvents::spawn(pool.clone());
        let metrics = match rythmiq_shared::metrics::install() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::error!(error = %e, "metrics recorder unavailable; /metrics disabled");
                None
            }
        };
        tokio::spawn(refresh_gauges(pool.clone()));
        let links = LinkSigner::from_keyring(storage.keys());
        let verifier = TokenVerifier::new(&settings.jwt_secret, settings.provider.clone());
        Self {
            links,
            verifier,
            guests: Default::default(),
            checks: Default::default(),
            models: None,
            pool,
            storage,
            settings,
            events,
            metrics,
        }
    }
}

/// Keeps the queue-depth and alert gauges current for the autoscaler and the dashboards.
async fn refresh_gauges(pool: PgPool) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    while !pool.is_closed() {
        tick.tick().await;
        if let Err(e) = rythmiq_shared::metrics::refresh_db_gauges(&pool).await {
            tracing::debug!(error = %e, "gauge refresh failed");
        }
    }
}

async fn metrics_text(State(state): State<AppState>) -> Result<String, ApiError> {
    // Scrapes see current queue numbers, not ones up to 5 s old.
    if let Err(e) = rythmiq_shared::metrics::refresh_db_gauges(&state.pool).await {
        tracing::warn!(error = %e, "gauge refresh failed");
    }
    state
        .metrics
        .as_ref()
        .map(PrometheusHandle::render)
        .ok_or(ApiError::NotFound)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Rythmiq API", description = "Photos and scans in, portal-compliant files out."),
    paths(routes::jobs::create, routes::jobs::get, routes::jobs::output, routes::jobs::download,
          routes::batches::create, routes::batches::get, routes::batches::output,
          routes::batches::download,
          routes::portals::list,
          routes::checks::create,
          routes::sessions::create,
          routes::health::healthz, routes::health::readyz),
    components(schemas(error::ErrorBody)),
    modifiers(&Contract)
)]
pub struct ApiDoc;

async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

async fn fallback() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    // Room for the multipart framing around a file of the maximum size; a batch, for as many
    // as it may hold (each file is also held to the single-file limit as it is read).
    let body_limit = state.settings.max_upload_bytes.saturating_add(64 * 1024);
    let batch_limit = body_limit.saturating_mul(state.settings.max_batch_files.max(1));
    Router::new()
        .route("/v1/jobs", post(routes::jobs::create))
        .route("/v1/jobs/{id}", get(routes::jobs::get))
        .route("/v1/jobs/{id}/output", get(routes::jobs::output))
        .route("/v1/download/{id}", get(routes::jobs::download))
        .route(
            "/v1/batches",
            post(routes::batches::create).layer(DefaultBodyLimit::max(batch_limit)),
        )
        .route("/v1/batches/{id}", get(routes::batches::get))
        .route("/v1/batches/{id}/output", get(routes::batches::output))
        .route("/v1/download/batches/{id}", get(routes::batches::download))
        .route("/v1/portal-schemas", get(routes::portals::list))
        .route("/v1/checks", post(routes::checks::create))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/openapi.json", get(openapi_json))
        .route("/metrics", get(metrics_text))
        // The student page (`GET /` and `/assets/…`) and its guest sessions.
        .merge(routes::page::router())
        .route("/v1/sessions", post(routes::sessions::create))
        .fallback(fallback)
        // Applies to the routes above only: keep it after the last `.route`.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(observe::observe))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` fires, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // The peer address limits guest sessions per client.
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
