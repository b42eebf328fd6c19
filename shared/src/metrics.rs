//! The Prometheus catalog, named to Prometheus conventions: base units, `_total`
//! counters, bounded labels. Every metric name is a constant here; the API and the workers record
//! through the `metrics` facade and serve the text format at `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Jobs finished, by `status` (completed/failed/retried), `path` (fast/standard) and `portal`.
pub const JOBS_TOTAL: &str = "rythmiq_jobs_total";
/// Wall time of one attempt, seconds.
pub const JOB_LATENCY_SECONDS: &str = "rythmiq_job_latency_seconds";
/// CPU time of one attempt, seconds, by `stage` (one observation per stage, plus `total`).
pub const JOB_CPU_SECONDS: &str = "rythmiq_job_cpu_seconds";
/// Failures by error `code` and `stage` (the README's job error table).
pub const ERRORS_TOTAL: &str = "rythmiq_errors_total";
/// QUALITY score of processed inputs.
pub const QUALITY_SCORE: &str = "rythmiq_quality_score";
/// Mean OCR confidence of processed inputs.
pub const OCR_CONFIDENCE: &str = "rythmiq_ocr_confidence";
/// Jobs whose ENHANCE was undone because it lowered OCR confidence (the OCR rollback).
pub const OCR_ROLLBACKS_TOTAL: &str = "rythmiq_ocr_rollbacks_total";
/// Jobs that ran on a cold worker (its first job).
pub const COLD_STARTS_TOTAL: &str = "rythmiq_cold_starts_total";
/// API requests by matched `route`, `method` and `status`.
pub const API_REQUESTS_TOTAL: &str = "rythmiq_api_requests_total";
/// API latency by matched `route`, seconds.
pub const API_LATENCY_SECONDS: &str = "rythmiq_api_latency_seconds";
/// CPU seconds spent this calendar month (from `cpu_metrics`); dashboards show it in hours.
pub const CPU_SECONDS_CURRENT_MONTH: &str = "rythmiq_cpu_seconds_current_month";
/// Jobs running right now in this process.
pub const JOBS_IN_PROGRESS: &str = "rythmiq_jobs_in_progress";
/// Jobs by `state` (pending/processing), for the autoscaler.
pub const QUEUE_DEPTH: &str = "rythmiq_queue_depth";
/// Age of the oldest pending job, seconds (0 when none), for the autoscaler.
pub const QUEUE_OLDEST_PENDING_AGE_SECONDS: &str = "rythmiq_queue_oldest_pending_age_seconds";
/// The alert thresholds (the `alert_thresholds` table), by `metric` and `level` (warning/critical).
pub const ALERT_THRESHOLD: &str = "rythmiq_alert_threshold";
/// Current value of each alert input, by `metric` (from `alert_status()`).
pub const ALERT_INPUT: &str = "rythmiq_alert_input";

/// Job wall times: seconds to a couple of minutes (the P95 alert is at 20 s / 30 s).
const JOB_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];
/// Per-stage CPU: a few milliseconds to seconds (the budget is 0.72 CPU-s per document).
const CPU_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.72, 1.0, 2.0, 5.0,
];
/// API: long-polls aside, milliseconds.
const API_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0, 60.0,
];
/// Scores in [0, 1], finer around the 0.80 fast-path threshold.
const SCORE_BUCKETS: &[f64] = &[
    0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0,
];

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the process-wide recorder once and returns the handle that renders `/metrics`.
pub fn install() -> crate::Result<PrometheusHandle> {
    let handle = HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let with = |b: PrometheusBuilder, name: &str, buckets: &[f64]| {
            b.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
        };
        let built = with(builder, JOB_LATENCY_SECONDS, JOB_BUCKETS)
            .and_then(|b| with(b, JOB_CPU_SECONDS, CPU_BUCKETS))
            .and_then(|b| with(b, API_LATENCY_SECONDS, API_BUCKETS))
            .and_then(|b| with(b, QUALITY_SCORE, SCORE_BUCKETS))
            .and_then(|b| with(b, OCR_CONFIDENCE, SCORE_BUCKETS))
            .map_err(|e| e.to_string())?;
        let handle = built.install_recorder().map_err(|e| e.to_string())?;
        describe();
        zero_known_series();
        Ok(handle)
    });
    handle.clone().map_err(crate::Error::Config)
}

/// What a job's CPU is charged to (`cpu_metrics` has a column for each): the stages, and the
/// process's start-up on the first job it completes.
pub const STAGES: [&str; 9] = [
    "fetch", "decode", "quality", "pre_ocr", "enhance", "ocr", "schema", "upload", "startup",
];

