//! Subcommands. `dev` is the embedded default; `api`, `worker` and `migrate` are for production;
//! `token` and `submit` are for clients.

mod dev;
mod ocr;
mod process;
mod serve;
mod submit;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rythmiq_shared::telemetry::LogFormat;
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(
    name = "rythmiq",
    version,
    about = "Photos and scans in, portal-compliant files out"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run everything locally: a private Postgres cluster, the API and workers, in one process.
    Dev(dev::DevArgs),
    /// Print a bearer token for a user.
    Token {
        /// The user's UUID.
        #[arg(long)]
        user: Uuid,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
        /// Where `rythmiq dev` keeps its state (and its generated secret).
        #[arg(long, default_value = ".rythmiq")]
        data_dir: PathBuf,
    },
    /// Upload a file through the HTTP API, wait for the job and download the output.
    Submit(submit::SubmitArgs),
    /// Run the pipeline locally on one file (no database, no server).
    Process(process::ProcessArgs),
    /// Read the text of one image with the OCR engine.
    Ocr(ocr::OcrArgs),
    /// Run the HTTP API (DATABASE_URL, RYTHMIQ_JWT_SECRET and storage settings from the environment).
    Api,
    /// Run a worker process.
    Worker,
    /// Apply database migrations.
    Migrate,
}

impl Cli {
    /// The `service` on this process's log lines and trace resource.
    pub fn service(&self) -> &'static str {
        match self.command {
            Command::Api => "api",
            Command::Worker => "worker",
            Command::Dev(_) => "dev",
            _ => "cli",
        }
    }

    /// Long-running services log JSON for the log pipeline; commands run by hand log text.
    pub fn default_log_format(&self) -> LogFormat {
        match self.command {
            Command::Api | Command::Worker | Command::Migrate => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }

    /// One-shot commands print their results on stdout (`--json` output), so their log lines
    /// go to stderr.
    pub fn logs_to_stderr(&self) -> bool {
        !matches!(
            self.command,
            Command::Api | Command::Worker | Command::Migrate | Command::Dev(_)
        )
    }
}

/// Runs the chosen subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Token {
            user,
            ttl,
            data_dir,
        } => {
            let secret = jwt_secret(&data_dir, false)?;
            println!("{}", rythmiq_shared::auth::mint(&secret, user, ttl)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Submit(args) => submit::run(args).await,
        Command::Process(args) => tokio::task::spawn_blocking(move || process::run(args)).await?,
        Command::Ocr(args) => tokio::task::spawn_blocking(move || ocr::run(args)).await?,
        Command::Api => serve::api().await,
        Command::Worker => serve::worker().await,
        Command::Migrate => serve::migrate().await,
    }
}

/// The JWT secret: `RYTHMIQ_JWT_SECRET` when set, else the one `rythmiq dev` keeps in its data
/// dir (generated on first use when `create` is set). `dev` and `token` share this rule, so a
/// token minted by one is accepted by the other.
pub fn jwt_secret(data_dir: &Path, create: bool) -> anyhow::Result<String> {
    if let Ok(s) = std::env::var("RYTHMIQ_JWT_SECRET")
        && !s.trim().is_empty()
    {
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
