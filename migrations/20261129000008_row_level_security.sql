-- Row-level security ("users can only access their own data"), as defence in depth
-- behind the API's own `WHERE user_id = …`.
--
-- The services never act as the role that owns the tables (the one running these migrations):
-- every API connection does `SET ROLE rythmiq_api`, every worker connection
-- `SET ROLE rythmiq_worker` (shared/src/db.rs). As rythmiq_api a transaction sees only
-- the rows of the user it names first (`set_config('rythmiq.user_id', …, true)`), or the one
-- job a verified signed link names (`rythmiq.signed_link_id`); a transaction naming nobody sees
-- nothing. Workers process every user's jobs, so their policies admit every row, but their role
-- holds only the grants the pipeline and the maintenance sweep need.
-- RLS is enabled, not forced: the owner keeps bypassing it for migrations and the aggregate
-- functions below, and no service connects as the owner.

DO $$
BEGIN
    CREATE ROLE rythmiq_api NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; -- roles are per cluster
END $$;
DO $$
BEGIN
    CREATE ROLE rythmiq_worker NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
-- The login that runs the migrations may switch to both (a deployment with separate API and
-- worker logins grants each its role instead: `GRANT rythmiq_api TO api_login`).
DO $$
BEGIN
    EXECUTE format('GRANT rythmiq_api, rythmiq_worker TO %I', current_user);
END $$;

CREATE FUNCTION rythmiq_request_user() RETURNS UUID LANGUAGE sql STABLE AS $$
    SELECT NULLIF(current_setting('rythmiq.user_id', true), '')::uuid
$$;
CREATE FUNCTION rythmiq_signed_link_id() RETURNS UUID LANGUAGE sql STABLE AS $$
    SELECT NULLIF(current_setting('rythmiq.signed_link_id', true), '')::uuid
$$;

ALTER TABLE jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY jobs_api_select ON jobs FOR SELECT TO rythmiq_api
    USING (user_id = rythmiq_request_user() OR id = rythmiq_signed_link_id());
CREATE POLICY jobs_api_insert ON jobs FOR INSERT TO rythmiq_api
    WITH CHECK (user_id = rythmiq_request_user());
CREATE POLICY jobs_api_update ON jobs FOR UPDATE TO rythmiq_api
    USING (user_id = rythmiq_request_user()) WITH CHECK (user_id = rythmiq_request_user());
CREATE POLICY jobs_worker ON jobs FOR ALL TO rythmiq_worker USING (true) WITH CHECK (true);

ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
CREATE POLICY documents_api_select ON documents FOR SELECT TO rythmiq_api
    USING (user_id = rythmiq_request_user());
CREATE POLICY documents_worker ON documents FOR ALL TO rythmiq_worker USING (true) WITH CHECK (true);

ALTER TABLE user_credits ENABLE ROW LEVEL SECURITY;
CREATE POLICY user_credits_api ON user_credits FOR ALL TO rythmiq_api
    USING (user_id = rythmiq_request_user()) WITH CHECK (user_id = rythmiq_request_user());
CREATE POLICY user_credits_worker ON user_credits FOR ALL TO rythmiq_worker
    USING (true) WITH CHECK (true);

-- Grants: the API creates and reads jobs and credits and enqueues; it never deletes.
GRANT USAGE ON SCHEMA public, apalis TO rythmiq_api, rythmiq_worker;
GRANT SELECT ON portal_schemas, _sqlx_migrations TO rythmiq_api, rythmiq_worker;
GRANT SELECT, INSERT, UPDATE ON jobs, user_credits TO rythmiq_api;
GRANT SELECT ON documents TO rythmiq_api;
GRANT SELECT, INSERT ON apalis.jobs TO rythmiq_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON jobs, documents, user_credits, cpu_metrics, error_events
    TO rythmiq_worker;
GRANT SELECT ON alert_thresholds, cpu_metrics_hourly, cpu_metrics_daily, error_events_hourly,
    error_events_daily TO rythmiq_worker;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO rythmiq_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA apalis TO rythmiq_worker;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA apalis TO rythmiq_api, rythmiq_worker;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA apalis TO rythmiq_api, rythmiq_worker;
-- apalis-postgres upgrades run as this same login: their new objects get the same grants.
ALTER DEFAULT PRIVILEGES IN SCHEMA apalis
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO rythmiq_worker;
ALTER DEFAULT PRIVILEGES IN SCHEMA apalis GRANT EXECUTE ON FUNCTIONS TO rythmiq_api, rythmiq_worker;
ALTER DEFAULT PRIVILEGES IN SCHEMA apalis GRANT USAGE ON SEQUENCES TO rythmiq_api, rythmiq_worker;

-- Fleet-wide aggregates both services publish as gauges: they run as the owner (so they count
-- every user's jobs) and return numbers only, never rows.
CREATE FUNCTION queue_depth()
RETURNS TABLE (pending BIGINT, processing BIGINT, oldest_pending_age_seconds DOUBLE PRECISION)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT count(*) FILTER (WHERE state = 'pending'),
           count(*) FILTER (WHERE state = 'processing'),
           COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)
                    FILTER (WHERE state = 'pending')), 0)::float8
    FROM jobs WHERE state IN ('pending', 'processing')
$$;
ALTER FUNCTION alert_status(INTERVAL) SECURITY DEFINER SET search_path = public, pg_temp;
-- Refreshing a materialized view needs its owner (before Postgres 17's MAINTAIN privilege).
ALTER FUNCTION refresh_rollups() SECURITY DEFINER SET search_path = public, pg_temp;
REVOKE EXECUTE ON FUNCTION queue_depth(), alert_status(INTERVAL), refresh_rollups() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION queue_depth(), alert_status(INTERVAL) TO rythmiq_api, rythmiq_worker;
GRANT EXECUTE ON FUNCTION refresh_rollups() TO rythmiq_worker;
