-- The autoscaler's database role: it may ask how much work the queue holds, and nothing else.
-- KEDA's `postgresql` trigger (deploy/k8s/base/worker-autoscaling.yaml) logs in as a member of
-- rythmiq_scaler and runs `SELECT queue_backlog()`: no table, no row, no other function.
-- A login is granted the role once (deploy/db/logins.sql: `CREATE ROLE … LOGIN IN ROLE
-- rythmiq_scaler`); it inherits the EXECUTE below without a `SET ROLE`.

DO $$
BEGIN
    CREATE ROLE rythmiq_scaler NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; -- roles are per cluster
END $$;

-- The backlog as one number, what the workers still have to get through: pending jobs (retries
-- waiting for their backoff included) plus the ones running now. It reads queue_depth() as the
-- owner, so it counts every user's jobs and returns only the count.
CREATE FUNCTION queue_backlog() RETURNS BIGINT
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT pending + processing FROM queue_depth()
$$;
REVOKE EXECUTE ON FUNCTION queue_backlog() FROM PUBLIC;
-- Resolving an unqualified function name needs USAGE on its schema; PUBLIC's may be revoked.
GRANT USAGE ON SCHEMA public TO rythmiq_scaler;
GRANT EXECUTE ON FUNCTION queue_backlog() TO rythmiq_scaler, rythmiq_api, rythmiq_worker;
