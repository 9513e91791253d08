-- Load the downloaded output/error files of batches of one endpoint into warehouse_batch.results,
-- in one streaming INSERT … SELECT (no sort, no index: DuckDB spills under its memory limit).
-- Parameters: $files (list of paths), $sources (JSON list of {{file, shard_id, batch_id}}).
-- Placeholders, filled by results.py from the endpoint's answer kind: {{body}} (the STRUCT type of
-- the response body: only the fields this endpoint answers with, so each line is parsed once into
-- exactly what is kept), {{answer}} (content, finish_reason, refusal, model, token counts and
-- embeddings as expressions over `b`, the body).
-- Only lines whose custom_id is a request put in that file's shard (request_shards) are kept, so a stale or
-- foreign line can never answer a request twice; the same custom_id on two lines of these files
-- (the provider repeating itself) is resolved afterwards by results.py, on the rows just loaded.
-- The check joins on one 64-bit hash of (request hash, shard): its table holds 8-byte keys, not two
-- strings per request (1M keys took ~160 MB as strings), and a foreign line gets in only if its hash
-- equals one of its shard's ≤ 50,000 requests' (odds ~1e-15). The build side is the shard's
-- requests as written here: results.py keeps DuckDB from swapping it for the answer lines, whose
-- count read_json underestimates by orders of magnitude.
INSERT INTO warehouse_batch.results
    (request_hash, status, status_code, content, finish_reason, refusal, model, input_tokens,
     output_tokens, cached_tokens, reasoning_tokens, error_code, error_message, provider_request_id,
     batch_id, shard_id, completed_at, embeddings)
SELECT
    custom_id AS request_hash,
    CASE WHEN response.status_code BETWEEN 200 AND 299 THEN 'completed'
         WHEN error.code = 'batch_expired' THEN 'expired'
         WHEN error.code = 'batch_cancelled' THEN 'cancelled'
         ELSE 'failed' END AS status,
    response.status_code,
    {answer},
    CASE WHEN NOT coalesce(response.status_code BETWEEN 200 AND 299, false) THEN
        coalesce(b.error.code, b.error.type, error.code, 'http_' || CAST(response.status_code AS VARCHAR)) END AS error_code,
    CASE WHEN NOT coalesce(response.status_code BETWEEN 200 AND 299, false) THEN
        coalesce(b.error.message, error.message) END AS error_message,
    response.request_id AS provider_request_id,
    src.batch_id,
    src.shard_id,
    current_timestamp AS completed_at,
    {embeddings} AS embeddings
FROM (
    SELECT custom_id, response, error, response.body AS b, filename
    FROM read_json($files, format = 'newline_delimited', filename = true, columns = {{
        custom_id: 'VARCHAR',
        response: 'STRUCT(status_code INTEGER, request_id VARCHAR, body STRUCT(
            {body},
            error STRUCT(message VARCHAR, type VARCHAR, code VARCHAR)))',
        error: 'STRUCT(code VARCHAR, message VARCHAR)'
    }})
) AS lines
JOIN (
    SELECT s ->> 'file' AS file, s ->> 'batch_id' AS batch_id, s ->> 'shard_id' AS shard_id
    FROM (SELECT unnest(CAST($sources AS JSON[])) AS s)
) AS src ON src.file = lines.filename
SEMI JOIN (
    SELECT hash(request_hash, shard_id) AS request_key FROM warehouse_batch.request_shards
    WHERE shard_id IN (SELECT unnest(CAST($sources AS JSON[])) ->> 'shard_id')
) AS req ON req.request_key = hash(lines.custom_id, src.shard_id);
