//! HTTP handlers, one module per resource.

pub mod batches;
pub mod checks;
pub mod health;
pub mod jobs;
pub mod page;
pub mod portals;
pub mod sessions;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// `202 Accepted` for a created (or, with `replay`, an idempotently repeated) resource: its
/// body, `Location`, the caller's correlation id, and `Idempotent-Replayed` on a repeat.
fn accepted(body: impl Serialize, location: &str, correlation: &str, replay: bool) -> Response {
    let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(correlation) {
        h.insert("x-correlation-id", v);
    }
    if replay {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}