/// Creates every counter and histogram whose label values are known in advance at zero, so
/// each exists from the first scrape: a rate or ratio over "no errors yet" is 0, not "no data".
fn zero_known_series() {
    use crate::domain::ErrorCode;
    for code in ErrorCode::ALL {
        metrics::counter!(ERRORS_TOTAL, "code" => code.as_str(), "stage" => code.stage())
            .increment(0);
    }
    // The compiled-in portal rules are the ones `rythmiq migrate` activates.
    let portals: Vec<String> = crate::portals::builtin()
        .map(|rules| rules.into_iter().map(|r| r.spec.slug).collect())
        .unwrap_or_default();
    for portal in portals {
        for (status, path) in [
            ("completed", "fast"),
            ("completed", "standard"),
            ("failed", "unknown"),
            ("retried", "unknown"),
        ] {
            metrics::counter!(JOBS_TOTAL, "status" => status, "path" => path, "portal" => portal.clone())
                .increment(0);
        }
    }
    for stage in STAGES.iter().chain(&["total"]) {
        let _ = metrics::histogram!(JOB_CPU_SECONDS, "stage" => *stage);
    }
    let _ = metrics::histogram!(JOB_LATENCY_SECONDS);
    let _ = metrics::histogram!(QUALITY_SCORE);
    let _ = metrics::histogram!(OCR_CONFIDENCE);
    metrics::counter!(OCR_ROLLBACKS_TOTAL).increment(0);
    metrics::counter!(COLD_STARTS_TOTAL).increment(0);
    metrics::gauge!(JOBS_IN_PROGRESS).set(0.0);
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(JOBS_TOTAL, "Jobs finished, by status, path and portal");
    describe_histogram!(
        JOB_LATENCY_SECONDS,
        Unit::Seconds,
        "Wall time of one job attempt"
    );
    describe_histogram!(
        JOB_CPU_SECONDS,
        Unit::Seconds,
        "CPU time of one job attempt, by stage"
    );
    describe_counter!(ERRORS_TOTAL, "Job failures by error code and stage");
    describe_histogram!(QUALITY_SCORE, "QUALITY score of processed inputs");
    describe_histogram!(OCR_CONFIDENCE, "Mean OCR confidence of processed inputs");
    describe_counter!(
        OCR_ROLLBACKS_TOTAL,
        "Jobs whose enhancement was rolled back for lowering OCR confidence"
    );
    describe_counter!(COLD_STARTS_TOTAL, "Jobs that ran on a cold worker");
    describe_counter!(
        API_REQUESTS_TOTAL,
        "API requests by route, method and status"
    );
    describe_histogram!(API_LATENCY_SECONDS, Unit::Seconds, "API latency by route");
    describe_gauge!(
        CPU_SECONDS_CURRENT_MONTH,
        "CPU seconds spent this calendar month"
    );
    describe_gauge!(JOBS_IN_PROGRESS, "Jobs running now in this process");
    describe_gauge!(QUEUE_DEPTH, "Jobs waiting or running, by state");
    describe_gauge!(
        QUEUE_OLDEST_PENDING_AGE_SECONDS,
        Unit::Seconds,
        "Age of the oldest pending job"
    );
    describe_gauge!(ALERT_THRESHOLD, "Alert thresholds, by metric and level");
    describe_gauge!(ALERT_INPUT, "Current value of each alert input, by metric");
}

/// Reads the queue and alert gauges from the database (cheap, indexed queries) and sets them.
pub async fn refresh_db_gauges(pool: &sqlx::PgPool) -> crate::Result<()> {
    let (pending, processing, oldest): (i64, i64, f64) = sqlx::query_as(
        // Counts every user's jobs although the caller's role sees none: the function runs
        // as the tables' owner and returns numbers only.
        "SELECT pending, processing, oldest_pending_age_seconds FROM queue_depth()",
    )
    .fetch_one(pool)
    .await?;
    metrics::gauge!(QUEUE_DEPTH, "state" => "pending").set(pending as f64);
    metrics::gauge!(QUEUE_DEPTH, "state" => "processing").set(processing as f64);
    metrics::gauge!(QUEUE_OLDEST_PENDING_AGE_SECONDS).set(oldest);

    let rows: Vec<(String, f64, f64, f64)> =
        sqlx::query_as("SELECT metric, value, warning, critical FROM alert_status()")
            .fetch_all(pool)
            .await?;
    for (metric, value, warning, critical) in rows {
        if metric == "cpu_hours_month" {
            metrics::gauge!(CPU_SECONDS_CURRENT_MONTH).set(value * 3600.0);
        }
        metrics::gauge!(ALERT_INPUT, "metric" => metric.clone()).set(value);
        metrics::gauge!(ALERT_THRESHOLD, "metric" => metric.clone(), "level" => "warning")
            .set(warning);
        metrics::gauge!(ALERT_THRESHOLD, "metric" => metric, "level" => "critical").set(critical);
    }
    Ok(())
}
