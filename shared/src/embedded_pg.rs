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
//! Debian's package creates (through `runuser`, or `setpriv` where `runuser` is missing).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output, Stdio};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};

/// The database superuser that `initdb` creates; every URL handed out connects as it.
const SUPERUSER: &str = "rythmiq";
/// The unprivileged OS account the server runs as when we are root.
const OS_USER: &str = "postgres";
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
    /// Running as root and neither `runuser` nor `setpriv` is installed.
    #[error(
        "running as root, but neither `runuser` nor `setpriv` was found to run PostgreSQL as the \
         `postgres` account; install util-linux or run as an unprivileged user"
    )]
    NoPrivilegeDropTool,
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
    /// A helper command (`initdb`, `pg_ctl`, `chown`, ...) exited unsuccessfully.
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
        START_TIMEOUT.as_secs()
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
fn io_context(context: impl fmt::Display) -> impl FnOnce(io::Error) -> EmbeddedPgError {
    let context = context.to_string();
    move |source| EmbeddedPgError::Io { context, source }
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
        let bin_dir = find_bin_dir(std::env::var_os("PATH"), Path::new(DEBIAN_LIB_ROOT))?;
        let account = if effective_uid()? == 0 {
            Some(ServerAccount::lookup().await?)
        } else {
            None
        };
        let runner = Runner {
            bin_dir,
            drop_to: account.as_ref().map(|a| a.tool.clone()),
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

/// How commands are run as the `postgres` account when we are root.
#[derive(Debug, Clone)]
enum DropTool {
    /// `runuser -u postgres -- CMD`.
    Runuser(PathBuf),
    /// `setpriv --reuid UID --regid GID --init-groups -- CMD`.
    Setpriv {
        setpriv: PathBuf,
        uid: u32,
        gid: u32,
    },
}

/// The `postgres` account the server runs as when we are root.
#[derive(Debug, Clone)]
struct ServerAccount {
    uid: u32,
    gid: u32,
    tool: DropTool,
}

impl ServerAccount {
    async fn lookup() -> Result<Self, EmbeddedPgError> {
        // `id` goes through NSS, so accounts from LDAP and the like are found as well.
        let uid = id_number("-u").await?;
        let gid = id_number("-g").await?;
        let tool = if let Some(runuser) = find_program("runuser") {
            DropTool::Runuser(runuser)
        } else if let Some(setpriv) = find_program("setpriv") {
            DropTool::Setpriv { setpriv, uid, gid }
        } else {
            return Err(EmbeddedPgError::NoPrivilegeDropTool);
        };
        Ok(Self { uid, gid, tool })
    }
}

async fn id_number(flag: &str) -> Result<u32, EmbeddedPgError> {
    let mut cmd = StdCommand::new("id");
    cmd.args([flag, OS_USER]);
    let (_, output) = run(cmd).await?;
    if !output.status.success() {
        return Err(EmbeddedPgError::PostgresUserMissing);
    }
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| EmbeddedPgError::PostgresUserMissing)
}

/// Builds the commands that touch the cluster, as the right user and with a clean environment.
#[derive(Debug, Clone)]
struct Runner {
    bin_dir: PathBuf,
    drop_to: Option<DropTool>,
}

impl Runner {
    /// A command for one of the server binaries.
    fn server_command(&self, binary: &str) -> StdCommand {
        self.command(self.bin_dir.join(binary))
    }

    /// A command for `program`, run as the server's account.
    fn command(&self, program: impl AsRef<OsStr>) -> StdCommand {
        let mut cmd = match &self.drop_to {
            None => StdCommand::new(program),
            Some(DropTool::Runuser(runuser)) => {
                let mut cmd = StdCommand::new(runuser);
                cmd.args(["-u", OS_USER, "--"]).arg(program);
                cmd
            }
            Some(DropTool::Setpriv { setpriv, uid, gid }) => {
                let mut cmd = StdCommand::new(setpriv);
                cmd.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .args(["--init-groups", "--"])
                    .arg(program);
                cmd
            }
        };
        // PGDATA, PGPORT, PGHOST, PGOPTIONS and friends from the caller's shell would override or
        // confuse what we pass explicitly, so none of them reach pg_ctl, initdb or the server.
        for (name, _) in std::env::vars_os() {
            if name.as_encoded_bytes().starts_with(b"PG") {
                cmd.env_remove(name);
            }
        }
        // The caller's working directory (often /root) may be closed to the `postgres` account,
        // and initdb and the server complain when they cannot return to it.
        cmd.current_dir("/");
        cmd.stdin(Stdio::null());
        cmd
    }
}

/// Runs `cmd` to completion, capturing its output; returns its printable command line too.
async fn run(cmd: StdCommand) -> Result<(String, Output), EmbeddedPgError> {
    let command = describe(&cmd);
    let output = tokio::process::Command::from(cmd)
        .output()
        .await
        .map_err(io_context(format_args!("running `{command}`")))?;
    Ok((command, output))
}

/// Like [`run`], failing unless the command exits successfully.
async fn run_checked(cmd: StdCommand) -> Result<Output, EmbeddedPgError> {
    let (command, output) = run(cmd).await?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(command_failed(command, &output))
    }
}

