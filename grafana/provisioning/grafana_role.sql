-- The database login Grafana's PostgreSQL datasource uses: read-only, fleet-wide.
-- Run once as a superuser (BYPASSRLS needs one) after `rythmiq migrate`, then give the login a
-- password (\password rythmiq_grafana) and put it in RYTHMIQ_GRAFANA_PG_PASSWORD.
--
-- Why BYPASSRLS: row-level security shows each API request only its user's jobs; the dashboards
-- count every user's jobs (and only aggregate them: no panel selects a user id or a filename).
-- grafana/tools/sql_check.py runs every dashboard query as this role, so these grants are
-- exactly what the dashboards need.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rythmiq_grafana') THEN
        CREATE ROLE rythmiq_grafana LOGIN BYPASSRLS;
    END IF;
END
$$;
ALTER ROLE rythmiq_grafana SET default_transaction_read_only = on;
ALTER ROLE rythmiq_grafana SET statement_timeout = '30s';

GRANT USAGE ON SCHEMA public, apalis TO rythmiq_grafana;
GRANT SELECT ON jobs, portal_schemas, cpu_metrics, error_events, alert_thresholds,
                cpu_metrics_hourly, cpu_metrics_daily, error_events_hourly, error_events_daily
    TO rythmiq_grafana;
GRANT SELECT ON apalis.workers TO rythmiq_grafana;
-- SECURITY DEFINER functions whose EXECUTE is revoked from PUBLIC.
GRANT EXECUTE ON FUNCTION alert_status(INTERVAL), queue_depth() TO rythmiq_grafana;
