-- The Rythmiq domain: portal rules, jobs, documents, credits and the observability tables.
-- The queue itself lives in the `apalis` schema, created by apalis-postgres' own migrations.

CREATE TABLE portal_schemas (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    slug             TEXT        NOT NULL,
    version          INTEGER     NOT NULL DEFAULT 1,
    name             TEXT        NOT NULL,
    kind             TEXT        NOT NULL CHECK (kind IN ('photo', 'signature', 'document')),
    width            INTEGER     NOT NULL CHECK (width BETWEEN 16 AND 10000),
    height           INTEGER     NOT NULL CHECK (height BETWEEN 16 AND 10000),
    dpi              INTEGER     NOT NULL CHECK (dpi BETWEEN 50 AND 1200),
    format           TEXT        NOT NULL CHECK (format IN ('jpeg', 'png', 'pdf')),
    min_kb           INTEGER     NOT NULL DEFAULT 0 CHECK (min_kb >= 0),
    max_kb           INTEGER     NOT NULL CHECK (max_kb > 0),
    filename_pattern TEXT        NOT NULL DEFAULT '{job_id}',
    background       TEXT        NOT NULL DEFAULT 'any',
    source_url       TEXT,
    active           BOOLEAN     NOT NULL DEFAULT TRUE,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (slug, version),
    CHECK (min_kb < max_kb)
);
-- At most one active version per slug: that is the one new jobs use.
CREATE UNIQUE INDEX portal_schemas_one_active ON portal_schemas (slug) WHERE active;

CREATE TABLE jobs (
    id                     UUID PRIMARY KEY,
    user_id                UUID        NOT NULL,
    portal_schema_id       UUID        NOT NULL REFERENCES portal_schemas (id),
    portal_schema_version  INTEGER     NOT NULL,
    state                  TEXT        NOT NULL DEFAULT 'pending'
                           CHECK (state IN ('pending', 'processing', 'completed', 'failed')),
    attempts               INTEGER     NOT NULL DEFAULT 0,
    max_attempts           INTEGER     NOT NULL DEFAULT 3,
    error_code             TEXT,
    error_message          TEXT,
    correlation_id         TEXT        NOT NULL,
    idempotency_key        TEXT,
    request_fingerprint    TEXT        NOT NULL,
    -- apalis task id (a ULID) of the queue entry that drives this job.
    task_id                TEXT        NOT NULL,
    input_key              TEXT        NOT NULL,
    input_bytes            BIGINT      NOT NULL,
    input_content_type     TEXT,
    output_key             TEXT,
    output_bytes           BIGINT,
    output_width           INTEGER,
    output_height          INTEGER,
    output_dpi             INTEGER,
    output_format          TEXT,
    output_filename        TEXT,
    warnings               JSONB       NOT NULL DEFAULT '[]'::jsonb,
    worker_id              TEXT,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at             TIMESTAMPTZ,
    finished_at            TIMESTAMPTZ,
    CHECK ((state = 'completed') = (output_key IS NOT NULL AND finished_at IS NOT NULL)
           OR state <> 'completed')
);
CREATE UNIQUE INDEX jobs_user_idempotency ON jobs (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_user_created ON jobs (user_id, created_at DESC);
CREATE INDEX jobs_state_created ON jobs (state, created_at) WHERE state IN ('pending', 'processing');
CREATE UNIQUE INDEX jobs_task_id ON jobs (task_id);

-- Waiters (GET /v1/jobs/{id}?wait=N) LISTEN on this channel: every state change is announced
-- by the database itself, so no code path can forget to notify.
CREATE FUNCTION rythmiq_notify_job_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.state IS DISTINCT FROM OLD.state THEN
        PERFORM pg_notify('rythmiq_job_events', NEW.id::text || ':' || NEW.state);
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER jobs_notify_change AFTER INSERT OR UPDATE OF state ON jobs
    FOR EACH ROW EXECUTE FUNCTION rythmiq_notify_job_change();

CREATE TABLE documents (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          UUID        NOT NULL,
    job_id           UUID        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    portal_schema_id UUID        NOT NULL REFERENCES portal_schemas (id),
    master_key       TEXT,
    output_key       TEXT        NOT NULL,
    filename         TEXT        NOT NULL,
    content_type     TEXT        NOT NULL,
    bytes            BIGINT      NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (job_id)
);
CREATE INDEX documents_user ON documents (user_id, created_at DESC);

CREATE TABLE user_credits (
    user_id    UUID PRIMARY KEY,
    balance    INTEGER     NOT NULL DEFAULT 0 CHECK (balance >= 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Per-job CPU accounting: one row per finished job, filled in by the worker.
CREATE TABLE cpu_metrics (
    id                      BIGSERIAL PRIMARY KEY,
    job_id                  UUID        NOT NULL,
    worker_id               TEXT,
    execution_temperature   TEXT        NOT NULL CHECK (execution_temperature IN ('cold', 'warm')),
    processing_path         TEXT        NOT NULL CHECK (processing_path IN ('fast', 'standard')),
    total_cpu_seconds       DOUBLE PRECISION NOT NULL,
    total_wall_seconds      DOUBLE PRECISION NOT NULL,
    fetch_cpu_seconds       DOUBLE PRECISION,
    quality_cpu_seconds     DOUBLE PRECISION,
    pre_ocr_cpu_seconds     DOUBLE PRECISION,
    enhancement_cpu_seconds DOUBLE PRECISION,
    ocr_cpu_seconds         DOUBLE PRECISION,
    schema_cpu_seconds      DOUBLE PRECISION,
    upload_cpu_seconds      DOUBLE PRECISION,
    input_file_size_bytes   BIGINT,
    output_file_size_bytes  BIGINT,
    quality_score           DOUBLE PRECISION,
    ocr_confidence          DOUBLE PRECISION,
    enhancement_skipped     BOOLEAN,
    page_count              INTEGER,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX cpu_metrics_job ON cpu_metrics (job_id);
CREATE INDEX cpu_metrics_created ON cpu_metrics (created_at);

-- Failures, for pattern analysis and alerting.
CREATE TABLE error_events (
    id              BIGSERIAL PRIMARY KEY,
    job_id          UUID        NOT NULL,
    error_code      TEXT        NOT NULL,
    error_stage     TEXT        NOT NULL,
    retryable       BOOLEAN     NOT NULL DEFAULT FALSE,
    attempt         INTEGER,
    correlation_id  TEXT,
    processing_path TEXT,
    quality_score   DOUBLE PRECISION,
    message         TEXT,
    worker_id       TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX error_events_created ON error_events (created_at);
CREATE INDEX error_events_code ON error_events (error_code, created_at);
