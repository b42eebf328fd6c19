//! The shared crate's one error type.

/// Errors from configuration, the database, storage and tokens.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("queue storage: {0}")]
    Queue(#[from] apalis_postgres::Error),
    #[error("object storage: {0}")]
    Storage(#[from] object_store::Error),
    #[error("invalid storage key: {0}")]
    InvalidKey(String),
    #[error("token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
    #[error("token refused: {0}")]
    Auth(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for the shared crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