fn command_failed(command: String, output: &Output) -> EmbeddedPgError {
    EmbeddedPgError::CommandFailed {
        command,
        status: output.status.to_string(),
        output: output_text(output),
    }
}

fn output_text(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = format!("{}\n{}", stdout.trim(), stderr.trim());
    let text = text.trim();
    if text.is_empty() {
        "(no output)".to_owned()
    } else {
        text.to_owned()
    }
}

fn describe(cmd: &StdCommand) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The effective uid, read from `/proc/self/status` because `unsafe_code` (and so `geteuid`) is
/// forbidden here; `id -u` covers systems without `/proc`.
fn effective_uid() -> Result<u32, EmbeddedPgError> {
    if let Some(uid) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| parse_effective_uid(&status))
    {
        return Ok(uid);
    }
    let output = StdCommand::new("id")
        .arg("-u")
        .output()
        .map_err(io_context("running `id -u` to find the effective uid"))?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| EmbeddedPgError::Io {
            context: "parsing the output of `id -u`".to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidData, output_text(&output)),
        })
}

/// The effective uid from a `/proc/PID/status` text (`Uid: real effective saved fs`).
fn parse_effective_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
}

/// Finds `name` on PATH or in the sbin directories, which root's PATH sometimes lacks.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn has_server_binaries(dir: &Path) -> bool {
    REQUIRED_BINARIES
        .iter()
        .all(|binary| is_executable(&dir.join(binary)))
}

/// Picks the directory with the server binaries: that of `pg_ctl` on `path_var` first (its
/// symlink resolved, since e.g. /usr/local/bin may hold only a link to pg_ctl), then the highest
/// version under `lib_root/*/bin`.
fn find_bin_dir(path_var: Option<OsString>, lib_root: &Path) -> Result<PathBuf, EmbeddedPgError> {
    if let Some(pg_ctl) = path_var
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("pg_ctl"))
        .find(|candidate| is_executable(candidate))
    {
        // pg_ctl itself finds `postgres` next to its resolved path, so prefer that directory.
        let resolved = std::fs::canonicalize(&pg_ctl)
            .ok()
            .and_then(|real| real.parent().map(Path::to_path_buf));
        let literal = pg_ctl.parent().map(Path::to_path_buf);
        if let Some(dir) = resolved
            .into_iter()
            .chain(literal)
            .find(|dir| has_server_binaries(dir))
        {
            return Ok(dir);
        }
        tracing::debug!(
            pg_ctl = %pg_ctl.display(),
            "pg_ctl on PATH lacks initdb or postgres beside it"
        );
    }

    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(lib_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = parse_version(&entry.file_name().to_string_lossy())?;
            let bin = entry.path().join("bin");
            has_server_binaries(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => Err(EmbeddedPgError::BinariesNotFound {
            searched: format!("pg_ctl on PATH, {}/*/bin", lib_root.display()),
        }),
    }
}

