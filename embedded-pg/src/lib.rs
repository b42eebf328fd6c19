//! A private PostgreSQL cluster started from the server binaries installed on the machine.
//!
//! `rythmiq dev` uses it as its default database and the integration-test harness uses it to get
//! a real Postgres without Docker. The cluster lives in a directory of the caller's choosing,
//! listens only on 127.0.0.1 (plus a unix socket inside the data directory, which is mode 0700)
//! and uses `trust` authentication: acceptable because nothing outside this machine can reach it,
//! but it means any local account can connect, so it is not meant for shared hosts.
//!
//! PostgreSQL refuses to run as root, while our sessions and CI do run as root, so when the
//! effective uid is 0 every server command runs as the unprivileged `postgres` account that
//! Debian's package creates (the child process switches uid and gid before it executes), and
//! the data directory is handed to that account. As any other user, the cluster runs as that
//! user.
//!
//! This is a development and test tool: `rythmiq dev` and the integration tests use it; the
//! production roles connect to a Postgres of their own (`DATABASE_URL`).

mod cluster;
mod error;
mod runner;

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};

use cluster::{
    check_version, find_bin_dir, free_port, initdb, pg_ctl_start, prepare_data_dir, running_port,
    wait_until_ready,
};
pub use error::EmbeddedPgError;
use error::io_context;
use runner::{Runner, ServerAccount, command_failed, run};

/// The database superuser that `initdb` creates; every URL handed out connects as it.
const SUPERUSER: &str = "rythmiq";
/// How long a start may take, from running `pg_ctl start` to a successful `SELECT 1`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Seconds `pg_ctl stop` waits for a fast shutdown before giving up.
const STOP_TIMEOUT_SECS: &str = "60";
/// The server log, kept in the data directory so each cluster carries its own history.
const LOG_FILE: &str = "postgres.log";
/// How many log lines an error message quotes.
const LOG_TAIL_LINES: usize = 40;
/// Where Debian and Ubuntu install one directory per major version.
const DEBIAN_LIB_ROOT: &str = "/usr/lib/postgresql";
/// The longest socket directory that still fits `<dir>/.s.PGSQL.65535` into `sun_path` (108
/// bytes with the terminating NUL); past it the server would refuse to start.
const MAX_SOCKET_DIR_LEN: usize = 107 - "/.s.PGSQL.65535".len();
/// The server binaries a directory must hold to be usable.
const REQUIRED_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// How to start an [`EmbeddedPostgres`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// The cluster directory itself (`PGDATA`). Created and initialised on first use; a directory
    /// that already holds a cluster is started (or reused, if it is running) as it is.
    pub data_dir: PathBuf,
    /// The loopback port to listen on; `None` picks a free one.
    pub port: Option<u16>,
    /// Trade durability for speed (`fsync=off`, `synchronous_commit=off`,
    /// `full_page_writes=off`, `initdb --no-sync`). For tests only: a crash can corrupt the
    /// cluster.
    pub fast: bool,
    /// Leave the server running when the handle is dropped without [`EmbeddedPostgres::stop`],
    /// so a test harness can share one cluster across processes.
    pub keep_running_on_drop: bool,
}

impl EmbeddedOptions {
    /// Options for a durable cluster in `data_dir` on a free port, stopped when dropped.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            port: None,
            fast: false,
            keep_running_on_drop: false,
        }
    }
}

/// A running private PostgreSQL cluster.
///
/// Dropping a handle that started the server stops it (blocking), unless
/// [`EmbeddedOptions::keep_running_on_drop`] was set or the cluster was already running when the
/// handle was created.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    data_dir: PathBuf,
    port: u16,
    runner: Runner,
    /// Whether this handle launched the server, as opposed to finding it running.
    started_here: bool,
    /// Set once the server was stopped, so `Drop` does not try again.
    stopped: bool,
    keep_running_on_drop: bool,
}

