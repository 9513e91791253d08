-- Requests of a collected shard that got no line in its files still end in exactly one state:
-- the batch's own outcome (failed validation, expired, cancelled) or 'failed/missing_result'.
-- A validation error that names a line lands on that line's request (results.load_batch looks the
-- line up in the shard file: line_errors is a JSON list of {custom_id, code, message}).
-- Parameters (named, each statement gets those it uses): shard_id, batch_id, status, error_code,
-- error_message, line_errors.
-- A completed answer is never replaced; an unsuccessful result of another shard gives way to this
-- shard's outcome (results has no key to upsert through: delete, then insert, in the caller's
-- transaction).
DELETE FROM warehouse_batch.results AS x
WHERE x.status <> 'completed' AND x.shard_id IS DISTINCT FROM $shard_id
  AND x.request_hash IN (SELECT request_hash FROM warehouse_batch.request_shards WHERE shard_id = $shard_id);

INSERT INTO warehouse_batch.results
    (request_hash, status, error_code, error_message, batch_id, shard_id, completed_at)
SELECT r.request_hash, $status,
       coalesce(le.code, $error_code), coalesce(le.message, $error_message),
       $batch_id, $shard_id, current_timestamp
FROM warehouse_batch.request_shards AS r
LEFT JOIN (
    SELECT e ->> 'custom_id' AS custom_id, any_value(e ->> 'code') AS code, any_value(e ->> 'message') AS message
    FROM (SELECT unnest(CAST($line_errors AS JSON[])) AS e)
    GROUP BY ALL
) AS le ON le.custom_id = r.request_hash
WHERE r.shard_id = $shard_id
  AND NOT EXISTS (SELECT 1 FROM warehouse_batch.results AS x WHERE x.request_hash = r.request_hash);
