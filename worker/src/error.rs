//! The worker crate's one error type. Each variant maps to exactly one of the seeds' error codes,
//! and the code decides whether the queue retries.

use rythmiq_shared::domain::ErrorCode;

use crate::pipeline::decode::DecodeError;
use crate::pipeline::schema_fit::FitError;

/// Why a job attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the job's task payload is unreadable: {0}")]
    PayloadInvalid(String),
    #[error("the upload could not be read from storage: {0}")]
    FetchFailed(String),
    #[error("reading the upload from storage timed out")]
    FetchTimeout,
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Fit(#[from] FitError),
    #[error("the output could not be stored: {0}")]
    UploadFailed(String),
    #[error("OCR failed: {0}")]
    Ocr(String),
    #[error("OCR ran longer than the job's OCR time limit")]
    OcrTimeout,
    #[error("the attempt ran longer than the job time limit")]
    Timeout,
    #[error("internal error: {0}")]
    Internal(String),
    /// A batch's package could not be built or stored.
    #[error("the batch package could not be made: {0}")]
    Packaging(String),
}

impl JobError {
    /// The seeds' error code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            JobError::PayloadInvalid(_) => ErrorCode::PayloadInvalid,
            JobError::FetchFailed(_) => ErrorCode::FetchFailed,
            JobError::FetchTimeout => ErrorCode::FetchTimeout,
            JobError::Decode(e) => e.code(),
            JobError::Fit(FitError::SizeExceeded { .. }) => ErrorCode::SizeExceeded,
            JobError::Fit(_) => ErrorCode::SchemaFailed,
            JobError::UploadFailed(_) => ErrorCode::UploadFailed,
            JobError::Ocr(_) => ErrorCode::OcrFailed,
            JobError::OcrTimeout => ErrorCode::OcrTimeout,
            JobError::Timeout | JobError::Internal(_) => ErrorCode::Internal,
            JobError::Packaging(_) => ErrorCode::PackagingFailed,
        }
    }
}

impl From<rythmiq_shared::Error> for JobError {
    fn from(e: rythmiq_shared::Error) -> Self {
        JobError::Internal(e.to_string())
    }
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::Internal(format!("database: {e}"))
    }
}
