-- PostgreSQL version of 0003_cost.sql: sqlglot keeps DuckDB's GROUP BY ALL, which Postgres rejects.

/* Prices and spend. Prices are reloaded from warehouse_batch/data/prices.json (or the user's file) */
/* whenever a runner starts, so this table is a cache of the price list, not a source of truth. */
CREATE TABLE IF NOT EXISTS warehouse_batch.prices (
  model TEXT PRIMARY KEY, /* matched by longest prefix of the requested model */
  input_per_1m DOUBLE PRECISION NOT NULL, /* USD per 1M input tokens, synchronous list price */
  cached_input_per_1m DOUBLE PRECISION NOT NULL,
  output_per_1m DOUBLE PRECISION NOT NULL,
  batch_discount DOUBLE PRECISION NOT NULL /* the Batch API charges this fraction of the list price */
);

/* The price that applies to each request: the longest price-list prefix of its model. */
CREATE OR REPLACE VIEW warehouse_batch.request_prices AS
SELECT
  request_hash,
  price_model,
  input_per_1m,
  cached_input_per_1m,
  output_per_1m,
  batch_discount
FROM (
  SELECT
    r.request_hash,
    p.model AS price_model,
    p.input_per_1m,
    p.cached_input_per_1m,
    p.output_per_1m,
    p.batch_discount,
    ROW_NUMBER() OVER (PARTITION BY r.request_hash ORDER BY LENGTH(p.model) DESC NULLS LAST) AS _w
  FROM warehouse_batch.requests AS r
  JOIN warehouse_batch.prices AS p
    ON STARTS_WITH(r.model, p.model)
) AS _t
WHERE
  _w = 1;

/* What each answer cost, from its usage. Every request is counted once, whichever jobs share it; */
/* expired and cancelled batches contribute the requests they actually completed. */
CREATE OR REPLACE VIEW warehouse_batch.result_costs AS
SELECT
  res.request_hash,
  CAST((
    (
      COALESCE(res.input_tokens, 0) - COALESCE(res.cached_tokens, 0)
    ) * rp.input_per_1m + COALESCE(res.cached_tokens, 0) * rp.cached_input_per_1m + COALESCE(res.output_tokens, 0) * rp.output_per_1m
  ) * rp.batch_discount AS DOUBLE PRECISION) / 1e6 AS cost_usd
FROM warehouse_batch.results AS res
JOIN warehouse_batch.request_prices AS rp
  USING (request_hash)
WHERE
  NOT res.input_tokens IS NULL OR NOT res.output_tokens IS NULL;

/* Spend by job (the job that first asked), model and day. */
CREATE OR REPLACE VIEW warehouse_batch.spend AS
SELECT
  r.first_job AS job_name,
  COALESCE(res.model, r.model) AS model,
  CAST(res.completed_at AS DATE) AS day,
  COUNT(*) AS requests,
  SUM(res.input_tokens) AS input_tokens,
  SUM(res.cached_tokens) AS cached_tokens,
  SUM(res.output_tokens) AS output_tokens,
  SUM(rc.cost_usd) AS cost_usd
FROM warehouse_batch.results AS res
JOIN warehouse_batch.requests AS r
  USING (request_hash)
LEFT JOIN warehouse_batch.result_costs AS rc
  USING (request_hash)
WHERE
  NOT res.input_tokens IS NULL OR NOT res.output_tokens IS NULL
GROUP BY
  1, 2, 3;

/* Spend per batch. */
CREATE OR REPLACE VIEW warehouse_batch.batch_spend AS
SELECT
  res.batch_id,
  res.shard_id,
  COUNT(*) AS requests,
  SUM(res.input_tokens) AS input_tokens,
  SUM(res.output_tokens) AS output_tokens,
  SUM(rc.cost_usd) AS cost_usd
FROM warehouse_batch.results AS res
LEFT JOIN warehouse_batch.result_costs AS rc
  USING (request_hash)
GROUP BY
  1, 2;
