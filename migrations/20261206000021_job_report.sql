-- The check report of a completed job's output: the file held against its rule, one line per
-- requirement (`{"portal", "compliant", "checks": [...]}`, as `POST /v1/checks` answers).
-- NULL for jobs completed before reports were made, and for unfinished or failed jobs.
ALTER TABLE jobs ADD COLUMN report JSONB;
