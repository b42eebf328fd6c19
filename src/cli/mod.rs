//! Subcommands. `dev` is the embedded default; `api`, `worker` and `migrate` are for production;
//! `token` and `submit` are for clients.

mod check;
mod dev;
mod ocr;
mod process;
#[cfg(test)]
mod readme_table;
mod serve;
mod submit;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use rythmiq_shared::config::{CliLogArgs, JwtSecretArgs};
use rythmiq_shared::telemetry::LogSettings;
use uuid::Uuid;

/// Every subcommand's settings come from its flags or, when a flag is absent, from the
/// environment variable `--help` names beside it.
#[derive(Parser)]
#[command(
    name = "rythmiq",
    version,
    about = "Photos and scans in, portal-compliant files out"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Shown under the services' `--help`: the variables read by the OpenTelemetry SDK itself.
const OTEL_HELP: &str = "Trace export: OTEL_EXPORTER_OTLP_ENDPOINT or \
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT turns on OTLP/HTTP export (unset: none); the other \
    standard OTEL_* variables (OTEL_SERVICE_NAME, OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER=none, \
    headers, timeouts) apply.";

#[derive(Subcommand)]
enum Command {
    /// Run everything locally: a private Postgres cluster, the API and workers, in one process.
    #[command(after_help = OTEL_HELP)]
    Dev(dev::DevArgs),
    /// Print a bearer token for a user.
    Token(TokenArgs),
    /// Upload a file through the HTTP API, wait for the job and download the output.
    Submit(submit::SubmitArgs),
    /// Run the pipeline locally on one file (no database, no server).
    Process(process::ProcessArgs),
    /// Check a file as it is against a portal rule and explain each requirement (exit code 0
    /// compliant, 1 not compliant, 2 unreadable).
    Check(check::CheckArgs),
    /// Read the text of one image with the OCR engine.
    Ocr(ocr::OcrArgs),
    /// Run the HTTP API.
    #[command(after_help = OTEL_HELP)]
    Api(serve::ApiCommand),
    /// Run a worker process.
    #[command(after_help = OTEL_HELP)]
    Worker(serve::WorkerCommand),
    /// Apply database migrations.
    #[command(after_help = OTEL_HELP)]
    Migrate(serve::MigrateCommand),
}

/// `rythmiq token`.
#[derive(Args)]
struct TokenArgs {
    /// The user's UUID.
    #[arg(long)]
    user: Uuid,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    ttl: u64,
    /// Where `rythmiq dev` keeps its state (and its generated secret).
    #[arg(long, default_value = ".rythmiq")]
    data_dir: PathBuf,
    #[command(flatten)]
    secret: JwtSecretArgs,
    #[command(flatten)]
    log: CliLogArgs,
}

impl Cli {
    /// Parses the command line and the environment, exiting with a message that names the
    /// variable when a value taken from one is invalid.
    pub fn parse_args() -> Self {
        let mut cmd = blank_variables_are_unset(Self::command());
        let parsed = cmd
            .try_get_matches_from_mut(std::env::args_os())
            .and_then(|m| Self::from_arg_matches(&m));
        match parsed {
            Ok(cli) => cli,
            Err(e) => name_the_variable(e, &mut cmd).exit(),
        }
    }

    /// The `service` on this process's log lines and trace resource.
    pub fn service(&self) -> &'static str {
        match self.command {
            Command::Api(_) => "api",
            Command::Worker(_) => "worker",
            Command::Dev(_) => "dev",
            _ => "cli",
        }
    }

    /// How this process logs (`RYTHMIQ_LOG_FORMAT`, `RUST_LOG`; each role has its defaults).
    pub fn log(&self) -> LogSettings {
        match &self.command {
            Command::Dev(a) => a.log.settings(),
            Command::Token(a) => a.log.settings(),
            Command::Submit(a) => a.log.settings(),
            Command::Process(a) => a.log.settings(),
            Command::Check(a) => a.log.settings(),
            Command::Ocr(a) => a.log.settings(),
            Command::Api(a) => a.service.log.settings(),
            Command::Worker(a) => a.service.log.settings(),
            Command::Migrate(a) => a.log.settings(),
        }
    }

    /// One-shot commands print their results on stdout (`--json` output), so their log lines
    /// go to stderr.
    pub fn logs_to_stderr(&self) -> bool {
        !matches!(
            self.command,
            Command::Api(_) | Command::Worker(_) | Command::Migrate(_) | Command::Dev(_)
        )
    }
}