impl EmbeddedPostgres {
    /// Start the cluster in `opts.data_dir`, creating it on first use, and wait until it answers
    /// `SELECT 1`. A cluster already running from that directory is reused on its own port.
    pub async fn start(opts: EmbeddedOptions) -> Result<Self, EmbeddedPgError> {
        let data_dir = std::path::absolute(&opts.data_dir).map_err(io_context(format_args!(
            "resolving {}",
            opts.data_dir.display()
        )))?;
        // PATH is the one variable read here: where the server binaries may be installed.
        let path = std::env::var_os("PATH");
        let bin_dir = find_bin_dir(path.clone(), Path::new(DEBIAN_LIB_ROOT))?;
        let account = if nix::unistd::geteuid().is_root() {
            Some(ServerAccount::lookup()?)
        } else {
            None
        };
        let runner = Runner {
            bin_dir,
            path,
            account: account.clone(),
        };

        if let Some(port) = running_port(&data_dir).await? {
            if opts.port.is_some_and(|wanted| wanted != port) {
                tracing::warn!(
                    data_dir = %data_dir.display(),
                    port,
                    "cluster already running on another port than requested; reusing it"
                );
            }
            tracing::info!(data_dir = %data_dir.display(), port, "reusing running PostgreSQL");
            wait_until_ready(&data_dir, port, Instant::now() + START_TIMEOUT).await?;
            return Ok(Self {
                data_dir,
                port,
                runner,
                started_here: false,
                stopped: false,
                keep_running_on_drop: opts.keep_running_on_drop,
            });
        }

        prepare_data_dir(&data_dir, account.as_ref(), &runner).await?;
        if data_dir.join("PG_VERSION").exists() {
            check_version(&data_dir, &runner).await?;
        } else {
            initdb(&data_dir, &runner, opts.fast).await?;
        }

        // A port picked by binding to port 0 can be taken by someone else before the server
        // binds it (parallel tests do exactly this), so retry such collisions with a new port.
        let mut attempts_left = if opts.port.is_some() { 1 } else { 3 };
        let port = loop {
            let port = match opts.port {
                Some(port) => port,
                None => free_port()?,
            };
            match pg_ctl_start(&data_dir, &runner, port, opts.fast).await {
                Ok(()) => break port,
                Err(EmbeddedPgError::StartFailed { log_tail, .. })
                    if attempts_left > 1 && log_tail.contains("Address already in use") =>
                {
                    attempts_left -= 1;
                    tracing::warn!(port, "port taken before PostgreSQL could bind it; retrying");
                }
                Err(err) => return Err(err),
            }
        };

        let mut handle = Self {
            data_dir,
            port,
            runner,
            started_here: true,
            stopped: false,
            keep_running_on_drop: opts.keep_running_on_drop,
        };
        // `pg_ctl -w` already saw the server report ready; this proves the URL we hand out works.
        if let Err(err) =
            wait_until_ready(&handle.data_dir, port, Instant::now() + START_TIMEOUT).await
        {
            // A server that never became usable must not outlive the failed start, whatever
            // the caller asked for on drop.
            handle.keep_running_on_drop = false;
            drop(handle);
            return Err(err);
        }
        tracing::info!(data_dir = %handle.data_dir.display(), port, "PostgreSQL started");
        Ok(handle)
    }

    /// The URL of the `postgres` maintenance database, as the superuser.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of database `db` (a name accepted by [`Self::create_database`]), as the superuser.
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// The loopback TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether the cluster was already running and this handle merely attached to it.
    pub fn reused(&self) -> bool {
        !self.started_here
    }

