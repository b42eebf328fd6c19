-- Observability: rollups of cpu_metrics and error_events, the inputs of the alerts as SQL
-- functions, their thresholds as data, and retention.

-- Hourly and daily rollups. Unique indexes let them refresh CONCURRENTLY (readers never block).
CREATE MATERIALIZED VIEW cpu_metrics_hourly AS
SELECT date_trunc('hour', created_at) AS bucket,
       processing_path,
       count(*)                                                         AS jobs,
       sum(total_cpu_seconds)                                           AS cpu_seconds,
       avg(total_cpu_seconds)                                           AS avg_cpu_seconds,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY total_wall_seconds) AS p95_wall_seconds,
       avg(quality_score)                                               AS avg_quality_score,
       avg(ocr_confidence)                                              AS avg_ocr_confidence,
       count(*) FILTER (WHERE execution_temperature = 'cold')           AS cold_starts
FROM cpu_metrics
GROUP BY 1, 2;
CREATE UNIQUE INDEX cpu_metrics_hourly_key ON cpu_metrics_hourly (bucket, processing_path);

CREATE MATERIALIZED VIEW cpu_metrics_daily AS
SELECT date_trunc('day', created_at) AS bucket,
       processing_path,
       count(*)                                                         AS jobs,
       sum(total_cpu_seconds)                                           AS cpu_seconds,
       avg(total_cpu_seconds)                                           AS avg_cpu_seconds,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY total_wall_seconds) AS p95_wall_seconds,
       avg(quality_score)                                               AS avg_quality_score,
       avg(ocr_confidence)                                              AS avg_ocr_confidence,
       count(*) FILTER (WHERE execution_temperature = 'cold')           AS cold_starts
FROM cpu_metrics
GROUP BY 1, 2;
CREATE UNIQUE INDEX cpu_metrics_daily_key ON cpu_metrics_daily (bucket, processing_path);

CREATE MATERIALIZED VIEW error_events_hourly AS
SELECT date_trunc('hour', created_at) AS bucket, error_code, error_stage,
       count(*) AS events, count(*) FILTER (WHERE NOT retryable) AS final_events
FROM error_events
GROUP BY 1, 2, 3;
CREATE UNIQUE INDEX error_events_hourly_key ON error_events_hourly (bucket, error_code, error_stage);

CREATE MATERIALIZED VIEW error_events_daily AS
SELECT date_trunc('day', created_at) AS bucket, error_code, error_stage,
       count(*) AS events, count(*) FILTER (WHERE NOT retryable) AS final_events
FROM error_events
GROUP BY 1, 2, 3;
CREATE UNIQUE INDEX error_events_daily_key ON error_events_daily (bucket, error_code, error_stage);

-- Refreshes every rollup; the fleet calls it periodically under an advisory lock (one runner).
CREATE FUNCTION refresh_rollups() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    REFRESH MATERIALIZED VIEW CONCURRENTLY cpu_metrics_hourly;
    REFRESH MATERIALIZED VIEW CONCURRENTLY cpu_metrics_daily;
    REFRESH MATERIALIZED VIEW CONCURRENTLY error_events_hourly;
    REFRESH MATERIALIZED VIEW CONCURRENTLY error_events_daily;
END;
$$;

CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Share of jobs finished in the window that failed (0 when none finished).
CREATE FUNCTION get_error_rate(win INTERVAL DEFAULT '1 hour') RETURNS DOUBLE PRECISION
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(count(*) FILTER (WHERE state = 'failed')::float8 / NULLIF(count(*), 0), 0)
    FROM jobs WHERE finished_at >= now() - win AND state IN ('completed', 'failed');
$$;

-- P95 of submit-to-finish latency, in seconds, of jobs finished in the window (0 when none).
CREATE FUNCTION get_p95_latency(win INTERVAL DEFAULT '1 hour') RETURNS DOUBLE PRECISION
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(percentile_cont(0.95) WITHIN GROUP (
               ORDER BY EXTRACT(EPOCH FROM finished_at - created_at)), 0)
    FROM jobs WHERE finished_at >= now() - win AND state IN ('completed', 'failed');
$$;