/// A variable set to nothing (or spaces) counts as unset, so its default applies, as a blank
/// value always has; clap alone would hand the empty string to the parser.
fn blank_variables_are_unset(cmd: clap::Command) -> clap::Command {
    cmd.mut_subcommands(|sub| {
        sub.mut_args(|arg| {
            let blank = arg
                .get_env()
                .and_then(std::env::var_os)
                .is_some_and(|v| v.to_string_lossy().trim().is_empty());
            if blank {
                arg.env(None::<&'static str>)
            } else {
                arg
            }
        })
    })
}

/// clap names the flag a bad value belongs to; when the value came from the environment (the
/// usual case for the services), the message names the variable instead: `NAME="value": why`,
/// or `NAME must be set`.
fn name_the_variable(err: clap::Error, cmd: &mut clap::Command) -> clap::Error {
    let from_env = |rendered: &str| -> Option<String> {
        let long = rendered.strip_prefix("--")?.split([' ', '=']).next()?;
        let flag = format!("--{long}");
        let on_command_line = std::env::args_os()
            .filter_map(|a| a.into_string().ok())
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")));
        if on_command_line {
            return None;
        }
        cmd.get_subcommands()
            .flat_map(clap::Command::get_arguments)
            .find(|a| a.get_long() == Some(long))
            .and_then(clap::Arg::get_env)
            .map(|e| e.to_string_lossy().into_owned())
    };
    let text = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let message = match err.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let (Some(arg), Some(value)) = (
                text(ContextKind::InvalidArg),
                text(ContextKind::InvalidValue),
            ) else {
                return err;
            };
            let Some(name) = from_env(&arg) else {
                return err;
            };
            let why = match (
                err.get(ContextKind::ValidValue),
                std::error::Error::source(&err),
            ) {
                (Some(ContextValue::Strings(valid)), _) => format!(
                    "expected {}",
                    valid
                        .iter()
                        .map(|v| format!("`{v}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
                (_, Some(source)) => source.to_string(),
                _ => "invalid value".to_owned(),
            };
            format!("{name}={value:?}: {why}")
        }
        ErrorKind::MissingRequiredArgument => {
            let Some(ContextValue::Strings(args)) = err.get(ContextKind::InvalidArg) else {
                return err;
            };
            let names: Option<Vec<String>> = args.iter().map(|a| from_env(a)).collect();
            match names {
                Some(names) => names
                    .iter()
                    .map(|n| format!("{n} must be set"))
                    .collect::<Vec<_>>()
                    .join("; "),
                None => return err,
            }
        }
        _ => return err,
    };
    clap::Error::raw(err.kind(), format!("{message}\n")).format(cmd)
}

/// Runs the chosen subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Token(args) => {
            let secret = jwt_secret(&args.secret, &args.data_dir, false)?;
            println!(
                "{}",
                rythmiq_shared::auth::mint(&secret, args.user, args.ttl)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Submit(args) => submit::run(args).await,
        Command::Process(args) => tokio::task::spawn_blocking(move || process::run(args)).await?,
        Command::Check(args) => tokio::task::spawn_blocking(move || check::run(args)).await?,
        Command::Ocr(args) => tokio::task::spawn_blocking(move || ocr::run(args)).await?,
        Command::Api(args) => serve::api(args).await,
        Command::Worker(args) => serve::worker(args).await,
        Command::Migrate(args) => serve::migrate(args).await,
    }
}

/// The JWT secret: `RYTHMIQ_JWT_SECRET` when set, else the one `rythmiq dev` keeps in its data
/// dir (generated on first use when `create` is set). `dev`, `token` and `submit` share this
/// rule, so a token minted by one is accepted by the other.
pub fn jwt_secret(
    configured: &JwtSecretArgs,
    data_dir: &Path,
    create: bool,
) -> anyhow::Result<String> {
    if let Some(s) = configured.get() {
        return Ok(s);
    }
    let file = data_dir.join("jwt-secret");
    match std::fs::read_to_string(&file) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ if create => {
            std::fs::create_dir_all(data_dir)?;
            let secret = rythmiq_shared::auth::generate_secret();
            write_private(&file, &secret)?;
            Ok(secret)
        }
        _ => anyhow::bail!(
            "no JWT secret: set RYTHMIQ_JWT_SECRET, or run `rythmiq dev` once to generate {}",
            file.display()
        ),
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks a command's definition (unique ids, groups, defaults) only when it is built:
    /// a clash would otherwise surface as a panic the first time that subcommand runs.
    #[test]
    fn every_subcommand_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
