-- (Re)build a job's output table: each row of its query joined to its result, one status per row.
-- Placeholders: {target} (quoted table), {rows} (the job's rows table), {carried} (query columns).
CREATE OR REPLACE TABLE {target} AS
SELECT {carried},
       res.content,
       coalesce(res.status, 'pending') AS status,
       res.error_code,
       res.error_message,
       res.finish_reason,
       res.refusal,
       coalesce(res.model, req.model) AS model,
       res.input_tokens,
       res.output_tokens,
       q.__wb_request_hash AS request_hash,
       coalesce(res.batch_id, b.batch_id) AS batch_id,
       CASE WHEN res.status = 'completed' THEN res.completed_at END AS completed_at
FROM {rows} AS q
LEFT JOIN warehouse_batch.results AS res ON res.request_hash = q.__wb_request_hash
LEFT JOIN warehouse_batch.requests AS req ON req.request_hash = q.__wb_request_hash
LEFT JOIN warehouse_batch.batches AS b ON b.shard_id = req.shard_id;
