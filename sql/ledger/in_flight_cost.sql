-- Expected cost of one job's requests still in flight (in a live or unsent shard, no answer yet):
-- exact input tokens, expected output (the ceiling for requests planned before expectations were
-- recorded), at batch prices. Parameter: job.
SELECT coalesce(sum((r.est_input_tokens * p.input_per_1m
                     + coalesce(r.est_output_expected, r.est_output_tokens, 0) * p.output_per_1m)
                    * p.batch_discount / 1e6), 0)
FROM warehouse_batch.requests AS r
JOIN warehouse_batch.request_attempts AS ra USING (request_hash)
JOIN warehouse_batch.batches AS b ON b.shard_id = ra.shard_id
JOIN warehouse_batch.request_prices AS p USING (request_hash)
WHERE b.state <> 'collected' AND b.job_name = $job
  AND NOT EXISTS (SELECT 1 FROM warehouse_batch.results AS x WHERE x.request_hash = r.request_hash)
