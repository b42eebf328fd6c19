//! axum's extractors with the API's rejection: a malformed path, query, JSON or multipart
//! request is answered with the `{"error": {"code", "message"}}` envelope like every other
//! error, not axum's plain-text rejection. Each wrapper is axum's own extractor
//! (`#[from_request(via(...))]`), so parsing stays axum's; only the rejection changes.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;

use crate::error::ApiError;

/// [`axum::extract::Path`], rejected as `400 INVALID_REQUEST`.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// [`axum::extract::Query`], rejected as `400 INVALID_REQUEST`.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// [`axum::Json`] as a request body: malformed JSON or a missing content type is
/// `400 INVALID_REQUEST`, well-formed JSON of the wrong shape `422 PAYLOAD_INVALID`.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

/// [`axum::extract::Multipart`]: a body that is not `multipart/form-data` is
/// `422 PAYLOAD_INVALID`. (By hand: `via` needs an extractor generic over what it wraps.)
pub struct Multipart(pub axum::extract::Multipart);

impl<S: Send + Sync> FromRequest<S> for Multipart {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(Self(
            axum::extract::Multipart::from_request(req, state).await?,
        ))
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        match e {
            // A route whose handler asks for a parameter its path does not have: ours.
            PathRejection::MissingPathParams(e) => ApiError::internal("path parameters", e),
            e => ApiError::InvalidRequest(format!("invalid path: {}", e.body_text())),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::InvalidRequest(format!("invalid query string: {}", e.body_text()))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit: 0 },
            StatusCode::UNPROCESSABLE_ENTITY => {
                ApiError::PayloadInvalid(format!("invalid JSON body: {}", e.body_text()))
            }
            _ => ApiError::InvalidRequest(format!(
                "expected a JSON body (Content-Type: application/json): {}",
                e.body_text()
            )),
        }
    }
}
