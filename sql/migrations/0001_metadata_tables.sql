-- The metadata tables warehouse_batch keeps inside the warehouse.
-- Migrations are numbered and append-only: never edit a released one, add the next number.

CREATE TABLE IF NOT EXISTS warehouse_batch.jobs (
    name            VARCHAR PRIMARY KEY,
    target_table    VARCHAR NOT NULL,
    endpoint        VARCHAR NOT NULL,
    definition      JSON NOT NULL,          -- every option of the job, as given
    created_at      TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS warehouse_batch.runs (
    run_id          VARCHAR PRIMARY KEY,
    job_name        VARCHAR NOT NULL,
    started_at      TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    finished_at     TIMESTAMPTZ,
    status          VARCHAR NOT NULL,       -- planned | submitted | finished
    row_count       BIGINT,
    request_count   BIGINT,                 -- distinct request bodies among the rows
    cached_count    BIGINT,                 -- requests that already had a result
    in_flight_count BIGINT,                 -- requests already in a live batch
    submitted_count BIGINT,                 -- requests this run put into new shards
    shard_count     INTEGER
);

-- One row per distinct request body. custom_id in the JSONL = request_hash. The body itself is
-- not stored: it is built from the job's rows whenever a shard is written (the shard files under
-- the work directory are the record of what was sent).
CREATE TABLE IF NOT EXISTS warehouse_batch.requests (
    request_hash    VARCHAR PRIMARY KEY,    -- sha256 hex of the canonical body text
    endpoint        VARCHAR NOT NULL,
    model           VARCHAR,
    line_bytes      BIGINT NOT NULL,        -- bytes of the JSONL line, newline included
    est_input_tokens BIGINT NOT NULL,       -- ceil(bytes of the body / 4)
    first_job       VARCHAR NOT NULL,
    shard_id        VARCHAR,                -- the shard it was last put in
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

-- One row per shard file; a shard becomes exactly one provider batch.
-- state: written -> uploading -> uploaded -> creating -> submitted -> collected
-- (the *ing states are intents recorded before the side effect, reconciled on resume).
CREATE TABLE IF NOT EXISTS warehouse_batch.batches (
    shard_id        VARCHAR PRIMARY KEY,
    job_name        VARCHAR NOT NULL,
    run_id          VARCHAR NOT NULL,
    endpoint        VARCHAR NOT NULL,
    model           VARCHAR,
    path            VARCHAR NOT NULL,
    line_count      INTEGER NOT NULL,
    byte_count      BIGINT NOT NULL,
    sha256          VARCHAR NOT NULL,
    state           VARCHAR NOT NULL,
    file_id         VARCHAR,
    batch_id        VARCHAR,
    status          VARCHAR,                -- the provider's batch status
    total_count     INTEGER,
    completed_count INTEGER,
    failed_count    INTEGER,
    errors          JSON,                   -- validation errors of a failed batch
    output_file_id  VARCHAR,
    error_file_id   VARCHAR,
    input_tokens    BIGINT,
    output_tokens   BIGINT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    intent_at       TIMESTAMPTZ,            -- when the last side effect was announced
    submitted_at    TIMESTAMPTZ,
    polled_at       TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ,            -- provider reached a terminal status
    collected_at    TIMESTAMPTZ
);

-- The answer to one request: a cache keyed by request_hash, shared by every job and run.
CREATE TABLE IF NOT EXISTS warehouse_batch.results (
    request_hash    VARCHAR PRIMARY KEY,
    status          VARCHAR NOT NULL,       -- completed | failed | expired | cancelled
    status_code     INTEGER,
    content         VARCHAR,
    finish_reason   VARCHAR,
    refusal         VARCHAR,
    model           VARCHAR,
    input_tokens    BIGINT,
    output_tokens   BIGINT,
    cached_tokens   BIGINT,
    reasoning_tokens BIGINT,
    error_code      VARCHAR,
    error_message   VARCHAR,
    provider_request_id VARCHAR,
    batch_id        VARCHAR,
    shard_id        VARCHAR,
    completed_at    TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

-- What an analyst reads first: rows of each job's last run by status.
CREATE OR REPLACE VIEW warehouse_batch.batch_status AS
SELECT job_name, shard_id, batch_id, state, status, line_count, total_count, completed_count, failed_count,
       created_at, submitted_at, finished_at, collected_at
FROM warehouse_batch.batches;

-- Which rows each job has (as of its last run) and the request each maps to.
CREATE TABLE IF NOT EXISTS warehouse_batch.job_rows (
    job_name        VARCHAR NOT NULL,
    custom_id       VARCHAR NOT NULL,
    request_hash    VARCHAR NOT NULL,
    PRIMARY KEY (job_name, custom_id)
);