/// Parses a version directory name such as `15` or `9.6` into comparable numbers.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The major version from `pg_ctl --version` output, e.g. `15` from
/// `pg_ctl (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`, or `9.6` for releases before 10.
fn parse_major_version(text: &str) -> Option<String> {
    let version = text
        .split("(PostgreSQL)")
        .nth(1)?
        .split_whitespace()
        .next()?;
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let first = parts.next().filter(|p| !p.is_empty())?;
    if first.parse::<u32>().ok()? >= 10 {
        Some(first.to_owned())
    } else {
        Some(format!("{first}.{}", parts.next()?))
    }
}

async fn check_version(data_dir: &Path, runner: &Runner) -> Result<(), EmbeddedPgError> {
    let version_file = data_dir.join("PG_VERSION");
    let cluster = std::fs::read_to_string(&version_file)
        .map_err(io_context(format_args!(
            "reading {}",
            version_file.display()
        )))?
        .trim()
        .to_owned();
    let mut cmd = runner.server_command("pg_ctl");
    cmd.arg("--version");
    let output = run_checked(cmd).await?;
    let text = String::from_utf8_lossy(&output.stdout);
    // An unparsable version string is no reason to refuse; the server does its own check.
    match parse_major_version(&text) {
        Some(binaries) if binaries != cluster => Err(EmbeddedPgError::VersionMismatch {
            data_dir: data_dir.to_path_buf(),
            cluster,
            binaries,
            bin_dir: runner.bin_dir.clone(),
        }),
        _ => Ok(()),
    }
}

/// What `postmaster.pid` says about a server.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PidFile {
    pid: u32,
    port: u16,
    /// `starting`, `ready`, `stopping` or `standby`; absent early in startup.
    status: Option<String>,
}

/// Parses `postmaster.pid`: line 1 the pid, line 4 the port, line 8 the status.
fn parse_pid_file(text: &str) -> Option<PidFile> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    Some(PidFile {
        pid: lines.first()?.parse().ok()?,
        port: lines.get(3)?.parse().ok()?,
        status: lines
            .get(7)
            .filter(|s| !s.is_empty())
            .map(|s| (*s).to_owned()),
    })
}

/// Whether `pid` is a live postgres process. The name check guards against a stale pid file
/// whose pid now belongs to something else (common after a container restart).
fn postgres_alive(pid: u32) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if !proc_dir.exists() {
        return false;
    }
    match std::fs::read_to_string(proc_dir.join("comm")) {
        Ok(comm) => comm.trim() == "postgres" || comm.trim() == "postmaster",
        // Unreadable (hidepid): trust the existence check.
        Err(_) => true,
    }
}

/// The port of the server running from `data_dir`, if any. Waits out a server that is shutting
/// down, since reusing it would fail moments later.
async fn running_port(data_dir: &Path) -> Result<Option<u16>, EmbeddedPgError> {
    let pid_path = data_dir.join("postmaster.pid");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let text = match std::fs::read_to_string(&pid_path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(io_context(format_args!("reading {}", pid_path.display()))(
                    err,
                ));
            }
        };
        let Some(pid_file) = parse_pid_file(&text) else {
            return Ok(None);
        };
        if !postgres_alive(pid_file.pid) {
            return Ok(None);
        }
        if pid_file.status.as_deref() != Some("stopping") || Instant::now() >= deadline {
            return Ok(Some(pid_file.port));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates the data directory with the ownership and mode the server insists on, and checks the
/// `postgres` account can reach it when we are root.
async fn prepare_data_dir(
    data_dir: &Path,
    account: Option<&ServerAccount>,
    runner: &Runner,
) -> Result<(), EmbeddedPgError> {
    // These are a handful of quick metadata calls; not worth a spawn_blocking.
    std::fs::create_dir_all(data_dir)
        .map_err(io_context(format_args!("creating {}", data_dir.display())))?;
    if let Some(account) = account {
        let meta = std::fs::metadata(data_dir).map_err(io_context(format_args!(
            "inspecting {}",
            data_dir.display()
        )))?;
        // Only walk the tree when needed: a big dev cluster is already owned by postgres.
        if meta.uid() != account.uid {
            let mut chown = StdCommand::new("chown");
            chown
                .arg("-R")
                .arg(format!("{}:{}", account.uid, account.gid))
                .arg(data_dir);
            run_checked(chown).await?;
        }
    }
    // The server refuses a data directory that others can read (0700, or 0750 with group access).
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)).map_err(
        io_context(format_args!("setting the mode of {}", data_dir.display())),
    )?;

    if account.is_some() {
        check_reachable(data_dir, runner).await?;
    }

    let has_cluster = data_dir.join("PG_VERSION").exists();
    let is_empty = std::fs::read_dir(data_dir)
        .map_err(io_context(format_args!("listing {}", data_dir.display())))?
        .next()
        .is_none();
    if !has_cluster && !is_empty {
        return Err(EmbeddedPgError::DataDirNotEmpty {
            data_dir: data_dir.to_path_buf(),
        });
    }
    Ok(())
}

