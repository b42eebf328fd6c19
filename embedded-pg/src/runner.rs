//! Running the server's commands: as the `postgres` account when we are root, with an
//! environment of our choosing.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::{Command as StdCommand, Output, Stdio};

use crate::error::{EmbeddedPgError, io_context};

/// The unprivileged OS account the server runs as when we are root.
pub(crate) const OS_USER: &str = "postgres";

/// The `postgres` account the server runs as when we are root.
#[derive(Debug, Clone)]
pub(crate) struct ServerAccount {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    home: PathBuf,
}

impl ServerAccount {
    /// Looks the account up through the C library's `getpwnam_r`, so accounts from NSS sources
    /// (LDAP and the like) are found as well as those in /etc/passwd.
    pub(crate) fn lookup() -> Result<Self, EmbeddedPgError> {
        match nix::unistd::User::from_name(OS_USER) {
            Ok(Some(user)) => Ok(Self {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
                home: user.dir,
            }),
            Ok(None) => Err(EmbeddedPgError::PostgresUserMissing),
            Err(errno) => Err(io_context(format_args!(
                "looking up the `{OS_USER}` account"
            ))(errno.into())),
        }
    }
}

/// Builds the commands that touch the cluster, as the right user and with a clean environment.
#[derive(Debug, Clone)]
pub(crate) struct Runner {
    pub(crate) bin_dir: PathBuf,
    /// The caller's `PATH`, passed on to the commands.
    pub(crate) path: Option<OsString>,
    /// The account to switch to (when we are root).
    pub(crate) account: Option<ServerAccount>,
}

impl Runner {
    /// A command for one of the server binaries.
    pub(crate) fn server_command(&self, binary: &str) -> StdCommand {
        self.command(self.bin_dir.join(binary))
    }

    /// A command for `program`, run as the server's account.
    pub(crate) fn command(&self, program: impl AsRef<OsStr>) -> StdCommand {
        use std::os::unix::process::CommandExt;
        let mut cmd = StdCommand::new(program);
        // PGDATA, PGPORT, PGHOST, PGOPTIONS and friends from the caller's shell would override or
        // confuse what we pass explicitly, and LANG would translate the output we parse, so the
        // commands get an environment of our own: PATH, plus the account's identity below.
        cmd.env_clear();
        if let Some(path) = &self.path {
            cmd.env("PATH", path);
        }
        if let Some(account) = &self.account {
            // The child sets its groups, gid and uid before it executes `program`. std clears
            // the supplementary groups when it changes the uid from root; the server needs none
            // of the account's (they matter only for reading an SSL key, which we do not use).
            cmd.uid(account.uid)
                .gid(account.gid)
                .env("HOME", &account.home)
                .env("USER", OS_USER)
                .env("LOGNAME", OS_USER);
        }
        // The caller's working directory (often /root) may be closed to the `postgres` account,
        // and initdb and the server complain when they cannot return to it.
        cmd.current_dir("/");
        cmd.stdin(Stdio::null());
        cmd
    }
}

/// Runs `cmd` to completion, capturing its output; returns its printable command line too.
pub(crate) async fn run(cmd: StdCommand) -> Result<(String, Output), EmbeddedPgError> {
    let command = describe(&cmd);
    let output = tokio::process::Command::from(cmd)
        .output()
        .await
        .map_err(io_context(format_args!("running `{command}`")))?;
    Ok((command, output))
}

/// Like [`run`], failing unless the command exits successfully.
pub(crate) async fn run_checked(cmd: StdCommand) -> Result<Output, EmbeddedPgError> {
    let (command, output) = run(cmd).await?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(command_failed(command, &output))
    }
}

pub(crate) fn command_failed(command: String, output: &Output) -> EmbeddedPgError {
    EmbeddedPgError::CommandFailed {
        command,
        status: output.status.to_string(),
        output: output_text(output),
    }
}

pub(crate) fn output_text(output: &Output) -> String {
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

pub(crate) fn describe(cmd: &StdCommand) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}
