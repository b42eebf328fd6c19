//! `GET /v1/portal-schemas`: the active portal rules.

use axum::Json;
use axum::extract::State;
use rythmiq_shared::db;
use rythmiq_shared::domain::{DocumentKind, OutputFormat};
use serde::Serialize;

use crate::AppState;
use crate::error::ApiError;

/// One active portal rule.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PortalView {
    pub slug: String,
    pub version: i32,
    pub name: String,
    #[schema(value_type = String)]
    pub kind: DocumentKind,
    pub width: i32,
    pub height: i32,
    pub dpi: i32,
    #[schema(value_type = String)]
    pub format: OutputFormat,
    pub min_kb: i32,
    pub max_kb: i32,
    pub background: String,
}

/// List the portal rules jobs can be created for.
#[utoipa::path(get, path = "/v1/portal-schemas", tag = "portals",
    responses((status = 200, body = [PortalView])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<PortalView>>, ApiError> {
    let rules = db::active_portals(&state.pool).await?;
    Ok(Json(
        rules
            .into_iter()
            .map(|r| PortalView {
                slug: r.slug,
                version: r.version,
                name: r.name,
                kind: r.kind,
                width: r.width,
                height: r.height,
                dpi: r.dpi,
                format: r.format,
                min_kb: r.min_kb,
                max_kb: r.max_kb,
                background: r.background,
            })
            .collect(),
    ))
}
