-- Today's spend (UTC day) across every job of the warehouse, for the daily budget:
-- actual: what the answers received today cost (their usage at batch prices, cached input included);
-- in_flight: what requests without an answer that sit in a live or unsent shard are expected to
-- cost (their exact input tokens, their expected output; the ceiling for requests planned before
-- expected outputs were recorded).
SELECT
    (SELECT coalesce(sum(rc.cost_usd), 0)
     FROM warehouse_batch.results AS res JOIN warehouse_batch.result_costs AS rc USING (request_hash)
     WHERE CAST(timezone('UTC', res.completed_at) AS DATE) = CAST(timezone('UTC', now()) AS DATE)) AS actual,
    (SELECT coalesce(sum((r.est_input_tokens * p.input_per_1m
                          + coalesce(r.est_output_expected, r.est_output_tokens, 0) * p.output_per_1m)
                         * p.batch_discount / 1e6), 0)
     FROM warehouse_batch.requests AS r
     JOIN warehouse_batch.request_shards AS rs USING (request_hash)
     JOIN warehouse_batch.batches AS b ON b.shard_id = rs.shard_id
     JOIN warehouse_batch.request_prices AS p USING (request_hash)
     WHERE b.state <> 'collected'
       AND NOT EXISTS (SELECT 1 FROM warehouse_batch.results AS x WHERE x.request_hash = r.request_hash)) AS in_flight
