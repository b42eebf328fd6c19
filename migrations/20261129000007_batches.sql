-- Batches: several uploads for one portal application (photo + signature + a
-- document), one job per file, packaged as one ZIP when every job has finished.
--
-- processing -> packaging -> completed   (at least one file in the ZIP)
--                         -> failed      (no file succeeded, or packaging kept failing)
-- A batch leaves `processing` only when none of its jobs is pending or processing; whichever
-- worker records the last job's outcome claims it (`packaging`), and the maintenance sweep
-- claims any batch that was missed or whose packager died.
CREATE TABLE batches (
    id                   UUID PRIMARY KEY,
    -- The owner; row-level security keys on it.
    user_id              UUID        NOT NULL,
    state                TEXT        NOT NULL DEFAULT 'processing'
                         CHECK (state IN ('processing', 'packaging', 'completed', 'failed')),
    correlation_id       TEXT        NOT NULL,
    idempotency_key      TEXT,
    -- SHA-256 over every (portal, file) pair in order: a repeat with the same key must match.
    request_fingerprint  TEXT        NOT NULL,
    file_count           INTEGER     NOT NULL CHECK (file_count > 0),
    -- The package: output/{user_id}/{batch_id}/{ts}_output.zip.enc, sealed for the batch id.
    zip_key              TEXT,
    zip_bytes            BIGINT,
    zip_files            INTEGER,
    zip_deleted_at       TIMESTAMPTZ,
    -- The package's manifest.json (also kept when no ZIP was made).
    report               JSONB,
    -- PACKAGING_FAILED or ALL_FILES_FAILED when the batch failed.
    error_code           TEXT,
    error_message        TEXT,
    packaging_attempts   INTEGER     NOT NULL DEFAULT 0,
    packaging_started_at TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at          TIMESTAMPTZ,
    CHECK (state <> 'completed' OR (zip_key IS NOT NULL AND finished_at IS NOT NULL)),
    CHECK (state <> 'failed' OR (error_code IS NOT NULL AND finished_at IS NOT NULL))
);
CREATE UNIQUE INDEX batches_user_idempotency ON batches (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX batches_user_created ON batches (user_id, created_at DESC);
-- What the sweep looks for: batches not finished yet.
CREATE INDEX batches_open ON batches (created_at) WHERE state IN ('processing', 'packaging');
-- Package retention, oldest first.
CREATE INDEX batches_zip_retention ON batches (finished_at)
    WHERE zip_key IS NOT NULL AND zip_deleted_at IS NULL;

-- A job's batch and its position in the request (the n-th file), and the upload's name as the
-- storage key holds it (sanitised), so a package can say which upload failed.
ALTER TABLE jobs ADD COLUMN batch_id UUID REFERENCES batches (id);
ALTER TABLE jobs ADD COLUMN batch_index INTEGER CHECK (batch_index >= 0);
ALTER TABLE jobs ADD COLUMN upload_filename TEXT;
ALTER TABLE jobs ADD CONSTRAINT jobs_batch_index_with_batch
    CHECK ((batch_id IS NULL) = (batch_index IS NULL));
CREATE UNIQUE INDEX jobs_batch ON jobs (batch_id, batch_index) WHERE batch_id IS NOT NULL;

-- Waiters on GET /v1/batches/{id}?wait=N hear batch state changes on the jobs' channel, in the
-- same `<id>:<state>` form (ids are UUIDv4 and never shared between a job and a batch), from the
-- jobs' own trigger function (it reads only `id` and `state`).
CREATE TRIGGER batches_notify_change AFTER INSERT OR UPDATE OF state ON batches
    FOR EACH ROW EXECUTE FUNCTION rythmiq_notify_job_change();
