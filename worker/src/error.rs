//! The worker crate's one error type. Each variant maps to exactly one of the seeds' error codes,
//! and the code decides whether the queue retries.

use rythmiq_shared::domain::ErrorCode;

/// Why a job attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the job's task payload is unreadable: {0}")]
    PayloadInvalid(String),
    #[error("the upload could not be read from storage: {0}")]
    FetchFailed(String),
    #[error("reading the upload from storage timed out")]
    FetchTimeout,
    /// The CPU pipeline failed (decode, OCR or the portal-rule fit); its code says which.
    #[error(transparent)]
    Pipeline(#[from] rythmiq_pipeline::Error),
    #[error("the output could not be stored: {0}")]
    UploadFailed(String),
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
            JobError::Pipeline(e) => e.code(),
            JobError::UploadFailed(_) => ErrorCode::UploadFailed,
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