    /// Whether database `name` exists in the cluster.
    pub async fn database_exists(&self, name: &str) -> Result<bool, EmbeddedPgError> {
        validate_database_name(name)?;
        let mut conn = PgConnection::connect(&self.url()).await?;
        let result = sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
        )
        .bind(name)
        .fetch_one(&mut conn)
        .await;
        // As in create_database: the query's result is what matters, not a clean goodbye.
        if let Err(err) = conn.close().await {
            tracing::debug!(error = %err, "closing admin connection failed");
        }
        Ok(result?)
    }

    /// Create database `name` (`[a-z0-9_]`, at most 63 bytes) unless it already exists.
    pub async fn create_database(&self, name: &str) -> Result<(), EmbeddedPgError> {
        validate_database_name(name)?;
        let mut conn = PgConnection::connect(&self.url()).await?;
        // The name was validated above, so quoting it cannot be escaped.
        let sql = format!("CREATE DATABASE \"{name}\"");
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            match sqlx::query(AssertSqlSafe(sql.clone()))
                .execute(&mut conn)
                .await
            {
                Ok(_) => break Ok(()),
                // duplicate_database: what we wanted already exists (e.g. `rythmiq dev` rerun).
                Err(err) if has_sqlstate(&err, "42P04") => break Ok(()),
                // object_in_use: another session was briefly connected to template1, which
                // CREATE DATABASE copies; it goes away by itself.
                Err(err) if has_sqlstate(&err, "55006") && attempt < 20 => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(err) => break Err(err.into()),
            }
        };
        // Closing is a courtesy to the server; the result of CREATE DATABASE is what matters.
        if let Err(err) = conn.close().await {
            tracing::debug!(error = %err, "closing admin connection failed");
        }
        result
    }

    /// Stop the server (`pg_ctl stop -m fast`), whether or not this handle started it. Stopping a
    /// server that is no longer running is not an error.
    pub async fn stop(mut self) -> Result<(), EmbeddedPgError> {
        // Whatever happens below, Drop must not try a second time.
        self.stopped = true;
        let cmd = self.stop_command();
        let (command, output) = run(cmd).await?;
        if output.status.success() || running_port(&self.data_dir).await?.is_none() {
            tracing::info!(data_dir = %self.data_dir.display(), "PostgreSQL stopped");
            return Ok(());
        }
        Err(command_failed(command, &output))
    }

    fn stop_command(&self) -> StdCommand {
        let mut cmd = self.runner.server_command("pg_ctl");
        cmd.arg("stop").arg("-D").arg(&self.data_dir).args([
            "-m",
            "fast",
            "-w",
            "-t",
            STOP_TIMEOUT_SECS,
        ]);
        cmd
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if self.stopped || !self.started_here || self.keep_running_on_drop {
            return;
        }
        self.stopped = true;
        // Drop cannot await; a blocking pg_ctl is acceptable here and keeps a panicking test from
        // leaking a server.
        let mut cmd = self.stop_command();
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        match cmd.status() {
            Ok(status) if status.success() => {}
            Ok(status) => tracing::warn!(
                data_dir = %self.data_dir.display(), %status, "pg_ctl stop failed on drop"
            ),
            Err(err) => tracing::warn!(
                data_dir = %self.data_dir.display(), error = %err, "could not run pg_ctl on drop"
            ),
        }
    }
}

