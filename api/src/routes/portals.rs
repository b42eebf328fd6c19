//! `GET /v1/portal-schemas`: the active portal rules.

use axum::Json;
use axum::extract::State;
use rythmiq_shared::db;
use rythmiq_shared::domain::{DocumentKind, OutputFormat};
use rythmiq_shared::portals::VALUE_KEYS;
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
    /// The public page the rule's values were checked against.
    pub source_url: Option<String>,
    /// When they were last checked against it (`YYYY-MM-DD`).
    pub source_checked_on: Option<chrono::NaiveDate>,
    /// The values the portal itself states (of `width`, `height`, `dpi`, `format`, `min_kb`,
    /// `max_kb`, `background`); `null` when not recorded.
    #[schema(example = json!(["format", "min_kb", "background"]))]
    pub portal_values: Option<Vec<String>>,
    /// The values that are ours, chosen where the portal states none; `null` when not recorded.
    #[schema(example = json!(["width", "height", "dpi", "max_kb"]))]
    pub our_values: Option<Vec<String>>,
}

/// List the portal rules jobs can be created for.
#[utoipa::path(get, path = "/v1/portal-schemas", tag = "portals",
    responses((status = 200, body = [PortalView])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<PortalView>>, ApiError> {
    let rules = db::active_portals_with_sources(&state.pool).await?;
    Ok(Json(
        rules
            .into_iter()
            .map(
                |db::SourcedPortalRule {
                     rule: r,
                     source_url,
                     source_checked_on,
                     source_portal_values,
                 }| PortalView {
                    slug: r.spec.slug,
                    version: r.version,
                    name: r.spec.name,
                    kind: r.spec.kind,
                    width: r.spec.width,
                    height: r.spec.height,
                    dpi: r.spec.dpi,
                    format: r.spec.format,
                    min_kb: r.spec.min_kb,
                    max_kb: r.spec.max_kb,
                    background: r.spec.background,
                    source_url,
                    source_checked_on,
                    our_values: source_portal_values.as_ref().map(|p| {
                        VALUE_KEYS
                            .iter()
                            .filter(|k| !p.iter().any(|v| v == *k))
                            .map(|k| (*k).to_owned())
                            .collect()
                    }),
                    portal_values: source_portal_values,
                },
            )
            .collect(),
    ))
}
