//! The Rythmiq HTTP API (axum). [`router`] builds the whole application so tests can drive it
//! without a socket; [`serve`] runs it with graceful shutdown.

pub mod auth;
pub mod error;
pub mod events;
pub mod routes;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use rythmiq_shared::config::ApiSettings;
use rythmiq_shared::storage::Storage;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub storage: Storage,
    pub settings: ApiSettings,
    pub events: events::JobEvents,
}

impl AppState {
    pub fn new(pool: PgPool, storage: Storage, settings: ApiSettings) -> Self {
        let events = events::JobEvents::spawn(pool.clone());
        Self {
            pool,
            storage,
            settings,
            events,
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Rythmiq API", description = "Photos and scans in, portal-compliant files out."),
    paths(routes::jobs::create, routes::jobs::get, routes::jobs::output, routes::portals::list,
          routes::health::healthz, routes::health::readyz),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

async fn fallback() -> ApiError {
    ApiError::NotFound
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    // Room for the multipart framing around a file of the maximum size.
    let body_limit = state.settings.max_upload_bytes.saturating_add(64 * 1024);
    Router::new()
        .route("/v1/jobs", post(routes::jobs::create))
        .route("/v1/jobs/{id}", get(routes::jobs::get))
        .route("/v1/jobs/{id}/output", get(routes::jobs::output))
        .route("/v1/portal-schemas", get(routes::portals::list))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/openapi.json", get(openapi_json))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` fires, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
