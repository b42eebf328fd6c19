//! What every request goes through on its way in and out: a validated or generated
//! correlation id (request extension and `X-Correlation-ID` response header), a `request` span
//! that continues the caller's W3C `traceparent`, one "request completed" log line in the
//! log schema of `shared/src/telemetry/log_line.rs`, and the request metrics by matched route (bounded labels, never the raw path).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use rythmiq_shared::metrics as m;
use rythmiq_shared::telemetry::trace;
use tracing::Instrument;
use uuid::Uuid;

pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// The request's correlation id.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

/// The caller's `X-Correlation-ID` when it is a plausible id (1–64 of `[A-Za-z0-9._-]`, so it
/// can never smuggle text into logs or headers), else a new UUIDv4.
pub fn correlation_id(headers: &HeaderMap) -> String {
    headers
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
        .map_or_else(|| Uuid::new_v4().to_string(), ToOwned::to_owned)
}

/// Probes and scrapes arrive every few seconds; their lines stay at DEBUG.
fn is_routine(route: &str) -> bool {
    matches!(route, "/healthz" | "/readyz" | "/metrics")
}

pub async fn observe(mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let correlation = correlation_id(req.headers());
    req.extensions_mut()
        .insert(CorrelationId(correlation.clone()));
    let span = tracing::info_span!("request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        service = "api",
        http_method = %method,
        http_path = %route,
        correlation_id = %correlation,
        user_id_hash = tracing::field::Empty,
        job_id = tracing::field::Empty,
        http_status = tracing::field::Empty);
    let parent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    trace::continue_trace(&span, parent);

    let started = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    span.record("http_status", status);
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| match status {
        500.. => tracing::error!(latency_ms, "request completed"),
        400.. => tracing::warn!(latency_ms, "request completed"),
        _ if is_routine(&route) => tracing::debug!(latency_ms, "request completed"),
        _ => tracing::info!(latency_ms, "request completed"),
    });

    // A handler may answer with another id (an idempotent replay returns its job's own).
    if !resp.headers().contains_key(CORRELATION_HEADER)
        && let Ok(v) = HeaderValue::from_str(&correlation)
    {
        resp.headers_mut().insert(CORRELATION_HEADER, v);
    }
    metrics::counter!(m::API_REQUESTS_TOTAL,
        "route" => route.clone(), "method" => method, "status" => status.to_string())
    .increment(1);
    metrics::histogram!(m::API_LATENCY_SECONDS, "route" => route).record(elapsed.as_secs_f64());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_are_validated_or_generated() {
        let mut h = HeaderMap::new();
        h.insert(CORRELATION_HEADER, HeaderValue::from_static("abc-123_x.y"));
        assert_eq!(correlation_id(&h), "abc-123_x.y");
        for bad in ["", "has space", "quote\"d", &"x".repeat(65)] {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(bad) {
                h.insert(CORRELATION_HEADER, v);
            }
            let id = correlation_id(&h);
            assert!(Uuid::parse_str(&id).is_ok(), "{bad:?} gave {id}");
        }
    }
}
