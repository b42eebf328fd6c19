//! `rythmiq`: the command-line entry point. Each subcommand lives in `cli/`.

mod cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse_args();
    let telemetry = {
        use rythmiq_shared::telemetry::{Output, init};
        let output = if args.logs_to_stderr() {
            Output::Stderr
        } else {
            Output::Stdout
        };
        init(args.service(), &args.log(), output)
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
