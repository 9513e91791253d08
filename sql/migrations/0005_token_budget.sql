-- Enqueued-token budgets: each request's estimated output tokens (its max_tokens, when set) and
-- each shard's estimated tokens (input + output), so submission can stay under a model's budget.
ALTER TABLE warehouse_batch.requests ADD COLUMN IF NOT EXISTS est_output_tokens BIGINT;
ALTER TABLE warehouse_batch.batches ADD COLUMN IF NOT EXISTS est_tokens BIGINT;
