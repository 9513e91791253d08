-- Load the downloaded output/error files of one or more batches into warehouse_batch.results.
-- Parameters: $files (list of paths), $sources (JSON list of {file, batch_id, shard_id}: which batch
-- each file belongs to). Lines whose custom_id is no request of that shard are ignored.
-- An explicit STRUCT schema lets DuckDB parse each line once; keys a line lacks come back NULL, extra
-- keys are ignored, so chat, responses, embeddings and moderation bodies share one reader.
-- A completed answer is never overwritten (a late duplicate line cannot undo a paid result).
-- content holds the answer text (chat/completions text, responses output_text, moderation results
-- as JSON); embedding vectors go to `embeddings` (FLOAT[][], in input order), not into content.
INSERT INTO warehouse_batch.results AS old
    (request_hash, status, status_code, content, finish_reason, refusal, model, input_tokens,
     output_tokens, cached_tokens, reasoning_tokens, error_code, error_message, provider_request_id,
     batch_id, shard_id, completed_at, embeddings)
SELECT DISTINCT ON (custom_id)
    custom_id AS request_hash,
    CASE WHEN response.status_code BETWEEN 200 AND 299 THEN 'completed'
         WHEN error.code = 'batch_expired' THEN 'expired'
         WHEN error.code = 'batch_cancelled' THEN 'cancelled'
         ELSE 'failed' END AS status,
    response.status_code,
    CASE
        WHEN b.choices IS NOT NULL THEN coalesce(b.choices[1].message.content, b.choices[1].text)
        WHEN b.output IS NOT NULL THEN nullif(array_to_string(flatten(list_transform(
                 list_filter(b.output, lambda o: o.type = 'message'),
                 lambda o: list_transform(list_filter(o.content, lambda c: c.type = 'output_text'), lambda c: c.text))), ''), '')
        WHEN b.results IS NOT NULL THEN CAST(b.results AS VARCHAR)
    END AS content,
    coalesce(b.choices[1].finish_reason, b.incomplete_details.reason,
             CASE WHEN b.output IS NOT NULL THEN b.status END) AS finish_reason,
    coalesce(b.choices[1].message.refusal,
             list_filter(flatten(list_transform(b.output, lambda o: o.content)), lambda c: c.type = 'refusal')[1].refusal) AS refusal,
    b.model,
    coalesce(b.usage.prompt_tokens, b.usage.input_tokens) AS input_tokens,
    coalesce(b.usage.completion_tokens, b.usage.output_tokens) AS output_tokens,
    coalesce(b.usage.prompt_tokens_details.cached_tokens, b.usage.input_tokens_details.cached_tokens) AS cached_tokens,
    coalesce(b.usage.completion_tokens_details.reasoning_tokens, b.usage.output_tokens_details.reasoning_tokens) AS reasoning_tokens,
    CASE WHEN NOT coalesce(response.status_code BETWEEN 200 AND 299, false) THEN
        coalesce(b.error.code, b.error.type, error.code, 'http_' || CAST(response.status_code AS VARCHAR)) END AS error_code,
    CASE WHEN NOT coalesce(response.status_code BETWEEN 200 AND 299, false) THEN
        coalesce(b.error.message, error.message) END AS error_message,
    response.request_id AS provider_request_id,
    src.batch_id,
    src.shard_id,
    current_timestamp AS completed_at,
    -- A vector that is not a list of numbers (e.g. base64 text) becomes a NULL item; publish flags it.
    CASE WHEN b.data IS NOT NULL THEN list_transform(list_sort(b.data), lambda d: TRY_CAST(d.embedding AS FLOAT[])) END
        AS embeddings
FROM (
    SELECT custom_id, response, error, response.body AS b, filename
    FROM read_json($files, format = 'newline_delimited', filename = true, columns = {
        id: 'VARCHAR',
        custom_id: 'VARCHAR',
        response: 'STRUCT(status_code INTEGER, request_id VARCHAR, body STRUCT(
            model VARCHAR,
            choices STRUCT(message STRUCT(content VARCHAR, refusal VARCHAR), text VARCHAR, finish_reason VARCHAR)[],
            output STRUCT(type VARCHAR, content STRUCT(type VARCHAR, text VARCHAR, refusal VARCHAR)[])[],
            status VARCHAR,
            incomplete_details STRUCT(reason VARCHAR),
            data STRUCT("index" INTEGER, embedding JSON)[],
            results JSON,
            usage STRUCT(prompt_tokens BIGINT, completion_tokens BIGINT, input_tokens BIGINT, output_tokens BIGINT,
                         prompt_tokens_details STRUCT(cached_tokens BIGINT),
                         completion_tokens_details STRUCT(reasoning_tokens BIGINT),
                         input_tokens_details STRUCT(cached_tokens BIGINT),
                         output_tokens_details STRUCT(reasoning_tokens BIGINT)),
            error STRUCT(message VARCHAR, type VARCHAR, param VARCHAR, code VARCHAR)))',
        error: 'STRUCT(code VARCHAR, message VARCHAR)'
    })
) AS lines
JOIN (
    SELECT s ->> 'file' AS file, s ->> 'batch_id' AS batch_id, s ->> 'shard_id' AS shard_id
    FROM (SELECT unnest(CAST($sources AS JSON[])) AS s)
) AS src ON src.file = lines.filename
JOIN warehouse_batch.requests AS req ON req.request_hash = lines.custom_id AND req.shard_id = src.shard_id
ORDER BY custom_id, (response.status_code BETWEEN 200 AND 299) DESC
ON CONFLICT (request_hash) DO UPDATE SET
    status = excluded.status, status_code = excluded.status_code, content = excluded.content,
    finish_reason = excluded.finish_reason, refusal = excluded.refusal, model = excluded.model,
    input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,
    cached_tokens = excluded.cached_tokens, reasoning_tokens = excluded.reasoning_tokens,
    error_code = excluded.error_code, error_message = excluded.error_message,
    provider_request_id = excluded.provider_request_id, batch_id = excluded.batch_id,
    shard_id = excluded.shard_id, completed_at = excluded.completed_at, embeddings = excluded.embeddings
WHERE old.status <> 'completed';
