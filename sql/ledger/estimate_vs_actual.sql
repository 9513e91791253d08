-- warehouse_batch.estimate_vs_actual for one job's latest runs (at most $limit with an estimate):
-- what each plan estimated beside what its answered requests cost. The view aggregates every
-- result of the warehouse before it can filter by job (seconds at a million answers, and every
-- report reads it); this aggregates only the results of those runs' batches. Prices as in
-- warehouse_batch.result_costs: the longest price-list prefix of the request's model.
-- Parameters: job, limit.
WITH latest AS (
    SELECT * FROM warehouse_batch.runs
    WHERE job_name = $job AND (est_cost_usd_expected IS NOT NULL OR est_input_tokens IS NOT NULL)
    ORDER BY started_at DESC
    LIMIT $limit
), answered AS (
    SELECT b.run_id, req.model, res.input_tokens, res.cached_tokens, res.output_tokens, res.reasoning_tokens
    FROM latest AS r
    JOIN warehouse_batch.batches AS b ON b.run_id = r.run_id
    JOIN warehouse_batch.results AS res ON res.shard_id = b.shard_id
    LEFT JOIN warehouse_batch.requests AS req ON req.request_hash = res.request_hash
), model_prices AS (
    SELECT m.model, p.input_per_1m, p.cached_input_per_1m, p.output_per_1m, p.batch_discount
    FROM (SELECT DISTINCT model FROM answered) AS m
    JOIN warehouse_batch.prices AS p ON starts_with(m.model, p.model)
    QUALIFY row_number() OVER (PARTITION BY m.model ORDER BY length(p.model) DESC) = 1
), actual AS (
    SELECT a.run_id,
           count(*) AS requests_answered,
           sum(coalesce(a.input_tokens, 0)) AS input_tokens,
           sum(a.cached_tokens) AS cached_tokens,
           sum(coalesce(a.output_tokens, 0)) AS output_tokens,
           sum(a.reasoning_tokens) AS reasoning_tokens,
           sum(CASE WHEN a.input_tokens IS NOT NULL OR a.output_tokens IS NOT NULL THEN
                   (  (coalesce(a.input_tokens, 0) - coalesce(a.cached_tokens, 0)) * mp.input_per_1m
                    + coalesce(a.cached_tokens, 0) * mp.cached_input_per_1m
                    + coalesce(a.output_tokens, 0) * mp.output_per_1m) * mp.batch_discount / 1e6
               END) AS cost_usd
    FROM answered AS a
    LEFT JOIN model_prices AS mp ON mp.model = a.model
    GROUP BY a.run_id
)
SELECT r.run_id, r.started_at, r.sample_size,
       r.submitted_count AS requests_sent,
       coalesce(a.requests_answered, 0) AS requests_answered,
       coalesce(a.requests_answered, 0) >= coalesce(r.submitted_count, 0) AS complete,
       r.est_input_tokens, r.est_input_method, a.input_tokens, a.cached_tokens,
       r.est_output_expected, r.est_output_upper_bound, r.est_output_method, a.output_tokens, a.reasoning_tokens,
       r.est_cost_usd_expected, r.est_cost_usd_upper_bound, a.cost_usd,
       a.input_tokens / nullif(r.est_input_tokens, 0) - 1 AS input_tokens_error,
       a.output_tokens / nullif(r.est_output_expected, 0) - 1 AS output_tokens_error,
       a.cost_usd / nullif(r.est_cost_usd_expected, 0) - 1 AS cost_error
FROM latest AS r
LEFT JOIN actual AS a USING (run_id)
ORDER BY r.started_at DESC
