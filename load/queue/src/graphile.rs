//! graphile-worker's side: `node` runs the runner script (`load/queue/graphile/run.mjs`, copied
//! beside the installed package by `bench.sh`), which adds the no-op jobs in bulk, runs them and
//! prints one JSON line with its window; the statements are counted here, as for ours.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::cluster::Target;
use crate::report::{Rate, Run};
use crate::stats::Window;

/// The runner script's last line.
#[derive(Debug, Deserialize, PartialEq)]
pub struct Outcome {
    pub jobs: usize,
    /// From the first `job:start` (a claim returned a job) to the last `job:complete` (its
    /// completion was recorded), in milliseconds.
    pub window_ms: f64,
}

/// Parses the runner's output: the last non-empty line is the JSON outcome.
pub fn parse_outcome(stdout: &str) -> Result<Outcome> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .context("the graphile-worker runner printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("reading the runner's line {line:?}"))
}

/// Runs graphile-worker on `target.graphile_url`: migrations and the bulk add happen in the
/// script before the window, which the script opens by signalling on stdout ("ready") and
/// waiting for a line on stdin, so the statement counts cover only the runs.
pub async fn run(
    target: &Target,
    script: &Path,
    tasks: usize,
    concurrency: usize,
    pool_size: u32,
) -> Result<Run> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .env("DATABASE_URL", &target.graphile_url)
        .env("TASKS", tasks.to_string())
        .env("CONCURRENCY", concurrency.to_string())
        .env("POOL_SIZE", pool_size.to_string())
        // graphile-worker logs every success otherwise (20,000 lines of console output).
        .env("NO_LOG_SUCCESS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting node (node 20 or later must be on PATH)")?;
    let mut stdin = child.stdin.take().context("runner stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().context("runner stdout")?);

    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).await? == 0 {
            bail!(
                "the graphile-worker runner ended before it was ready: {}",
                child.wait().await?
            );
        }
        if line.trim() == "ready" {
            break;
        }
    }
    let window = Window::open(&target.graphile_url, target.statements).await?;
    stdin.write_all(b"go\n").await?;
    stdin.flush().await?;
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await?;
    let status = child.wait().await?;
    if !status.success() {
        bail!("the graphile-worker runner failed: {status}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counted = window.close().await?;
    let outcome = parse_outcome(&rest)?;
    if outcome.jobs != tasks {
        bail!("graphile-worker completed {} of {tasks} jobs", outcome.jobs);
    }
    Ok(Run {
        rate: Rate {
            jobs: outcome.jobs,
            seconds: outcome.window_ms / 1000.0,
        },
        counted: Some(counted),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_is_the_outcome() -> Result<()> {
        let out = "some log\n{\"jobs\": 20000, \"window_ms\": 12000.5}\n\n";
        assert_eq!(
            parse_outcome(out)?,
            Outcome {
                jobs: 20000,
                window_ms: 12000.5
            }
        );
        Ok(())
    }

    #[test]
    fn no_output_is_an_error() {
        assert!(parse_outcome("\n  \n").is_err());
        assert!(parse_outcome("not json").is_err());
    }
}
