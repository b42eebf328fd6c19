//! `rythmiq`: the command-line entry point. Each subcommand lives in `cli/`.

mod cli;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    let telemetry = {
        use rythmiq_shared::telemetry::{Output, init};
        let output = if args.logs_to_stderr() {
            Output::Stderr
        } else {
            Output::Stdout
        };
        init(args.service(), args.default_log_format(), output)
    };
    let code = match cli::run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    };
    // Spans still in the exporter's batch go out before the process ends.
    drop(telemetry);
    code
}
