//! The authenticated user, extracted from `Authorization: Bearer <JWT>`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;

/// The caller, proven by a valid token.
#[derive(Debug, Clone, Copy)]
pub struct User(pub Uuid);

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(ApiError::Unauthorized)?;
        let user = state.verifier.verify(token.trim()).await.map_err(|e| {
            // Why a token failed helps an operator; the client only learns that it did.
            tracing::debug!(error = %e, "bearer token refused");
            ApiError::Unauthorized
        })?;
        // The request span (and so its log lines) knows who asked, never by the raw id.
        tracing::Span::current().record(
            "user_id_hash",
            rythmiq_shared::telemetry::user_id_hash(&user.to_string()),
        );
        Ok(User(user))
    }
}
