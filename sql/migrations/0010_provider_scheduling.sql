-- Provider trouble is scheduling: a shard refused for quota (or failed by a spurious provider error)
-- goes back in line with a time before which it is not sent again, without touching its requests'
-- attempts. Input files are deleted once their batch is loaded. Quotas learned from refusals.
ALTER TABLE warehouse_batch.batches ADD COLUMN IF NOT EXISTS not_before TIMESTAMPTZ;
ALTER TABLE warehouse_batch.batches ADD COLUMN IF NOT EXISTS deferrals INTEGER DEFAULT 0;
ALTER TABLE warehouse_batch.batches ADD COLUMN IF NOT EXISTS deferred_reason VARCHAR;
ALTER TABLE warehouse_batch.batches ADD COLUMN IF NOT EXISTS input_deleted_at TIMESTAMPTZ;
ALTER TABLE warehouse_batch.batches ADD COLUMN IF NOT EXISTS parent_shard_id VARCHAR;
-- Per provider location and model: the enqueued-token quota a refusal stated (or implied).
CREATE TABLE IF NOT EXISTS warehouse_batch.quotas (
    location        VARCHAR NOT NULL,
    model           VARCHAR NOT NULL,
    enqueued_tokens BIGINT NOT NULL,
    learned_at      TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (location, model)
);
