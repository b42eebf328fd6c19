-- A worker process's start-up CPU (runtime, connections, loading the OCR models) is charged to
-- the first job it completes, so that the rows of a process add up to what it spent; this column
-- says how much of that row's total_cpu_seconds it is (0 on every other row).
ALTER TABLE cpu_metrics
    ADD COLUMN startup_cpu_seconds DOUBLE PRECISION NOT NULL DEFAULT 0
        CHECK (startup_cpu_seconds >= 0);
