//! The cluster on disk and its server: finding the binaries, creating and checking the data
//! directory, `initdb`, `pg_ctl start` and waiting until the server answers.

use std::ffi::OsString;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::error::{EmbeddedPgError, io_context};
use crate::runner::{Runner, ServerAccount, describe, output_text, run, run_checked};
use crate::{
    LOG_FILE, LOG_TAIL_LINES, MAX_SOCKET_DIR_LEN, REQUIRED_BINARIES, START_TIMEOUT, SUPERUSER,
};

pub(crate) fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

pub(crate) fn has_server_binaries(dir: &Path) -> bool {
    REQUIRED_BINARIES
        .iter()
        .all(|binary| is_executable(&dir.join(binary)))
}

/// Picks the directory with the server binaries: that of `pg_ctl` on `path_var` first (its
/// symlink resolved, since e.g. /usr/local/bin may hold only a link to pg_ctl), then the highest
/// version under `lib_root/*/bin`.
pub(crate) fn find_bin_dir(
    path_var: Option<OsString>,
    lib_root: &Path,
) -> Result<PathBuf, EmbeddedPgError> {
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
pub(crate) fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The major version from `pg_ctl --version` output, e.g. `15` from
/// `pg_ctl (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`, or `9.6` for releases before 10.
pub(crate) fn parse_major_version(text: &str) -> Option<String> {
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

pub(crate) async fn check_version(data_dir: &Path, runner: &Runner) -> Result<(), EmbeddedPgError> {
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
pub(crate) struct PidFile {
    pid: u32,
    port: u16,
    /// `starting`, `ready`, `stopping` or `standby`; absent early in startup.
    status: Option<String>,
}

/// Parses `postmaster.pid`: line 1 the pid, line 4 the port, line 8 the status.
pub(crate) fn parse_pid_file(text: &str) -> Option<PidFile> {
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
pub(crate) fn postgres_alive(pid: u32) -> bool {
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
pub(crate) async fn running_port(data_dir: &Path) -> Result<Option<u16>, EmbeddedPgError> {
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
pub(crate) async fn prepare_data_dir(
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
            let (dir, uid, gid) = (data_dir.to_path_buf(), account.uid, account.gid);
            tokio::task::spawn_blocking(move || chown_tree(&dir, uid, gid))
                .await
                .map_err(|e| io_context("handing the data directory to postgres")(e.into()))?
                .map_err(io_context(format_args!(
                    "handing {} to the `postgres` account",
                    data_dir.display()
                )))?;
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

/// Gives `path` and everything below it to `uid:gid`, like `chown -R`: symbolic links are
/// changed themselves, never followed.
fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Fails with the first directory the server's account cannot enter. One `test` on the data
/// directory covers the usual case; the ancestors are only walked to name the culprit.
pub(crate) async fn check_reachable(
    data_dir: &Path,
    runner: &Runner,
) -> Result<(), EmbeddedPgError> {
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

pub(crate) async fn initdb(
    data_dir: &Path,
    runner: &Runner,
    fast: bool,
) -> Result<(), EmbeddedPgError> {
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
pub(crate) fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The `-o` options for the server.
pub(crate) fn server_options(
    data_dir: &Path,
    port: u16,
    fast: bool,
) -> Result<String, EmbeddedPgError> {
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

pub(crate) async fn pg_ctl_start(
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
pub(crate) fn log_tail(log: &Path, offset: u64) -> String {
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
pub(crate) fn free_port() -> Result<u16, EmbeddedPgError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(io_context("finding a free loopback port"))?;
    let port = listener
        .local_addr()
        .map_err(io_context("finding a free loopback port"))?
        .port();
    Ok(port)
}

/// Polls until a TCP connect and a `SELECT 1` through the URL we hand out both succeed.
pub(crate) async fn wait_until_ready(
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
    fn version_parsing() {
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
        let tmp = tempfile::tempdir().expect("tempdir");
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