/// Checks a database name against the `[a-z0-9_]{1,63}` rule (63 bytes is Postgres's limit).
fn validate_database_name(name: &str) -> Result<(), EmbeddedPgError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 63 {
        Some("it is longer than 63 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Some("only a-z, 0-9 and _ are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(EmbeddedPgError::InvalidDatabaseName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Whether `err` is a database error with SQLSTATE `code`.
fn has_sqlstate(err: &sqlx::Error, code: &str) -> bool {
    err.as_database_error()
        .and_then(|db_err| db_err.code())
        .is_some_and(|actual| actual == code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};
    use std::os::unix::fs::PermissionsExt;

    /// A scratch directory the `postgres` account can traverse when the tests run as root
    /// (tempfile leaves the mode to the umask, which may be restrictive).
    fn scratch() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod tempdir");
        dir
    }

    fn test_options(data_dir: PathBuf) -> EmbeddedOptions {
        EmbeddedOptions {
            fast: true,
            ..EmbeddedOptions::new(data_dir)
        }
    }

    async fn select_one(url: &str) -> i32 {
        let mut conn = PgConnection::connect(url).await.expect("connect");
        let (one,): (i32,) = sqlx::query_as("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .expect("SELECT 1");
        one
    }

    #[tokio::test]
    async fn lifecycle_start_reuse_stop_restart() {
        let tmp = scratch();
        let data_dir = tmp.path().join("pg");

        let pg = EmbeddedPostgres::start(test_options(data_dir.clone()))
            .await
            .expect("first start");
        assert!(!pg.reused());
        assert_eq!(
            pg.url(),
            format!("postgres://rythmiq@127.0.0.1:{}/postgres", pg.port())
        );
        assert_eq!(select_one(&pg.url()).await, 1);

        assert!(!pg.database_exists("app_test_1").await.expect("exists?"));
        pg.create_database("app_test_1").await.expect("create db");
        assert!(pg.database_exists("app_test_1").await.expect("exists?"));
        // Creating it again is a no-op, which `rythmiq dev` relies on across runs.
        pg.create_database("app_test_1")
            .await
            .expect("create db again");
        let mut conn = PgConnection::connect(&pg.url_for("app_test_1"))
            .await
            .expect("connect to new db");
        sqlx::query("CREATE TABLE kept (id int primary key, note text)")
            .execute(&mut conn)
            .await
            .expect("create table");
        sqlx::query("INSERT INTO kept VALUES (1, 'still here')")
            .execute(&mut conn)
            .await
            .expect("insert");
        conn.close().await.expect("close");

        // A second start on the running cluster attaches to it on the same port.
        let again = EmbeddedPostgres::start(test_options(data_dir.clone()))
            .await
            .expect("second start");
        assert!(again.reused());
        assert_eq!(again.port(), pg.port());
        assert_eq!(select_one(&again.url()).await, 1);
        // Dropping the reusing handle must not stop the cluster it did not start.
        drop(again);
        assert_eq!(select_one(&pg.url()).await, 1);

        pg.stop().await.expect("stop");
        assert!(!data_dir.join("postmaster.pid").exists());

        // Restart durably (the `rythmiq dev` configuration) and find the data again.
        let pg = EmbeddedPostgres::start(EmbeddedOptions::new(data_dir.clone()))
            .await
            .expect("restart");
        assert!(!pg.reused());
        let mut conn = PgConnection::connect(&pg.url_for("app_test_1"))
            .await
            .expect("reconnect");
        let (note,): (String,) = sqlx::query_as("SELECT note FROM kept WHERE id = 1")
            .fetch_one(&mut conn)
            .await
            .expect("table persisted");
        assert_eq!(note, "still here");
        conn.close().await.expect("close");
        pg.stop().await.expect("final stop");
    }

    #[tokio::test]
    async fn drop_stops_unless_kept() {
        let tmp = scratch();
        let data_dir = tmp.path().join("pg");

        let pg = EmbeddedPostgres::start(test_options(data_dir.clone()))
            .await
            .expect("start");
        drop(pg);
        assert!(
            !data_dir.join("postmaster.pid").exists(),
            "drop should stop the server it started"
        );

        let kept = EmbeddedPostgres::start(EmbeddedOptions {
            keep_running_on_drop: true,
            ..test_options(data_dir.clone())
        })
        .await
        .expect("start kept");
        let port = kept.port();
        drop(kept);
        assert_eq!(
            select_one(&format!("postgres://rythmiq@127.0.0.1:{port}/postgres")).await,
            1
        );

        let reused = EmbeddedPostgres::start(test_options(data_dir.clone()))
            .await
            .expect("reuse kept");
        assert!(reused.reused());
        assert_eq!(reused.port(), port);
        // stop() stops even a cluster the handle merely attached to.
        reused.stop().await.expect("stop");
        assert!(!data_dir.join("postmaster.pid").exists());
    }

    #[tokio::test]
    async fn explicit_port_is_used() {
        let tmp = scratch();
        let port = free_port().expect("free port");
        let pg = EmbeddedPostgres::start(EmbeddedOptions {
            port: Some(port),
            ..test_options(tmp.path().join("pg"))
        })
        .await
        .expect("start");
        assert_eq!(pg.port(), port);
        assert_eq!(select_one(&pg.url()).await, 1);
        pg.stop().await.expect("stop");
    }

    #[tokio::test]
    async fn refuses_a_non_empty_foreign_directory() {
        let tmp = scratch();
        let data_dir = tmp.path().join("pg");
        std::fs::create_dir(&data_dir).expect("mkdir");
        std::fs::write(data_dir.join("somefile"), "x").expect("write");
        let err = EmbeddedPostgres::start(test_options(data_dir))
            .await
            .expect_err("must refuse");
        assert!(
            matches!(err, EmbeddedPgError::DataDirNotEmpty { .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn root_reports_an_untraversable_ancestor() {
        if !nix::unistd::geteuid().is_root() {
            return; // Only root drops to the postgres account.
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        // Owned by root and closed to everyone else, so the postgres account cannot enter it.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod tempdir");
        let data_dir = tmp.path().join("deeper").join("pg");
        let err = EmbeddedPostgres::start(test_options(data_dir))
            .await
            .expect_err("must refuse");
        match err {
            EmbeddedPgError::DirectoryNotTraversable { dir, .. } => assert_eq!(dir, tmp.path()),
            other => panic!("unexpected error: {other}"),
        }
    }

    #[tokio::test]
    async fn occupied_port_fails_with_the_log() {
        let tmp = scratch();
        let squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = squatter.local_addr().expect("addr").port();
        let err = EmbeddedPostgres::start(EmbeddedOptions {
            port: Some(port),
            ..test_options(tmp.path().join("pg"))
        })
        .await
        .expect_err("port is taken");
        let message = err.to_string();
        assert!(
            matches!(err, EmbeddedPgError::StartFailed { .. }),
            "{message}"
        );
        assert!(message.contains("Address already in use"), "{message}");
        assert!(message.contains("postgres.log"), "{message}");
    }

    #[tokio::test]
    async fn stale_pid_file_and_long_path() {
        let tmp = scratch();
        // Too long for a unix socket address: the cluster must still run, over TCP only.
        let data_dir = tmp.path().join("d".repeat(100)).join("pg");
        let pg = EmbeddedPostgres::start(test_options(data_dir.clone()))
            .await
            .expect("start");
        pg.stop().await.expect("stop");

        // A crash leaves postmaster.pid behind; a pid that no longer exists means "not running".
        let stale = "999999999\n/nowhere\n1700000000\n5432\n\n127.0.0.1\n0 0\nready\n";
        std::fs::write(data_dir.join("postmaster.pid"), stale).expect("write pid file");
        let pg = EmbeddedPostgres::start(test_options(data_dir.clone()))
            .await
            .expect("start over a stale pid file");
        assert!(!pg.reused());
        assert_eq!(select_one(&pg.url()).await, 1);
        pg.stop().await.expect("stop");
    }

    #[tokio::test]
    async fn commands_run_as_the_server_account() {
        let runner = Runner {
            bin_dir: PathBuf::new(),
            path: std::env::var_os("PATH"),
            account: nix::unistd::geteuid()
                .is_root()
                .then(|| ServerAccount::lookup().expect("postgres account")),
        };
        // Root runs them as postgres (uid, gid and no supplementary groups); anyone else as
        // themselves.
        let (uid, gid) = match &runner.account {
            Some(account) => (account.uid, account.gid),
            None => (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            ),
        };
        let mut cmd = runner.command("sh");
        cmd.args(["-c", "echo $(id -u) $(id -g) $(id -G)"]);
        let output = runner::run_checked(cmd).await.expect("sh");
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if runner.account.is_some() {
            assert_eq!(
                text,
                format!("{uid} {gid} {gid}"),
                "no supplementary groups"
            );
        } else {
            assert!(text.starts_with(&format!("{uid} {gid} ")), "{text}");
        }
    }

    #[test]
    fn database_names() {
        for ok in ["a", "rythmiq", "test_db_42", &"x".repeat(63)] {
            assert!(validate_database_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Upper",
            "with-dash",
            "quo\"te",
            "sp ace",
            "ünï",
            &"x".repeat(64),
        ] {
            assert!(validate_database_name(bad).is_err(), "{bad}");
        }
    }
}