/// Fails with the first directory the server's account cannot enter. One `test` on the data
/// directory covers the usual case; the ancestors are only walked to name the culprit.
async fn check_reachable(data_dir: &Path, runner: &Runner) -> Result<(), EmbeddedPgError> {
    let can_enter = |dir: &Path| {
        let mut cmd = runner.command("test");
        cmd.arg("-x").arg(dir);
        async move { run(cmd).await.map(|(_, output)| output.status.success()) }
    };
    if can_enter(data_dir).await? {
        return Ok(());
    }
    let mut ancestors: Vec<&Path> = data_dir.ancestors().collect();
    ancestors.reverse();
    for dir in ancestors {
        if !can_enter(dir).await? {
            return Err(EmbeddedPgError::DirectoryNotTraversable {
                dir: dir.to_path_buf(),
                data_dir: data_dir.to_path_buf(),
            });
        }
    }
    // Every directory passes on its own yet the whole did not: report the data directory.
    Err(EmbeddedPgError::DirectoryNotTraversable {
        dir: data_dir.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
    })
}

async fn initdb(data_dir: &Path, runner: &Runner, fast: bool) -> Result<(), EmbeddedPgError> {
    tracing::info!(data_dir = %data_dir.display(), "initialising PostgreSQL cluster");
    let mut cmd = runner.server_command("initdb");
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-U", SUPERUSER])
        // Trust is safe enough only because the server listens on loopback and a 0700 socket dir.
        .arg("--auth=trust")
        .arg("--encoding=UTF8")
        // The C locale always exists, unlike whatever LANG names, and sorts the same everywhere.
        .arg("--locale=C");
    if fast {
        cmd.arg("--no-sync");
    }
    run_checked(cmd).await?;
    Ok(())
}

/// Quotes `value` for the `sh -c` through which pg_ctl launches the server.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The `-o` options for the server.
fn server_options(data_dir: &Path, port: u16, fast: bool) -> Result<String, EmbeddedPgError> {
    let dir = data_dir
        .to_str()
        .ok_or_else(|| EmbeddedPgError::NonUtf8Path(data_dir.to_path_buf()))?;
    // The socket lives in the data directory itself: mode 0700, so only the server's account
    // (and root) can use it. A path too long for a socket address, or one the comma-separated
    // setting cannot express, gets no socket rather than a failed start; TCP is what we use.
    let socket_dir = if dir.len() <= MAX_SOCKET_DIR_LEN && !dir.contains([',', '"']) {
        dir
    } else {
        tracing::warn!(
            data_dir = dir,
            "data directory path unusable for a unix socket; TCP only"
        );
        ""
    };
    let mut options = format!(
        "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={}",
        shell_quote(socket_dir)
    );
    if fast {
        options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
    }
    Ok(options)
}

