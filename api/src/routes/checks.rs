//! `POST /v1/checks`: a student's own file held against a portal rule as it is, nothing changed,
//! one line per requirement (`rythmiq check` over HTTP). No job, no stored file, no credit; the
//! same per-minute limit as jobs, counted in this API process.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use rythmiq_pipeline::check::{self, Report};
use rythmiq_shared::db;
use uuid::Uuid;

use crate::AppState;
use crate::auth::User;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Multipart;

/// The window the per-user limit counts in, as for jobs.
const WINDOW: Duration = Duration::from_secs(60);

/// Users remembered at most; past it, users with no check in the window are dropped.
const MAX_TRACKED: usize = 100_000;

/// Checks per user in the last minute, in this API process. Checks leave no row to count (the
/// jobs' limit counts job rows), and a sliding window over a few timestamps per user is all
/// this needs, as for guest sessions.
#[derive(Clone, Default)]
pub struct CheckLimiter {
    made: Arc<Mutex<HashMap<Uuid, VecDeque<Instant>>>>,
}

impl CheckLimiter {
    /// Counts a check for `user` and returns `Ok`, or how long until one fits.
    fn admit(&self, user: Uuid, limit: u32, now: Instant) -> Result<(), Duration> {
        if limit == 0 {
            return Ok(());
        }
        let mut made = self
            .made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if made.len() >= MAX_TRACKED {
            made.retain(|_, times| times.back().is_some_and(|t| now - *t < WINDOW));
        }
        let times = made.entry(user).or_default();
        while times.front().is_some_and(|t| now - *t >= WINDOW) {
            times.pop_front();
        }
        if times.len() >= limit as usize {
            let oldest = times.front().copied().unwrap_or(now);
            return Err(WINDOW.saturating_sub(now - oldest));
        }
        times.push_back(now);
        Ok(())
    }
}

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
