//! Logs and traces for every Rythmiq process.
//!
//! - Logs: one line per event on stdout, JSON in one schema (`RYTHMIQ_LOG_FORMAT=json`,
//!   the default for `api` and `worker`) or readable text (the default for `dev` and the CLI).
//!   The PII blocklist is enforced by the writer itself ([`pii`]), not left to call sites.
//! - Traces: spans are OpenTelemetry spans; the W3C `traceparent` travels API → task payload →
//!   worker ([`trace`]); OTLP export is opt-in through the standard `OTEL_*` variables.
//!
//! The format and the filter (`RYTHMIQ_LOG_FORMAT`, `RUST_LOG`) come from the role's
//! configuration ([`crate::config`]) as [`LogSettings`].

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

/// The filter of the long-running services and `rythmiq dev` when `RUST_LOG` is unset: sqlx
/// logs every slow statement at INFO, and the queue's polling would drown the job lines.
pub const SERVICE_LOG_FILTER: &str = "info,sqlx=warn";
/// The filter of one-shot commands, which report through their own output and only log trouble.
pub const CLI_LOG_FILTER: &str = "warn";

/// How a process logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `json` or `text` lines (`RYTHMIQ_LOG_FORMAT`).
    pub format: LogFormat,
    /// The filter, in `EnvFilter` syntax (`RUST_LOG`).
    pub filter: String,
}

fn filter(service: &str, spec: &str) -> EnvFilter {
    let default = if service == "cli" {
        CLI_LOG_FILTER
    } else {
        SERVICE_LOG_FILTER
    };
    // A blank or unparsable filter falls back to the role's default rather than stopping the
    // process.
    if spec.trim().is_empty() {
        return EnvFilter::new(default);
    }
    EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new(default))
}

/// Where a process's log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Stdout,
    /// For commands whose stdout is their result (`process --json`).
    Stderr,
}

/// Installs logging and tracing for a process whose lines carry `service` (`api`, `worker`,
/// or the CLI command); spans may override it with a `service` field of their own. Later calls
/// in one process leave the first subscriber in place.
pub fn init(service: &'static str, log: &LogSettings, output: Output) -> Telemetry {
    let provider = trace::provider_from_env(service);
    let filter = filter(service, &log.filter);
    match output {
        Output::Stdout => install(filter, service, log.format, std::io::stdout, provider),
        Output::Stderr => install(filter, service, log.format, std::io::stderr, provider),
    }
}

/// [`init`] with an explicit writer and trace provider, filtered at the service's default level
/// (tests use an in-memory exporter).
pub fn init_with<W>(
    service: &'static str,
    format: LogFormat,
    writer: W,
    provider: SdkTracerProvider,
) -> Telemetry
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    install(filter(service, ""), service, format, writer, provider)
}

fn install<W>(
    filter: EnvFilter,
    service: &'static str,
    format: LogFormat,
    writer: W,
    provider: SdkTracerProvider,
) -> Telemetry
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(trace::layer(&provider))
        .with(LogLines::new(service, format, writer))
        .try_init();
    Telemetry { provider }
}
