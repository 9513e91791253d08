-- Per (job, custom_id): the request whose answer the job last published as completed, and when it
-- first did. It lets a row keep its last good answer (marked stale) while a changed request is in
-- flight, and gives each job a monotonic `published_at` for incremental models downstream: the
-- time this job first published the row's current answer, cache hits included (a cached answer's
-- completed_at can be days old). Written only by publish, in the transaction that builds the
-- output table. Keyless like job_rows (0011): publish deletes then inserts only the changed pairs.
CREATE TABLE IF NOT EXISTS warehouse_batch.answered_rows (
    job_name     VARCHAR NOT NULL,
    custom_id    VARCHAR NOT NULL,
    request_hash VARCHAR NOT NULL,
    published_at TIMESTAMPTZ NOT NULL
);
