//! Logs and traces for every Rythmiq process.
//!
//! - Logs: one line per event on stdout, JSON in the seeds' schema (`RYTHMIQ_LOG_FORMAT=json`,
//!   the default for `api` and `worker`) or readable text (the default for `dev` and the CLI).
//!   The PII blocklist is enforced by the writer itself ([`pii`]), not left to call sites.
//! - Traces: spans are OpenTelemetry spans; the W3C `traceparent` travels API → task payload →
//!   worker ([`trace`]); OTLP export is opt-in through the standard `OTEL_*` variables.
//!
//! The filter comes from `RUST_LOG` (default `info`).

mod log_line;
pub mod pii;
pub mod trace;

pub use log_line::{LogFormat, LogLines};
pub use pii::{scrub, user_id_hash};

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Keeps the trace pipeline alive; dropping it flushes and shuts the exporter down.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Sends every finished span to the exporter now (tests and shutdown).
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// `RYTHMIQ_LOG_FORMAT` (`json` or `text`), else `default`.
pub fn format_from_env(default: LogFormat) -> LogFormat {
    match std::env::var("RYTHMIQ_LOG_FORMAT").as_deref() {
        Ok("json") => LogFormat::Json,
        Ok("text") => LogFormat::Text,
        _ => default,
    }
}

fn filter(service: &str) -> EnvFilter {
    // sqlx logs every slow statement at INFO; the queue's polling would drown the job lines.
    // One-shot commands report through their own output and only log trouble.
    let default = if service == "cli" {
        "warn"
    } else {
        "info,sqlx=warn"
    };
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
}

/// Where a process's log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Stdout,
    /// For commands whose stdout is their result (`process --json`).
    Stderr,
}

/// Installs logging and tracing for a process whose lines carry `service` (`api`, `worker`,
/// or the CLI command); spans may override it with a `service` field of their own. The format
/// is `RYTHMIQ_LOG_FORMAT` or `default_format`. Later calls in one process leave the first
/// subscriber in place.
pub fn init(service: &'static str, default_format: LogFormat, output: Output) -> Telemetry {
    let format = format_from_env(default_format);
    let provider = trace::provider_from_env(service);
    match output {
        Output::Stdout => init_with(service, format, std::io::stdout, provider),
        Output::Stderr => init_with(service, format, std::io::stderr, provider),
    }
}

/// [`init`] with an explicit writer and trace provider (tests use an in-memory exporter).
pub fn init_with<W>(
    service: &'static str,
    format: LogFormat,
    writer: W,
    provider: SdkTracerProvider,
) -> Telemetry
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let _ = tracing_subscriber::registry()
        .with(filter(service))
        .with(trace::layer(&provider))
        .with(LogLines::new(service, format, writer))
        .try_init();
    Telemetry { provider }
}
