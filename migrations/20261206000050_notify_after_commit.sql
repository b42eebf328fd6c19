-- A worker's completion (the queue's hot path) announces its job after it commits, in a
-- transaction of its own that does not wait for its WAL flush, instead of from this trigger.
-- Postgres serialises the commits of transactions that NOTIFY, flush included (PreCommit_Notify
-- in src/backend/commands/async.c), so a notifying completion could not share an fsync with the
-- others: the completions of all workers queued on that one lock (load/queue/README.md).
-- A transaction sets `rythmiq.notify_after_commit` to 'on' (for itself only) to say it will
-- announce its finished jobs itself; every other writer is announced here as before.
CREATE OR REPLACE FUNCTION rythmiq_notify_job_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IN ('completed', 'failed')
       AND (TG_OP = 'INSERT' OR NEW.state IS DISTINCT FROM OLD.state)
       AND coalesce(current_setting('rythmiq.notify_after_commit', true), '') <> 'on' THEN
        PERFORM pg_notify('rythmiq_job_events', NEW.id::text || ':' || NEW.state);
    END IF;
    RETURN NEW;
END;
$$;
