-- The stage's distinct requests that have no result and sit in no live shard (before persisting):
-- one row per request with what sharding and estimates need. Placeholders: {stage}, {endpoint}.
SELECT __wb_request_hash AS request_hash, {endpoint} AS endpoint, any_value(__wb_model) AS model,
       any_value(__wb_line_bytes) AS line_bytes, any_value(__wb_tokens) AS input_tokens,
       any_value(__wb_max_output) AS max_output, any_value(__wb_output_key) AS output_key,
       any_value(__wb_tokens) + coalesce(any_value(__wb_max_output), 0) AS tokens
FROM {stage} AS s
WHERE NOT EXISTS (SELECT 1 FROM warehouse_batch.results AS x WHERE x.request_hash = s.__wb_request_hash)
  AND NOT EXISTS (SELECT 1 FROM warehouse_batch.request_shards AS r JOIN warehouse_batch.batches AS b ON b.shard_id = r.shard_id
                  WHERE r.request_hash = s.__wb_request_hash AND b.state <> 'collected')
GROUP BY __wb_request_hash
