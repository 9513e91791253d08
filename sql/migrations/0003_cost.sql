-- Prices and spend. Prices are reloaded from warehouse_batch/data/prices.json (or the user's file)
-- whenever a runner starts, so this table is a cache of the price list, not a source of truth.
CREATE TABLE IF NOT EXISTS warehouse_batch.prices (
    model           VARCHAR PRIMARY KEY,    -- matched by longest prefix of the requested model
    input_per_1m    DOUBLE NOT NULL,        -- USD per 1M input tokens, synchronous list price
    cached_input_per_1m DOUBLE NOT NULL,
    output_per_1m   DOUBLE NOT NULL,
    batch_discount  DOUBLE NOT NULL         -- the Batch API charges this fraction of the list price
);

-- The price that applies to each request: the longest price-list prefix of its model.
CREATE OR REPLACE VIEW warehouse_batch.request_prices AS
SELECT r.request_hash, p.model AS price_model, p.input_per_1m, p.cached_input_per_1m, p.output_per_1m, p.batch_discount
FROM warehouse_batch.requests AS r
JOIN warehouse_batch.prices AS p ON starts_with(r.model, p.model)
QUALIFY row_number() OVER (PARTITION BY r.request_hash ORDER BY length(p.model) DESC) = 1;

-- What each answer cost, from its usage. Every request is counted once, whichever jobs share it;
-- expired and cancelled batches contribute the requests they actually completed.
CREATE OR REPLACE VIEW warehouse_batch.result_costs AS
SELECT res.request_hash,
       (  (coalesce(res.input_tokens, 0) - coalesce(res.cached_tokens, 0)) * rp.input_per_1m
        + coalesce(res.cached_tokens, 0) * rp.cached_input_per_1m
        + coalesce(res.output_tokens, 0) * rp.output_per_1m) * rp.batch_discount / 1e6 AS cost_usd
FROM warehouse_batch.results AS res
JOIN warehouse_batch.request_prices AS rp USING (request_hash)
WHERE res.input_tokens IS NOT NULL OR res.output_tokens IS NOT NULL;

-- Spend by job (the job that first asked), model and day.
CREATE OR REPLACE VIEW warehouse_batch.spend AS
SELECT r.first_job AS job_name,
       coalesce(res.model, r.model) AS model,
       CAST(res.completed_at AS DATE) AS day,
       count(*) AS requests,
       sum(res.input_tokens) AS input_tokens,
       sum(res.cached_tokens) AS cached_tokens,
       sum(res.output_tokens) AS output_tokens,
       sum(rc.cost_usd) AS cost_usd
FROM warehouse_batch.results AS res
JOIN warehouse_batch.requests AS r USING (request_hash)
LEFT JOIN warehouse_batch.result_costs AS rc USING (request_hash)
WHERE res.input_tokens IS NOT NULL OR res.output_tokens IS NOT NULL
GROUP BY ALL;

-- Spend per batch.
CREATE OR REPLACE VIEW warehouse_batch.batch_spend AS
SELECT res.batch_id, res.shard_id, count(*) AS requests, sum(res.input_tokens) AS input_tokens,
       sum(res.output_tokens) AS output_tokens, sum(rc.cost_usd) AS cost_usd
FROM warehouse_batch.results AS res
LEFT JOIN warehouse_batch.result_costs AS rc USING (request_hash)
GROUP BY ALL;
