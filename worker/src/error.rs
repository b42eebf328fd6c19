//! The worker crate's one error type. Each variant maps to exactly one documented error code;
//! the code decides whether the queue retries, except for database errors: those are retried
//! only when [`rythmiq_shared::db::is_transient`] says trying again may help (see
//! [`JobError::retryable`]).

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
    /// A database call failed (`INTERNAL`; retried only when transient).
    #[error("internal error: database")]
    Database(#[source] sqlx::Error),
    /// Configuration, storage or a query of the shared crate failed (`INTERNAL`).
    #[error("internal error")]
    Shared(#[source] rythmiq_shared::Error),
    /// A fault of ours: what was being done, and the cause when there is one (`INTERNAL`).
    #[error("internal error: {context}")]
    Internal {
        context: &'static str,
        #[source]
        source: Option<BoxError>,
    },
    /// The database's apalis-postgres tables lack a column the queue's statements use: the
    /// schema is not the one of the apalis-postgres version the worker was written for.
    #[error(
        "the queue schema does not match: column apalis.{table}.{column} is missing; \
         this worker was written for apalis-postgres {version}"
    )]
    QueueSchema {
        table: &'static str,
        column: &'static str,
        version: &'static str,
    },
    /// A batch's package could not be built or stored.
    #[error("the batch package could not be made: {0}")]
    Packaging(String),
}

impl JobError {
    /// The error code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            JobError::PayloadInvalid(_) => ErrorCode::PayloadInvalid,
            JobError::FetchFailed(_) => ErrorCode::FetchFailed,
            JobError::FetchTimeout => ErrorCode::FetchTimeout,
            JobError::Pipeline(e) => e.code(),
            JobError::UploadFailed(_) => ErrorCode::UploadFailed,
            JobError::Timeout
            | JobError::Database(_)
            | JobError::Shared(_)
            | JobError::Internal { .. }
            | JobError::QueueSchema { .. } => ErrorCode::Internal,
            JobError::Packaging(_) => ErrorCode::PackagingFailed,
        }
    }
}

/// A boxed cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl JobError {
    /// An [`JobError::Internal`] with its cause.
    pub fn internal(
        context: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        JobError::Internal {
            context,
            source: Some(source.into()),
        }
    }

    /// Whether the queue should try the job again (attempts permitting). A database error in
    /// the causes decides by itself: a transient one (connection lost, serialization failure,
    /// deadlock, shutdown; [`rythmiq_shared::db::is_transient`]) is retried, any other (a
    /// constraint, a missing column or row) would fail the same way on every attempt and fails
    /// the job at once, still as `INTERNAL` (and refunded like every `INTERNAL` failure).
    /// Otherwise the error code decides ([`ErrorCode::retryable`]).
    pub fn retryable(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cause {
            if let Some(db) = e.downcast_ref::<sqlx::Error>() {
                return rythmiq_shared::db::is_transient(db);
            }
            cause = e.source();
        }
        self.code().retryable()
    }

    /// The message recorded on the job: the display, with the causes of the variants that keep
    /// them apart ([`JobError::Database`], [`JobError::Shared`], [`JobError::Internal`]).
    pub fn message(&self) -> String {
        match self {
            JobError::Database(_) | JobError::Shared(_) | JobError::Internal { .. } => {
                rythmiq_shared::error::Chain(self).to_string()
            }
            _ => self.to_string(),
        }
    }
}

impl From<rythmiq_shared::Error> for JobError {
    fn from(e: rythmiq_shared::Error) -> Self {
        JobError::Shared(e)
    }
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::Database(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transient_database_error_is_retried_and_another_is_not() {
        let lost = JobError::Database(sqlx::Error::PoolTimedOut);
        assert_eq!(lost.code(), ErrorCode::Internal);
        assert!(lost.retryable());
        let missing = JobError::Database(sqlx::Error::RowNotFound);
        assert_eq!(missing.code(), ErrorCode::Internal);
        assert!(!missing.retryable());
        // Wrapped in the shared crate's error, the same.
        let shared = JobError::from(rythmiq_shared::Error::Database(sqlx::Error::RowNotFound));
        assert!(!shared.retryable());
        let shared = JobError::from(rythmiq_shared::Error::Database(sqlx::Error::PoolClosed));
        assert!(shared.retryable());
        // Without a database cause, the code decides.
        assert!(JobError::Timeout.retryable());
        assert_eq!(
            JobError::UploadFailed(String::new()).retryable(),
            ErrorCode::UploadFailed.retryable()
        );
    }

    #[test]
    fn the_recorded_message_keeps_the_cause() {
        let e = JobError::Database(sqlx::Error::RowNotFound);
        assert_eq!(
            e.message(),
            format!("internal error: database: {}", sqlx::Error::RowNotFound)
        );
        let e = JobError::internal("OCR text", std::io::Error::other("disk on fire"));
        assert_eq!(e.message(), "internal error: OCR text: disk on fire");
        assert_eq!(JobError::Timeout.message(), JobError::Timeout.to_string());
    }
}
