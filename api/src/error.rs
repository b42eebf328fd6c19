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
    /// A malformed path parameter (an id that is not a UUID), query parameter or JSON body.
    #[error("{0}")]
    InvalidRequest(String),
    #[error("this method is not allowed on this path; the Allow header lists the ones that are")]
    MethodNotAllowed,
    #[error("{0}")]
    PayloadMissing(String),
    #[error("{0}")]
    PayloadInvalid(String),
    /// `limit` is 0 where the limit is not known (a body refused by the body-limit layer).
    #[error("{}", too_large(*limit))]
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

fn too_large(limit: usize) -> String {
    match limit {
        0 => "the request body is larger than the limit".to_owned(),
        n => format!("the upload is larger than the limit of {n} bytes"),
    }
}

/// Every code the API answers with, its status and when (the README's error table, which a
/// test checks against this list).
pub const CODES: [(&str, u16, &str); 15] = [
    (
        "INVALID_REQUEST",
        400,
        "a malformed path or query parameter (an id that is not a UUID, `?wait=-1`) or JSON body",
    ),
    (
        "PAYLOAD_MISSING",
        400,
        "no `file`, no `portal`, or an empty file",
    ),
    (
        "UNAUTHORIZED",
        401,
        "missing, malformed, expired or wrongly signed token",
    ),
    (
        "INSUFFICIENT_CREDITS",
        402,
        "the user has no credits left (nothing is stored or enqueued)",
    ),
    (
        "LINK_INVALID",
        403,
        "a download link that is expired, altered or incomplete",
    ),
    (
        "NOT_FOUND",
        404,
        "no such job or batch for this user, no output or package (yet), unknown route",
    ),
    (
        "METHOD_NOT_ALLOWED",
        405,
        "a method the path does not answer (`Allow` lists the ones it does)",
    ),
    (
        "OUTPUT_EXPIRED",
        410,
        "the output (or a batch's package) was deleted after its retention period",
    ),
    (
        "PAYLOAD_TOO_LARGE",
        413,
        "upload (for a batch: any one file) over `RYTHMIQ_MAX_UPLOAD_BYTES`",
    ),
    (
        "PAYLOAD_INVALID",
        422,
        "not multipart, or the file is not an image (content sniffing, never the name)",
    ),
    (
        "TOO_MANY_FILES",
        422,
        "a batch with more than `RYTHMIQ_MAX_BATCH_FILES` files",
    ),
    (
        "UNKNOWN_PORTAL",
        422,
        "no active portal rule with that slug",
    ),
    (
        "IDEMPOTENCY_KEY_REUSED",
        422,
        "the key was used for a different request",
    ),
    (
        "RATE_LIMITED",
        429,
        "more than `RYTHMIQ_RATE_LIMIT_PER_MINUTE` jobs in a minute (a batch counts each file); `Retry-After` says when the request fits",
    ),
    ("INTERNAL", 500, "our fault; the cause is logged, not shown"),
];

/// The error envelope every error response carries.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": {"code": "NOT_FOUND", "message": "not found"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (the README's error table).
    #[schema(schema_with = code_schema)]
    pub code: &'static str,
    /// What went wrong, for a person; not stable.
    pub message: String,
}

/// `code` as an enumeration of [`CODES`].
fn code_schema() -> utoipa::openapi::Object {
    let mut codes: Vec<&str> = CODES.iter().map(|(code, ..)| *code).collect();
    codes.dedup();
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(codes))
        .examples(["NOT_FOUND"])
        .build()
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of every kind (a new variant must be added here to compile: the match in
    /// `status_and_code` and this list are checked against each other through [`CODES`]).
    fn one_of_each() -> Vec<ApiError> {
        vec![
            ApiError::Unauthorized,
            ApiError::NotFound,
            ApiError::InvalidRequest(String::new()),
            ApiError::MethodNotAllowed,
            ApiError::PayloadMissing(String::new()),
            ApiError::PayloadInvalid(String::new()),
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::UnknownPortal(String::new()),
            ApiError::IdempotencyKeyReused,
            ApiError::LinkInvalid(String::new()),
            ApiError::OutputExpired,
            ApiError::InsufficientCredits,
            ApiError::RateLimited {
                limit: 1,
                retry_after: 1,
            },
            ApiError::TooManyFiles { limit: 1 },
            ApiError::bug("test"),
        ]
    }

    #[test]
    fn every_error_has_a_listed_code_and_every_code_an_error() {
        let sent: Vec<(&str, u16)> = one_of_each()
            .iter()
            .map(|e| {
                let (status, code) = e.status_and_code();
                (code, status.as_u16())
            })
            .collect();
        let listed: Vec<(&str, u16)> = CODES.iter().map(|(c, s, _)| (*c, *s)).collect();
        for pair in &sent {
            assert!(listed.contains(pair), "{pair:?} is missing from CODES");
        }
        for pair in &listed {
            assert!(sent.contains(pair), "{pair:?} in CODES is never sent");
        }
    }

    #[test]
    fn the_readme_error_table_is_codes() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("| code | status | when |")
            .expect("the README has the API error table");
        let rows: Vec<&str> = readme[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        let want: Vec<String> = CODES
            .iter()
            .map(|(code, status, when)| format!("| `{code}` | {status} | {when} |"))
            .collect();
        assert_eq!(rows, want);
    }
}
