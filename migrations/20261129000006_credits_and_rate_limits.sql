-- Credits: what a job was charged, so a refund returns exactly that, once.
ALTER TABLE jobs ADD COLUMN credits_charged INTEGER NOT NULL DEFAULT 0
    CHECK (credits_charged >= 0);
-- The per-user rate window reads jobs_user_created (user_id, created_at DESC).
