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
    /// A file of `portal-rules/` that is not a rule's TOML.
    #[error("portal-rules/{file}: {source}")]
    PortalRuleFile {
        file: String,
        #[source]
        source: toml::de::Error,
    },
    /// A file of `portal-rules/` whose values no rule may have.
    #[error("portal-rules/{file}: {reason}")]
    PortalRuleInvalid { file: String, reason: String },
}

impl Error {
    /// Whether trying again may help: a transient database error ([`crate::db::is_transient`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Database(e) if crate::db::is_transient(e))
    }
}

/// Displays an error with its whole chain of causes, `outer: cause: root`, for logs and for the
/// messages recorded on failed jobs.
///
/// A cause whose text the previous level already shows is not repeated: many error types (this
/// crate's among them, and sqlx's) print their cause inside their own message *and* return it
/// from `source()`.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            let text = e.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
            }
            shown = text;
            cause = e.source();
        }
        Ok(())
    }
}

/// Result alias for the shared crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("loading the rule")]
        Quiet(#[source] Error),
    }

    #[test]
    fn the_chain_shows_every_cause_once() {
        let io = std::io::Error::other("disk gone");
        // The shared error prints its cause already: it is not repeated.
        assert_eq!(
            Chain(&Error::Io(std::io::Error::other("disk gone"))).to_string(),
            "i/o: disk gone"
        );
        assert_eq!(
            Chain(&Outer::Quiet(Error::Io(io))).to_string(),
            "loading the rule: i/o: disk gone"
        );
    }

    #[test]
    fn only_transient_database_errors_are_transient() {
        assert!(Error::Database(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!Error::Database(sqlx::Error::RowNotFound).is_transient());
        assert!(!Error::Config("x".into()).is_transient());
    }
}
