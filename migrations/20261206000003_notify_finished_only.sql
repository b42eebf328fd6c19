-- Announce only the state changes a waiter acts on: a job or batch that finished (completed or
-- failed); batches share this function (20261129000007_batches.sql).
-- `GET /v1/jobs/{id}?wait=N` and the batch waits return only on a terminal state, so the
-- notifications of a new job and of a claimed one woke nobody, and cost every such commit a
-- turn on Postgres' global NOTIFY queue lock (commits that notify are serialised; see
-- PreCommit_Notify in src/backend/commands/async.c), which capped the claim rate
-- (load/queue/README.md).
CREATE OR REPLACE FUNCTION rythmiq_notify_job_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IN ('completed', 'failed')
       AND (TG_OP = 'INSERT' OR NEW.state IS DISTINCT FROM OLD.state) THEN
        PERFORM pg_notify('rythmiq_job_events', NEW.id::text || ':' || NEW.state);
    END IF;
    RETURN NEW;
END;
$$;
