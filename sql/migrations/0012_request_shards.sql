-- Shard membership is append-only: one row per time a request is put in a shard (a send, or the
-- split of an unsent shard), instead of `requests.shard_id` / `requests.attempts` updated in place.
-- An UPDATE of every request of a job keeps DuckDB's per-row undo data in memory until commit (it
-- does not spill), so a 10-million-request run ran out of memory recording its shards; an INSERT
-- streams and spills. Each row also says where the request's line is in its shard file (0-based),
-- so a lost work directory can be rebuilt from the warehouse, line for line.
-- Invariant (kept by the ledger): a request without a result is in at most one shard that is not
-- `collected`; the request's current shard is its row with the highest (attempt, assigned_at).
CREATE TABLE IF NOT EXISTS warehouse_batch.request_shards (
    request_hash    VARCHAR NOT NULL,
    shard_id        VARCHAR NOT NULL,
    line_no         BIGINT,                 -- 0-based line in the shard file (NULL: recorded before 0012)
    attempt         INTEGER NOT NULL,       -- which send of the request this is (a split keeps its shard's)
    assigned_at     TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

INSERT INTO warehouse_batch.request_shards (request_hash, shard_id, line_no, attempt)
SELECT request_hash, shard_id, NULL, greatest(attempts, 1)
FROM warehouse_batch.requests WHERE shard_id IS NOT NULL;

ALTER TABLE warehouse_batch.requests DROP COLUMN shard_id;
ALTER TABLE warehouse_batch.requests DROP COLUMN attempts;

-- Each request's current shard, its line there, and how many times it was sent.
CREATE OR REPLACE VIEW warehouse_batch.request_attempts AS
SELECT request_hash,
       arg_max(shard_id, (attempt, assigned_at, shard_id)) AS shard_id,
       arg_max(line_no, (attempt, assigned_at, shard_id)) AS line_no,
       max(attempt) AS attempts
FROM warehouse_batch.request_shards
GROUP BY request_hash;

-- What the job's rows table was compiled from (compile.rows_fingerprint: the query's rows, the
-- job, the SQL that builds bodies and hashes). A re-run whose query gives the same fingerprint
-- reuses the rows table instead of building and hashing every body again; publish compares it
-- instead of hashing every value of the rows table.
ALTER TABLE warehouse_batch.jobs ADD COLUMN IF NOT EXISTS rows_fingerprint VARCHAR;
