//! Traces: `tracing` spans become OpenTelemetry spans (tracing-opentelemetry), the W3C
//! `traceparent` carries a trace from an HTTP request into the job payload and on into the
//! worker, and spans are exported over OTLP only when the standard `OTEL_*` variables ask for it.
//! Without an exporter the provider still assigns trace ids, so propagation and the `trace_id`
//! on log lines work everywhere.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether the standard variables ask for OTLP export: an endpoint is set, the SDK is not
/// disabled and the traces exporter is not `none`.
pub fn otlp_requested(env: impl Fn(&str) -> Option<String>) -> bool {
    let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let exporter_none = env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none");
    let endpoint = set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    endpoint && !disabled && !exporter_none
}

/// The provider the process uses: OTLP/HTTP batch export when requested, otherwise none.
///
/// The standard `OTEL_*` variables are the one part of the configuration read from the
/// environment here rather than through [`crate::config`]: the OpenTelemetry SDK and its OTLP
/// exporter read them themselves (endpoint, headers, timeouts, service name), so this only asks
/// the same variables whether export is wanted at all.
pub fn provider_from_env(service: &'static str) -> SdkTracerProvider {
    let builder = SdkTracerProvider::builder().with_resource(resource(service));
    if !otlp_requested(|k| std::env::var(k).ok()) {
        return builder.build();
    }
    match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => builder.with_batch_exporter(exporter).build(),
        Err(e) => {
            // Logging is not up yet; this is the one place stderr is the right channel.
            eprintln!("OTLP trace export disabled: {e}");
            builder.build()
        }
    }
}

/// `service.name` is `rythmiq-<service>` unless `OTEL_SERVICE_NAME` says otherwise (the
/// resource builder reads it; a standard `OTEL_*` variable, see [`provider_from_env`]).
pub fn resource(service: &'static str) -> opentelemetry_sdk::Resource {
    let mut b = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        b = b.with_service_name(format!("rythmiq-{service}"));
    }
    b.build()
}

/// The tracing layer that turns spans into OpenTelemetry spans of `provider`.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("rythmiq"))
}

/// The current span's context as a W3C `traceparent` value, to hand to the next hop.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// The remote span context a `traceparent` value names, if it is well formed.
pub fn parse_traceparent(value: &str) -> Option<opentelemetry::Context> {
    let value = value.trim();
    // W3C: `version-trace_id-parent_id-flags` of exactly 2, 32, 16 and 2 hex digits; the
    // propagator alone accepts short ids.
    let lengths: Vec<usize> = value.split('-').map(str::len).collect();
    if lengths != [2, 32, 16, 2] || !value.chars().all(|c| c == '-' || c.is_ascii_hexdigit()) {
        return None;
    }
    let carrier = HashMap::from([("traceparent".to_owned(), value.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes `span` continue the trace of `traceparent` (as its child). Must be called before the
/// span is first entered.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(cx) = traceparent.and_then(parse_traceparent) {
        // Fails only when the span is disabled or already started; then there is nothing to join.
        let _ = span.set_parent(cx);
    }
}

/// Starts `span` as a new trace linked to `traceparent` (how a retry relates to its enqueue:
/// it is caused by it, but is not part of the request that enqueued it).
pub fn link_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(cx) = traceparent.and_then(parse_traceparent) {
        span.add_link(cx.span().span_context().clone());
    }
}

/// The trace id of the current span, for log lines.
pub fn current_trace_id() -> Option<String> {
    let span = tracing::Span::current();
    if span.is_none() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_is_opt_in() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert!(!otlp_requested(env(&[])));
        assert!(otlp_requested(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4318"
        )])));
        assert!(otlp_requested(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces"
        )])));
        assert!(!otlp_requested(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "true")
        ])));
        assert!(!otlp_requested(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_EXPORTER", "none")
        ])));
    }

    #[test]
    fn traceparent_round_trip_rejects_garbage() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = parse_traceparent(tp);
        assert!(cx.is_some());
        let trace_id = cx.map(|c| c.span().span_context().trace_id().to_string());
        assert_eq!(
            trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "garbage",
            "00-4bf92f35-00f067aa-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
