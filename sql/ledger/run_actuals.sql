-- Per model: the requests one run ($run_id) sent, how many came back with a result, and what
-- those used and cost (the result_costs view: batch prices, cached input included).
WITH sent AS (
    SELECT model, sum(line_count) AS sent FROM warehouse_batch.batches WHERE run_id = $run_id GROUP BY model
), answered AS (
    SELECT b.model, count(*) AS answered, sum(res.input_tokens) AS input_tokens,
           sum(res.output_tokens) AS output_tokens, sum(rc.cost_usd) AS cost_usd
    FROM warehouse_batch.results AS res
    JOIN warehouse_batch.batches AS b ON b.shard_id = res.shard_id
    LEFT JOIN warehouse_batch.result_costs AS rc USING (request_hash)
    WHERE b.run_id = $run_id
    GROUP BY b.model
)
SELECT sent.model, sent.sent, coalesce(answered.answered, 0) AS answered, answered.input_tokens,
       answered.output_tokens, answered.cost_usd
FROM sent LEFT JOIN answered USING (model)
ORDER BY sent.model
