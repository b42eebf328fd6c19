-- One database login per process kind, each a member of exactly one of the roles the migrations
-- create (README, "Database roles and row-level security"). Run it once, as the login that
-- migrates (a managed Postgres needs no superuser for this), before or after the first
-- `rythmiq migrate`: it creates the three group roles when they do not exist yet, as the
-- migrations do. Then give each login its password from your secret store:
--
--   psql "$MIGRATE_DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/db/logins.sql
--   psql "$MIGRATE_DATABASE_URL" -c "\password rythmiq_api_login"   # and the other two
--
-- Re-running it changes nothing. tests/fleet.rs runs this file and connects as these logins.
DO $$
DECLARE
    login_name TEXT;
    role_name TEXT;
BEGIN
    FOR login_name, role_name IN VALUES ('rythmiq_api_login', 'rythmiq_api'),
                              ('rythmiq_worker_login', 'rythmiq_worker'),
                              ('rythmiq_scaler_login', 'rythmiq_scaler')
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = login_name) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', login_name);
        END IF;
        EXECUTE format('GRANT %I TO %I', role_name, login_name);
    END LOOP;
END $$;

-- The services switch to their role on every connection (SET ROLE); logged in as a member of
-- nothing else, they cannot leave it. Their pools bound their connections; the limits here are
-- a backstop against a misconfigured pool (README "Postgres connections per process").
ALTER ROLE rythmiq_api_login CONNECTION LIMIT 400;
ALTER ROLE rythmiq_worker_login CONNECTION LIMIT 400;
-- The autoscaler asks one question every polling interval: a few connections, a short timeout.
ALTER ROLE rythmiq_scaler_login CONNECTION LIMIT 5;
ALTER ROLE rythmiq_scaler_login SET statement_timeout = '5s';
ALTER ROLE rythmiq_scaler_login SET default_transaction_read_only = on;
