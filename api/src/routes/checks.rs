//! `POST /v1/checks`: a student's own file held against a portal rule as it is, nothing changed,
//! one line per requirement (`rythmiq check` over HTTP). No job, no stored file, no credit; the
//! same per-minute limit as jobs, counted in this API process.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use rythmiq_pipeline::check::{self, Report};
use rythmiq_shared::db;
use uuid::Uuid;

use crate::AppState;
use crate::auth::User;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Multipart;

/// Checks per user in the last minute (as for jobs), in this API process: checks leave no row to
/// count; at most 100,000 users are remembered.
pub type CheckLimiter = crate::limiter::SlidingWindow<Uuid, 60, 100_000>;

/// Check a file against a portal rule without changing it: one line per requirement (format,
/// pixels, DPI, size, colour, orientation, background, and for photos the face lines), each
/// passed, failed or (`"passed": null`) not checked. Creates no job and spends no credit.
#[utoipa::path(post, path = "/v1/checks", tag = "checks",
    request_body(content = crate::openapi::JobForm, content_type = "multipart/form-data"),
    responses((status = 200, body = crate::openapi::CheckReport),
              (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    User(user): User,
    Multipart(form): Multipart,
) -> Result<Json<Report>, ApiError> {
    let limit = state.settings.rate_limit_per_minute;
    if let Err(wait) = state.checks.admit(user, limit, Instant::now()) {
        return Err(ApiError::RateLimited {
            limit,
            retry_after: wait.as_secs().clamp(1, 60),
        });
    }
    let upload = super::jobs::read_upload(form, state.settings.max_upload_bytes).await?;
    let rule = db::active_portal(&state.pool, &upload.portal)
        .await?
        .ok_or_else(|| ApiError::UnknownPortal(upload.portal.clone()))?;
    // Decoding (and the face and text models, where this API holds them) is CPU work: off the
    // async threads. Without models, the lines that need them say they were not checked.
    let models = state.models.clone();
    let report = tokio::task::spawn_blocking(move || {
        check::check(&upload.file, Some(&upload.filename), &rule, models.as_ref())
    })
    .await
    .map_err(|e| ApiError::internal("the check task failed", e))?
    .map_err(|e| ApiError::PayloadInvalid(e.to_string()))?;
    tracing::info!(portal = %report.portal, compliant = report.compliant, "file checked");
    Ok(Json(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_limit_counts_per_user_in_a_sliding_minute() {
        let l = CheckLimiter::default();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let t0 = Instant::now();
        assert!(l.admit(a, 2, t0).is_ok());
        assert!(l.admit(a, 2, t0 + Duration::from_secs(10)).is_ok());
        let wait = l.admit(a, 2, t0 + Duration::from_secs(20));
        assert_eq!(wait, Err(Duration::from_secs(40)));
        // Another user has a window of their own; the first user's oldest check ages out.
        assert!(l.admit(b, 2, t0 + Duration::from_secs(20)).is_ok());
        assert!(l.admit(a, 2, t0 + Duration::from_secs(61)).is_ok());
        // 0 turns the limit off.
        assert!((0..100).all(|_| l.admit(a, 0, t0).is_ok()));
    }
}
