-- Requests of a collected shard that got no line in its files still end in exactly one state:
-- the batch's own outcome (failed validation, expired, cancelled) or 'failed/missing_result'.
-- A validation error that names a line lands on that line's request (results.load_batch looks the
-- line up in the shard file: $line_errors is a JSON list of {custom_id, code, message}).
-- Parameters: $shard_id, $batch_id, $status, $error_code, $error_message, $line_errors.
INSERT INTO warehouse_batch.results AS old
    (request_hash, status, error_code, error_message, batch_id, shard_id, completed_at)
SELECT r.request_hash, $status,
       coalesce(le.code, $error_code), coalesce(le.message, $error_message),
       $batch_id, $shard_id, current_timestamp
FROM warehouse_batch.requests AS r
LEFT JOIN (
    SELECT e ->> 'custom_id' AS custom_id, any_value(e ->> 'code') AS code, any_value(e ->> 'message') AS message
    FROM (SELECT unnest(CAST($line_errors AS JSON[])) AS e)
    GROUP BY ALL
) AS le ON le.custom_id = r.request_hash
LEFT JOIN warehouse_batch.results AS x ON x.request_hash = r.request_hash
WHERE r.shard_id = $shard_id
  AND (x.request_hash IS NULL OR (x.shard_id IS DISTINCT FROM $shard_id AND x.status <> 'completed'))
ON CONFLICT (request_hash) DO UPDATE SET
    status = excluded.status, status_code = NULL, content = NULL, finish_reason = NULL, refusal = NULL,
    model = NULL, input_tokens = NULL, output_tokens = NULL, cached_tokens = NULL, reasoning_tokens = NULL,
    error_code = excluded.error_code, error_message = excluded.error_message, provider_request_id = NULL,
    batch_id = excluded.batch_id, shard_id = excluded.shard_id, completed_at = excluded.completed_at
WHERE old.status <> 'completed';
