-- PostgreSQL version of 0012_request_shards.sql: the same table and columns; the view picks each
-- request's current shard with DISTINCT ON (Postgres has no arg_max over a row value).
-- Indexes keep the lookups by request and by shard (the push of changed rows, analysts' joins) fast.
CREATE TABLE IF NOT EXISTS warehouse_batch.request_shards (
    request_hash    VARCHAR NOT NULL,
    shard_id        VARCHAR NOT NULL,
    line_no         BIGINT,
    attempt         INTEGER NOT NULL,
    assigned_at     TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);
CREATE INDEX request_shards_request_hash ON warehouse_batch.request_shards (request_hash);
CREATE INDEX request_shards_shard_id ON warehouse_batch.request_shards (shard_id);

INSERT INTO warehouse_batch.request_shards (request_hash, shard_id, line_no, attempt)
SELECT request_hash, shard_id, NULL, greatest(attempts, 1)
FROM warehouse_batch.requests WHERE shard_id IS NOT NULL;

ALTER TABLE warehouse_batch.requests DROP COLUMN shard_id;
ALTER TABLE warehouse_batch.requests DROP COLUMN attempts;

CREATE OR REPLACE VIEW warehouse_batch.request_attempts AS
SELECT DISTINCT ON (request_hash)
       request_hash, shard_id, line_no,
       max(attempt) OVER (PARTITION BY request_hash) AS attempts
FROM warehouse_batch.request_shards
ORDER BY request_hash, attempt DESC, assigned_at DESC, shard_id DESC;

ALTER TABLE warehouse_batch.jobs ADD COLUMN IF NOT EXISTS rows_fingerprint VARCHAR;
