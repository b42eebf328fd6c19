//! The API crate's one error type, mapped once to an HTTP status and a JSON body
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rythmiq_shared::error::Chain;
use serde::Serialize;

/// Every way a request can fail. 5xx causes are logged in full and hidden from the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    PayloadMissing(String),
    #[error("{0}")]
    PayloadInvalid(String),
    #[error("the upload is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("unknown portal {0:?}; GET /v1/portal-schemas lists the valid slugs")]
    UnknownPortal(String),
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error("{0}")]
    LinkInvalid(String),
    #[error("the output was deleted after its retention period; submit the upload again")]
    OutputExpired,
    #[error("no credits left: every job costs one credit")]
    InsufficientCredits,
    #[error("too many jobs: at most {limit} per minute; retry after {retry_after} s")]
    RateLimited { limit: u32, retry_after: u64 },
    #[error("too many files: a batch holds at most {limit}")]
    TooManyFiles { limit: usize },
    /// Something wrong with one file of a batch: its own code and status, and which file.
    #[error("file {number}: {error}")]
    InFile { number: usize, error: Box<ApiError> },
    /// Our fault: what was being done, and the cause when there is one. Logged with its whole
    /// chain of causes; the client sees `internal error` only.
    #[error("internal error")]
    Internal {
        context: &'static str,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `PAYLOAD_INVALID`.
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiError::PayloadMissing(_) => (StatusCode::BAD_REQUEST, "PAYLOAD_MISSING"),
            ApiError::PayloadInvalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "PAYLOAD_INVALID"),
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE")
            }
            ApiError::UnknownPortal(_) => (StatusCode::UNPROCESSABLE_ENTITY, "UNKNOWN_PORTAL"),
            ApiError::IdempotencyKeyReused => {
                (StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED")
            }
            ApiError::LinkInvalid(_) => (StatusCode::FORBIDDEN, "LINK_INVALID"),
            ApiError::OutputExpired => (StatusCode::GONE, "OUTPUT_EXPIRED"),
            ApiError::InsufficientCredits => (StatusCode::PAYMENT_REQUIRED, "INSUFFICIENT_CREDITS"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            ApiError::TooManyFiles { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "TOO_MANY_FILES"),
            ApiError::InFile { error, .. } => error.status_and_code(),
            ApiError::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }
}

impl ApiError {
    /// An [`ApiError::Internal`] with its cause.
    pub fn internal(
        context: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        ApiError::Internal {
            context,
            source: Some(source.into()),
        }
    }

    /// An [`ApiError::Internal`] for a state the code should never reach.
    pub fn bug(context: &'static str) -> Self {
        ApiError::Internal {
            context,
            source: None,
        }
    }

    /// This error, said of the `index`-th (0-based) file of a batch.
    pub fn in_file(self, index: usize) -> Self {
        ApiError::InFile {
            number: index + 1,
            error: Box::new(self),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal { context, source } = &self {
            match source {
                Some(s) => {
                    tracing::error!(context, cause = %Chain(s.as_ref()), "request failed");
                }
                None => tracing::error!(context, "request failed"),
            }
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let ApiError::RateLimited { retry_after, .. } = self
            && let Ok(v) = axum::http::HeaderValue::from_str(&retry_after.to_string())
        {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal("database", e)
    }
}

impl From<rythmiq_shared::Error> for ApiError {
    fn from(e: rythmiq_shared::Error) -> Self {
        // The shared error names its own kind in its message ("database: …", "object storage: …").
        ApiError::internal("shared", e)
    }
}

impl From<axum::extract::multipart::MultipartRejection> for ApiError {
    fn from(e: axum::extract::multipart::MultipartRejection) -> Self {
        ApiError::PayloadInvalid(format!(
            "expected a multipart/form-data body: {}",
            e.body_text()
        ))
    }
}

impl From<axum::extract::multipart::MultipartError> for ApiError {
    fn from(e: axum::extract::multipart::MultipartError) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            // The limit is reported by the route, which knows it.
            ApiError::PayloadTooLarge { limit: 0 }
        } else {
            ApiError::PayloadInvalid(format!("malformed multipart body: {}", e.body_text()))
        }
    }
}
