//! The crate's one error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why the embedded cluster could not be started, used or stopped.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPgError {
    /// No directory with `initdb`, `pg_ctl` and `postgres` was found.
    #[error(
        "PostgreSQL server binaries not found; install them with `apt-get install postgresql` \
         (Debian/Ubuntu) or put the directory holding initdb, pg_ctl and postgres on PATH \
         (looked at: {searched})"
    )]
    BinariesNotFound {
        /// The places that were looked at.
        searched: String,
    },
    /// Running as root and there is no `postgres` account to drop to.
    #[error(
        "running as root, but PostgreSQL refuses to run as root and there is no `postgres` \
         account to run it as; install the `postgresql` package (it creates the account) or run \
         as an unprivileged user"
    )]
    PostgresUserMissing,
    /// An ancestor of the data directory cannot be entered by the `postgres` account.
    #[error(
        "the `postgres` account cannot enter {dir}, which holds the data directory {data_dir}; \
         run `chmod o+x {dir}` or put the cluster somewhere it can reach (e.g. under /var/tmp)"
    )]
    DirectoryNotTraversable {
        /// The directory lacking the search permission.
        dir: PathBuf,
        /// The data directory below it.
        data_dir: PathBuf,
    },
    /// The data directory holds files but no cluster, so `initdb` would refuse it.
    #[error(
        "{data_dir} is not empty and holds no PostgreSQL cluster (no PG_VERSION); choose an \
         empty or new directory"
    )]
    DataDirNotEmpty {
        /// The offending directory.
        data_dir: PathBuf,
    },
    /// The cluster was created by another major version than the binaries found.
    #[error(
        "the cluster in {data_dir} was created by PostgreSQL {cluster} but the binaries in \
         {bin_dir} are version {binaries}; install PostgreSQL {cluster} or delete the directory \
         to start afresh"
    )]
    VersionMismatch {
        /// The cluster directory.
        data_dir: PathBuf,
        /// The major version in its `PG_VERSION`.
        cluster: String,
        /// The major version of the binaries.
        binaries: String,
        /// Where the binaries are.
        bin_dir: PathBuf,
    },
    /// The path cannot be handed to the server's configuration because it is not UTF-8.
    #[error("the path {0:?} is not valid UTF-8")]
    NonUtf8Path(PathBuf),
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A helper command (`initdb`, `pg_ctl`, ...) exited unsuccessfully.
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed.
        output: String,
    },
    /// `pg_ctl start` reported failure.
    #[error(
        "PostgreSQL in {data_dir} failed to start on port {port}: {output}\n\
         --- last lines of {log} ---\n{log_tail}"
    )]
    StartFailed {
        /// The cluster directory.
        data_dir: PathBuf,
        /// The port it was asked to listen on.
        port: u16,
        /// What `pg_ctl` printed.
        output: String,
        /// The server log.
        log: PathBuf,
        /// Its last lines.
        log_tail: String,
    },
    /// The server did not accept connections in time.
    #[error(
        "PostgreSQL in {data_dir} did not accept connections on 127.0.0.1:{port} within {}s \
         (last error: {last_error})\n--- last lines of {log} ---\n{log_tail}",
        crate::START_TIMEOUT.as_secs()
    )]
    NotReady {
        /// The cluster directory.
        data_dir: PathBuf,
        /// The port that was polled.
        port: u16,
        /// The last connection error.
        last_error: String,
        /// The server log.
        log: PathBuf,
        /// Its last lines.
        log_tail: String,
    },
    /// A database name outside `[a-z0-9_]{1,63}`.
    #[error("invalid database name {name:?}: {reason}")]
    InvalidDatabaseName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A query against the cluster failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Shorthand for wrapping an [`io::Error`] with what was being done.
pub(crate) fn io_context(context: impl fmt::Display) -> impl FnOnce(io::Error) -> EmbeddedPgError {
    let context = context.to_string();
    move |source| EmbeddedPgError::Io { context, source }
}