-- CPU hours spent this calendar month (UTC).
CREATE FUNCTION get_monthly_cpu_usage() RETURNS DOUBLE PRECISION LANGUAGE sql STABLE AS $$
    SELECT COALESCE(sum(total_cpu_seconds), 0) / 3600.0
    FROM cpu_metrics WHERE created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
$$;

-- CPU hours left of a monthly budget (200 CPU-hours by default: the fleet's monthly budget).
CREATE FUNCTION get_cpu_budget_remaining(budget_hours DOUBLE PRECISION DEFAULT 200)
RETURNS DOUBLE PRECISION LANGUAGE sql STABLE AS $$
    SELECT budget_hours - get_monthly_cpu_usage();
$$;

-- Share of jobs in the window that ran on a cold worker (0 when none).
CREATE FUNCTION get_cold_start_rate(win INTERVAL DEFAULT '1 hour') RETURNS DOUBLE PRECISION
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(count(*) FILTER (WHERE execution_temperature = 'cold')::float8
                    / NULLIF(count(*), 0), 0)
    FROM cpu_metrics WHERE created_at >= now() - win;
$$;

-- Most recent error events, for the on-call reference card.
CREATE FUNCTION get_recent_errors(lim INTEGER DEFAULT 50)
RETURNS SETOF error_events LANGUAGE sql STABLE AS $$
    SELECT * FROM error_events ORDER BY created_at DESC LIMIT lim;
$$;

-- The alert thresholds, as data so SQL and Prometheus agree.
CREATE TABLE alert_thresholds (
    metric   TEXT PRIMARY KEY,
    unit     TEXT NOT NULL,
    warning  DOUBLE PRECISION NOT NULL,
    critical DOUBLE PRECISION NOT NULL
);
INSERT INTO alert_thresholds (metric, unit, warning, critical) VALUES
    ('error_rate',           'ratio',          0.01, 0.02),
    ('p95_latency_seconds',  'seconds',        20,   30),
    ('cpu_hours_month',      'hours',          50,   150),
    ('cold_start_rate',      'ratio',          0.10, 0.20);

-- Every alert input with its level: 'ok', 'warning' or 'critical'.
CREATE FUNCTION alert_status(win INTERVAL DEFAULT '1 hour')
RETURNS TABLE (metric TEXT, value DOUBLE PRECISION, warning DOUBLE PRECISION,
               critical DOUBLE PRECISION, level TEXT)
LANGUAGE sql STABLE AS $$
    WITH v(metric, value) AS (VALUES
        ('error_rate', get_error_rate(win)),
        ('p95_latency_seconds', get_p95_latency(win)),
        ('cpu_hours_month', get_monthly_cpu_usage()),
        ('cold_start_rate', get_cold_start_rate(win)))
    SELECT v.metric, v.value, t.warning, t.critical,
           CASE WHEN v.value > t.critical THEN 'critical'
                WHEN v.value > t.warning THEN 'warning'
                ELSE 'ok' END
    FROM v JOIN alert_thresholds t USING (metric)
    ORDER BY v.metric;
$$;

-- Retention: raw rows older than `keep` go, in batches so no long lock is held.
-- Returns the number of rows removed.
CREATE FUNCTION purge_observability(keep INTERVAL DEFAULT '90 days', batch INTEGER DEFAULT 5000)
RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    removed BIGINT := 0;
    n BIGINT;
BEGIN
    LOOP
        DELETE FROM cpu_metrics WHERE id IN (
            SELECT id FROM cpu_metrics WHERE created_at < now() - keep LIMIT batch);
        GET DIAGNOSTICS n = ROW_COUNT;
        removed := removed + n;
        EXIT WHEN n < batch;
    END LOOP;
    LOOP
        DELETE FROM error_events WHERE id IN (
            SELECT id FROM error_events WHERE created_at < now() - keep LIMIT batch);
        GET DIAGNOSTICS n = ROW_COUNT;
        removed := removed + n;
        EXIT WHEN n < batch;
    END LOOP;
    RETURN removed;
END;
$$;

-- Decoding is measured on its own (rather than folded into FETCH).
ALTER TABLE cpu_metrics ADD COLUMN decode_cpu_seconds DOUBLE PRECISION;
