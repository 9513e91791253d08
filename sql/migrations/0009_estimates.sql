-- Estimates people can trust (#15): each request's expected output, each run's estimate, a
-- daily budget stored in the warehouse, and the view that sets every run's estimate beside what
-- its requests actually cost.

-- est_input_tokens now holds the model's exact token count (or, for very large jobs, bytes / 4
-- scaled by the largest tokens-per-byte ratio of a counted sample); est_output_tokens stays the
-- request's ceiling (max_tokens & co.). est_output_expected is the expected answer length, and
-- output_key groups requests whose answers are alike (endpoint, model and output schema): the
-- answers of earlier requests with the same key are the best guess for the next ones.
ALTER TABLE warehouse_batch.requests ADD COLUMN IF NOT EXISTS est_output_expected BIGINT;
ALTER TABLE warehouse_batch.requests ADD COLUMN IF NOT EXISTS output_key VARCHAR;

-- What a run's plan estimated for the requests it sent (NULL for retries and older runs).
ALTER TABLE warehouse_batch.runs ADD COLUMN IF NOT EXISTS sample_size BIGINT;          -- run --sample N
ALTER TABLE warehouse_batch.runs ADD COLUMN IF NOT EXISTS est_input_tokens BIGINT;
ALTER TABLE warehouse_batch.runs ADD COLUMN IF NOT EXISTS est_input_method VARCHAR;    -- exact | sample of N, ±x%
ALTER TABLE warehouse_batch.runs ADD COLUMN IF NOT EXISTS est_output_expected BIGINT;
ALTER TABLE warehouse_batch.runs ADD COLUMN IF NOT EXISTS est_output_upper_bound BIGINT;
ALTER TABLE warehouse_batch.runs ADD COLUMN IF NOT EXISTS est_output_method VARCHAR;
ALTER TABLE warehouse_batch.runs ADD COLUMN IF NOT EXISTS est_cost_usd_expected DOUBLE;
ALTER TABLE warehouse_batch.runs ADD COLUMN IF NOT EXISTS est_cost_usd_upper_bound DOUBLE;

-- Settings of the whole warehouse, read by every client (CLI, Python, dbt, a worker):
-- daily_budget_usd (see `warehouse-batch budget`).
CREATE TABLE IF NOT EXISTS warehouse_batch.settings (
    name            VARCHAR PRIMARY KEY,
    value           VARCHAR,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

-- Per job and run: what the plan estimated for the requests the run sent, beside what those
-- requests actually used and cost once answered (a request answered by a later retry counts for
-- the retry's run). complete: every request the run sent has its answer.
CREATE OR REPLACE VIEW warehouse_batch.estimate_vs_actual AS
WITH actual AS (
    SELECT b.run_id,
           count(*) AS requests_answered,
           sum(coalesce(res.input_tokens, 0)) AS input_tokens,
           sum(res.cached_tokens) AS cached_tokens,
           sum(coalesce(res.output_tokens, 0)) AS output_tokens,  -- reasoning included, as the service bills them
           sum(res.reasoning_tokens) AS reasoning_tokens,
           sum(rc.cost_usd) AS cost_usd
    FROM warehouse_batch.results AS res
    JOIN warehouse_batch.batches AS b ON b.shard_id = res.shard_id
    LEFT JOIN warehouse_batch.result_costs AS rc USING (request_hash)
    GROUP BY b.run_id
)
SELECT r.job_name, r.run_id, r.started_at, r.sample_size,
       r.submitted_count AS requests_sent,
       coalesce(a.requests_answered, 0) AS requests_answered,
       coalesce(a.requests_answered, 0) >= coalesce(r.submitted_count, 0) AS complete,
       r.est_input_tokens, r.est_input_method, a.input_tokens, a.cached_tokens,
       r.est_output_expected, r.est_output_upper_bound, r.est_output_method, a.output_tokens, a.reasoning_tokens,
       r.est_cost_usd_expected, r.est_cost_usd_upper_bound, a.cost_usd,
       a.input_tokens / nullif(r.est_input_tokens, 0) - 1 AS input_tokens_error,
       a.output_tokens / nullif(r.est_output_expected, 0) - 1 AS output_tokens_error,
       a.cost_usd / nullif(r.est_cost_usd_expected, 0) - 1 AS cost_error
FROM warehouse_batch.runs AS r
LEFT JOIN actual AS a USING (run_id)
WHERE r.est_cost_usd_expected IS NOT NULL OR r.est_input_tokens IS NOT NULL;