async fn pg_ctl_start(
    data_dir: &Path,
    runner: &Runner,
    port: u16,
    fast: bool,
) -> Result<(), EmbeddedPgError> {
    let log = data_dir.join(LOG_FILE);
    // Quote only what this attempt logged, not an earlier run's complaints.
    let log_offset = std::fs::metadata(&log).map_or(0, |meta| meta.len());
    let mut cmd = runner.server_command("pg_ctl");
    cmd.arg("start")
        .arg("-D")
        .arg(data_dir)
        .arg("-l")
        .arg(&log)
        .arg("-w")
        .arg("-t")
        .arg(START_TIMEOUT.as_secs().to_string())
        .arg("-o")
        .arg(server_options(data_dir, port, fast)?);
    tracing::debug!(command = %describe(&cmd), "starting PostgreSQL");
    let (_, output) = run(cmd).await?;
    if output.status.success() {
        return Ok(());
    }
    // pg_ctl gives up after its timeout but leaves a slow server running; don't leak it.
    if running_port(data_dir).await?.is_some() {
        let mut stop = runner.server_command("pg_ctl");
        stop.arg("stop")
            .arg("-D")
            .arg(data_dir)
            .args(["-m", "immediate"]);
        if let Err(err) = run_checked(stop).await {
            tracing::warn!(error = %err, "could not stop the server that failed to start");
        }
    }
    Err(EmbeddedPgError::StartFailed {
        data_dir: data_dir.to_path_buf(),
        port,
        output: output_text(&output),
        log_tail: log_tail(&log, log_offset),
        log,
    })
}

/// The last lines the log gained after byte `offset`; bounded so a huge log is not read whole.
fn log_tail(log: &Path, offset: u64) -> String {
    const MAX_BYTES: u64 = 16 * 1024;
    let read = || -> io::Result<String> {
        let mut file = std::fs::File::open(log)?;
        let len = file.metadata()?.len();
        let start = offset.min(len).max(len.saturating_sub(MAX_BYTES));
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            if tail.trim().is_empty() {
                "(log is empty)".to_owned()
            } else {
                tail
            }
        }
        Err(err) => format!("(could not read {}: {err})", log.display()),
    }
}

/// A port nobody listens on right now; the OS picks it so parallel callers rarely collide.
fn free_port() -> Result<u16, EmbeddedPgError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(io_context("finding a free loopback port"))?;
    let port = listener
        .local_addr()
        .map_err(io_context("finding a free loopback port"))?
        .port();
    Ok(port)
}

