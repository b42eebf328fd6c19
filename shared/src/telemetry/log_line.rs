//! The log line writer: one JSON object per event in one schema (`timestamp`, `level`,
//! `service`, `message`, the well-known fields at the top level, anything else under `extra`),
//! or the same content as a readable text line. Fields of the enclosing spans are merged in,
//! so a worker's job span puts `job_id`, `correlation_id` and `user_id_hash` on every line it
//! covers. Every value passes the PII blocklist in [`super::pii`] on its way out.

use std::fmt::Debug;
use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::pii;

/// The schema's top-level fields; everything else goes under `extra`.
const TOP_LEVEL: &[&str] = &[
    "service",
    "stage",
    "job_id",
    "correlation_id",
    "user_id_hash",
    "trace_id",
    "latency_ms",
    "cpu_seconds",
    "error_code",
    "error_stage",
    "http_method",
    "http_path",
    "http_status",
];

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// `timestamp LEVEL service message key=value…` (a terminal).
    Text,
}

/// The layer; `W` is where lines go (stdout in the binaries, a buffer in tests).
pub struct LogLines<W> {
    service: &'static str,
    format: LogFormat,
    writer: W,
}

impl<W> LogLines<W> {
    pub fn new(service: &'static str, format: LogFormat, writer: W) -> Self {
        Self {
            service,
            format,
            writer,
        }
    }
}

/// Fields recorded on a span, kept in its extensions.
struct SpanFields(Map<String, Value>);

struct Visitor<'a>(&'a mut Map<String, Value>);

impl Visit for Visitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

impl<S, W> Layer<S> for LogLines<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Map::new();
        attrs.record(&mut Visitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(SpanFields(fields)) = ext.get_mut::<SpanFields>() {
                values.record(&mut Visitor(fields));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(f)) = span.extensions().get::<SpanFields>() {
                    fields.extend(f.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        event.record(&mut Visitor(&mut fields));
        if let Some(trace_id) = super::trace::current_trace_id() {
            fields.insert("trace_id".into(), Value::from(trace_id));
        }
        let line = render(self.service, self.format, event.metadata().level(), fields);
        let mut w = self.writer.make_writer_for(event.metadata());
        // A lost log line must not take the process down.
        let _ = w.write_all(line.as_bytes());
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// One finished line (with its newline) from an event's merged fields.
pub(crate) fn render(
    default_service: &str,
    format: LogFormat,
    level: &Level,
    mut fields: Map<String, Value>,
) -> String {
    let message = match fields.remove("message") {
        Some(Value::String(s)) => pii::scrub(&s).into_owned(),
        Some(other) => pii::scrub(&other.to_string()).into_owned(),
        None => String::new(),
    };
    let service = match fields.remove("service") {
        Some(Value::String(s)) => s,
        _ => default_service.to_owned(),
    };
    let mut top = Map::new();
    let mut extra = Map::new();
    for (name, value) in fields {
        // `otel.*` steer the trace exporter; `log.*` come from the log-crate bridge.
        if name.starts_with("otel.") || name.starts_with("log.") {
            continue;
        }
        let value = if TOP_LEVEL.contains(&name.as_str()) || pii::is_operator_field(&name) {
            value
        } else if pii::is_blocked(&name) {
            Value::from(pii::REDACTED)
        } else {
            scrub_value(value)
        };
        if TOP_LEVEL.contains(&name.as_str()) {
            top.insert(name, value);
        } else {
            extra.insert(name, value);
        }
    }
    let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let level = level_name(level);
    match format {
        LogFormat::Json => {
            let mut out = Map::new();
            out.insert("timestamp".into(), Value::from(timestamp));
            out.insert("level".into(), Value::from(level));
            out.insert("service".into(), Value::from(service));
            out.extend(top);
            out.insert("message".into(), Value::from(message));
            if !extra.is_empty() {
                out.insert("extra".into(), Value::Object(extra));
            }
            let mut line = Value::Object(out).to_string();
            line.push('\n');
            line
        }
        LogFormat::Text => {
            let mut line = format!("{timestamp} {level:<5} {service} {message}");
            for (k, v) in top.into_iter().chain(extra) {
                match v {
                    Value::String(s) => line.push_str(&format!(" {k}={s}")),
                    other => line.push_str(&format!(" {k}={other}")),
                }
            }
            line.push('\n');
            line
        }
    }
}

fn scrub_value(value: Value) -> Value {
    match value {
        Value::String(s) => Value::from(pii::scrub(&s).into_owned()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn json_line_has_the_seed_schema() {
        let line = render(
            "worker",
            LogFormat::Json,
            &Level::INFO,
            fields(
                json!({"message": "stage completed", "stage": "quality", "job_id": "j",
                          "correlation_id": "c", "cpu_seconds": 0.08, "attempt": 1}),
            ),
        );
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["service"], "worker");
        assert_eq!(v["stage"], "quality");
        assert_eq!(v["cpu_seconds"], 0.08);
        assert_eq!(v["message"], "stage completed");
        assert_eq!(v["extra"]["attempt"], 1);
        let ts = v["timestamp"].as_str().unwrap_or_default();
        assert!(ts.ends_with('Z') && ts.len() == 24, "{ts}");
    }

    #[test]
    fn blocked_fields_and_scrubbed_values_never_reach_the_line() {
        for format in [LogFormat::Json, LogFormat::Text] {
            let line = render(
                "api",
                format,
                &Level::WARN,
                fields(
                    json!({"message": "upload of /srv/raw/u/j/aadhaar_front.jpg failed for 198.51.100.4",
                              "filename": "aadhaar_front.jpg", "user_id": "b1946ac9",
                              "input_key": "raw/x/y/z.enc", "error": "mail me at a@b.example.org",
                              "otel.name": "x"}),
                ),
            );
            for leaked in [
                "aadhaar_front",
                "b1946ac9",
                "198.51.100.4",
                "raw/x",
                "a@b",
                "otel",
            ] {
                assert!(!line.contains(leaked), "{leaked} in {line}");
            }
            assert!(line.contains(pii::REDACTED), "{line}");
        }
    }

    #[test]
    fn levels_follow_the_seed_enum() {
        assert_eq!(level_name(&Level::TRACE), "DEBUG");
        assert_eq!(level_name(&Level::WARN), "WARN");
    }
}
