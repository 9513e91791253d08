-- One definer's spend today (UTC day), for their daily budget: what answers received today cost,
-- and the expected cost of requests still in flight, over the jobs they defined (a request is
-- charged to the job that first asked for it, as in the spend views).
SELECT
    (SELECT coalesce(sum(rc.cost_usd), 0)
     FROM warehouse_batch.results AS res
     JOIN warehouse_batch.result_costs AS rc ON rc.request_hash = res.request_hash
     JOIN warehouse_batch.requests AS r ON r.request_hash = res.request_hash
     JOIN warehouse_batch.job_definitions AS d ON d.name = r.first_job
     WHERE d.defined_by = $definer
       AND CAST(timezone('UTC', res.completed_at) AS DATE) = CAST(timezone('UTC', now()) AS DATE)) AS actual,
    (SELECT coalesce(sum((r.est_input_tokens * p.input_per_1m
                          + coalesce(r.est_output_expected, r.est_output_tokens, 0) * p.output_per_1m)
                         * p.batch_discount / 1e6), 0)
     FROM warehouse_batch.requests AS r
     JOIN warehouse_batch.request_attempts AS ra ON ra.request_hash = r.request_hash
     JOIN warehouse_batch.batches AS b ON b.shard_id = ra.shard_id
     JOIN warehouse_batch.request_prices AS p ON p.request_hash = r.request_hash
     JOIN warehouse_batch.job_definitions AS d ON d.name = r.first_job
     WHERE d.defined_by = $definer AND b.state <> 'collected'
       AND NOT EXISTS (SELECT 1 FROM warehouse_batch.results AS x WHERE x.request_hash = r.request_hash)) AS in_flight
