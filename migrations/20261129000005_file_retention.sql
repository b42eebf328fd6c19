-- File retention: raw uploads are deleted a day after their job finished, outputs
-- after a week; the rows remain (history, metrics) and say when their files went.
ALTER TABLE jobs ADD COLUMN input_deleted_at TIMESTAMPTZ;
ALTER TABLE jobs ADD COLUMN output_deleted_at TIMESTAMPTZ;

-- What the periodic sweep looks for, oldest first, without scanning finished history.
CREATE INDEX jobs_raw_retention ON jobs (finished_at)
    WHERE input_deleted_at IS NULL AND state IN ('completed', 'failed');
CREATE INDEX jobs_output_retention ON jobs (finished_at)
    WHERE output_deleted_at IS NULL AND state = 'completed';