/// Polls until a TCP connect and a `SELECT 1` through the URL we hand out both succeed.
async fn wait_until_ready(
    data_dir: &Path,
    port: u16,
    deadline: Instant,
) -> Result<(), EmbeddedPgError> {
    let url = format!("postgres://{SUPERUSER}@127.0.0.1:{port}/postgres");
    let last_error = loop {
        let attempt = async {
            tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .await
                .map_err(|err| format!("TCP connect: {err}"))?;
            let mut conn = PgConnection::connect(&url)
                .await
                .map_err(|err| err.to_string())?;
            sqlx::query("SELECT 1")
                .execute(&mut conn)
                .await
                .map_err(|err| err.to_string())?;
            conn.close().await.map_err(|err| err.to_string())
        };
        let error = match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(err)) => err,
            Err(_) => "connection attempt timed out".to_owned(),
        };
        if Instant::now() >= deadline {
            break error;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log = data_dir.join(LOG_FILE);
    Err(EmbeddedPgError::NotReady {
        data_dir: data_dir.to_path_buf(),
        port,
        last_error,
        log_tail: log_tail(&log, 0),
        log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        if effective_uid().expect("uid") != 0 {
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
    async fn privilege_drop_tools_run_as_postgres() {
        if effective_uid().expect("uid") != 0 {
            return; // Dropping privileges needs root.
        }
        let account = ServerAccount::lookup().await.expect("postgres account");
        let mut tools = vec![account.tool.clone()];
        if let Some(setpriv) = find_program("setpriv") {
            tools.push(DropTool::Setpriv {
                setpriv,
                uid: account.uid,
                gid: account.gid,
            });
        }
        for tool in tools {
            let runner = Runner {
                bin_dir: PathBuf::new(),
                drop_to: Some(tool.clone()),
            };
            let mut cmd = runner.command("id");
            cmd.arg("-u");
            let output = run_checked(cmd).await.expect("id -u");
            let uid = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            assert_eq!(uid, account.uid.to_string(), "{tool:?}");
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

    #[test]
    fn pid_file_parsing() {
        let text =
            "4242\n/tmp/x/pg\n1700000000\n54321\n/tmp/x/pg\n127.0.0.1\n  1234 5678\nready   \n";
        assert_eq!(
            parse_pid_file(text),
            Some(PidFile {
                pid: 4242,
                port: 54321,
                status: Some("ready".to_owned()),
            })
        );
        assert_eq!(
            parse_pid_file("4242\n/tmp/x\n1700000000\n5432\n").map(|p| p.status),
            Some(None)
        );
        assert_eq!(parse_pid_file("4242\n"), None);
        assert_eq!(parse_pid_file(""), None);
    }

    #[test]
    fn uid_and_version_parsing() {
        let status = "Name:\tcat\nUid:\t1000\t0\t0\t0\nGid:\t100\t100\t100\t100\n";
        assert_eq!(parse_effective_uid(status), Some(0));
        assert_eq!(parse_effective_uid("Name:\tcat\n"), None);
        assert_eq!(
            parse_major_version("pg_ctl (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n").as_deref(),
            Some("15")
        );
        assert_eq!(
            parse_major_version("pg_ctl (PostgreSQL) 17beta1\n").as_deref(),
            Some("17")
        );
        assert_eq!(
            parse_major_version("pg_ctl (PostgreSQL) 9.6.24\n").as_deref(),
            Some("9.6")
        );
        assert_eq!(parse_major_version("something else"), None);
    }

    #[test]
    fn server_options_quote_and_fall_back() {
        let opts = server_options(Path::new("/tmp/it's here/pg"), 5555, true).expect("options");
        assert_eq!(
            opts,
            "-c listen_addresses=127.0.0.1 -c port=5555 \
             -c unix_socket_directories='/tmp/it'\\''s here/pg' \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        );
        let long = format!("/tmp/{}", "d".repeat(120));
        let opts = server_options(Path::new(&long), 5555, false).expect("options");
        assert!(opts.ends_with("unix_socket_directories=''"), "{opts}");
    }

    #[test]
    fn bin_dir_search() {
        let tmp = scratch();
        let make = |dir: &Path, names: &[&str]| {
            std::fs::create_dir_all(dir).expect("mkdir");
            for name in names {
                let path = dir.join(name);
                std::fs::write(&path, "#!/bin/sh\n").expect("write");
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
        };
        let lib = tmp.path().join("lib");
        make(&lib.join("9.6/bin"), &REQUIRED_BINARIES);
        make(&lib.join("15/bin"), &REQUIRED_BINARIES);
        make(&lib.join("16/bin"), &REQUIRED_BINARIES);
        make(&lib.join("17/bin"), &["pg_ctl"]); // incomplete: skipped
        assert_eq!(find_bin_dir(None, &lib).expect("lib"), lib.join("16/bin"));

        // pg_ctl on PATH wins, through a symlink to the real directory.
        let real = tmp.path().join("real");
        make(&real, &REQUIRED_BINARIES);
        let links = tmp.path().join("links");
        std::fs::create_dir_all(&links).expect("mkdir");
        std::os::unix::fs::symlink(real.join("pg_ctl"), links.join("pg_ctl")).expect("symlink");
        let path = std::env::join_paths([links.clone()]).expect("join");
        assert_eq!(
            find_bin_dir(Some(path), &lib).expect("path"),
            real.canonicalize().expect("canonicalize")
        );

        // Only pg_ctl on PATH with nothing beside it: fall back to the lib directories.
        let lone = tmp.path().join("lone");
        make(&lone, &["pg_ctl"]);
        let path = std::env::join_paths([lone]).expect("join");
        assert_eq!(
            find_bin_dir(Some(path), &lib).expect("fallback"),
            lib.join("16/bin")
        );

        let err = find_bin_dir(None, &tmp.path().join("nothing")).expect_err("none");
        assert!(
            err.to_string().contains("apt-get install postgresql"),
            "{err}"
        );
    }
}
