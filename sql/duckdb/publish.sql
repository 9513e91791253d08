-- (Re)build a job's output table: each row of its query joined to its result, one status per row.
-- Placeholders, filled by results.publish from answers.answer_sql: target (quoted table), rows (the
-- job's rows table), carried (the query's columns), parse (the answer read once: from_json_strict
-- behind json_valid and TRY, or NULL), answer_error / answer_message (why a completed answer is
-- still a failure; NULL when good), typed (the answer's typed columns, each `expr AS name,`), job
-- (the job's name, a literal), keep_stale (true: a row whose changed request is still unanswered
-- shows its last completed answer, is_stale, from warehouse_batch.answered_rows).
-- A failed answer keeps its raw content, gets NULL typed columns, and never fails the statement.
-- One pass of hash joins, no window over the rows: the cost is priced here from the few distinct
-- models (as warehouse_batch.result_costs does, longest price-list prefix) rather than through that
-- view, which ranks prices per request.
CREATE OR REPLACE TABLE {target} AS
WITH model_prices AS (
    SELECT m.model, p.input_per_1m, p.cached_input_per_1m, p.output_per_1m, p.batch_discount
    FROM (SELECT DISTINCT model FROM warehouse_batch.requests) AS m
    JOIN warehouse_batch.prices AS p ON starts_with(m.model, p.model)
    QUALIFY row_number() OVER (PARTITION BY m.model ORDER BY length(p.model) DESC) = 1
), stale AS (
    -- Rows whose request changed and has no answer yet but whose last published answer is there
    -- (keep_stale): they show that answer, stale. Few rows, so a small table for the join below;
    -- the checks run here rather than as more joins of results in the main pass, which holds
    -- every join's table in memory at once.
    SELECT q.__wb_cid, a.request_hash
    FROM {rows} AS q
    JOIN warehouse_batch.answered_rows AS a ON a.job_name = {job} AND a.custom_id = q.__wb_cid
    WHERE {keep_stale} AND a.request_hash <> q.__wb_request_hash
      AND NOT EXISTS (SELECT 1 FROM warehouse_batch.results AS cur WHERE cur.request_hash = q.__wb_request_hash)
      AND EXISTS (SELECT 1 FROM warehouse_batch.results AS prev
                  WHERE prev.request_hash = a.request_hash AND prev.status = 'completed')
), keyed AS (
    -- Which request's answer each row shows: its current request's, or (stale) the last one answered.
    SELECT q.*,
           coalesce(s.request_hash, q.__wb_request_hash) AS __wb_answer_hash,
           a.request_hash AS __wb_answered_hash,
           a.published_at AS __wb_published_at
    FROM {rows} AS q
    LEFT JOIN warehouse_batch.answered_rows AS a ON a.job_name = {job} AND a.custom_id = q.__wb_cid
    LEFT JOIN stale AS s ON s.__wb_cid = q.__wb_cid
), joined AS (
    SELECT q.*,
           res.status AS __wb_status,
           res.content AS __wb_content,
           res.finish_reason AS __wb_finish_reason,
           res.refusal AS __wb_refusal,
           res.embeddings AS __wb_embeddings,
           res.error_code AS __wb_error_code,
           res.error_message AS __wb_error_message,
           coalesce(res.model, req.model) AS __wb_model,
           res.input_tokens AS __wb_input_tokens,
           res.output_tokens AS __wb_output_tokens,
           coalesce(res.batch_id, b.batch_id) AS __wb_batch_id,
           res.completed_at AS __wb_completed_at,
           CASE WHEN res.input_tokens IS NOT NULL OR res.output_tokens IS NOT NULL THEN
               (  (coalesce(res.input_tokens, 0) - coalesce(res.cached_tokens, 0)) * mp.input_per_1m
                + coalesce(res.cached_tokens, 0) * mp.cached_input_per_1m
                + coalesce(res.output_tokens, 0) * mp.output_per_1m) * mp.batch_discount / 1e6
           END AS __wb_cost_usd,
           ra.attempts AS __wb_attempts
    FROM keyed AS q
    LEFT JOIN warehouse_batch.results AS res ON res.request_hash = q.__wb_answer_hash
    LEFT JOIN warehouse_batch.requests AS req ON req.request_hash = q.__wb_answer_hash
    LEFT JOIN warehouse_batch.request_attempts AS ra ON ra.request_hash = q.__wb_answer_hash
    LEFT JOIN warehouse_batch.batches AS b ON b.shard_id = ra.shard_id
    LEFT JOIN model_prices AS mp ON mp.model = req.model
), parsed AS (
    SELECT *, {parse} AS __wb_parsed FROM joined
), judged AS (
    SELECT *, CASE WHEN __wb_status = 'completed' THEN {answer_error} END AS __wb_answer_error FROM parsed
)
SELECT {carried},
       {typed}
       __wb_content AS content,
       CASE WHEN __wb_status IS NULL THEN 'pending'
            WHEN __wb_answer_error IS NOT NULL THEN 'failed'
            ELSE __wb_status END AS status,
       coalesce(__wb_error_code, __wb_answer_error) AS error_code,
       coalesce(__wb_error_message, CASE WHEN __wb_answer_error IS NOT NULL THEN {answer_message} END) AS error_message,
       __wb_finish_reason AS finish_reason,
       __wb_refusal AS refusal,
       __wb_model AS model,
       __wb_input_tokens AS input_tokens,
       __wb_output_tokens AS output_tokens,
       __wb_cost_usd AS cost_usd,
       __wb_attempts AS attempts,
       __wb_request_hash AS request_hash,
       __wb_batch_id AS batch_id,
       CASE WHEN __wb_status = 'completed' AND __wb_answer_error IS NULL THEN __wb_completed_at END AS completed_at,
       __wb_answer_hash <> __wb_request_hash AS is_stale,
       CASE WHEN __wb_status IS NOT NULL THEN __wb_answer_hash END AS answer_request_hash,
       CASE WHEN __wb_status = 'completed' AND __wb_answer_error IS NULL AND __wb_answered_hash = __wb_answer_hash
            THEN __wb_published_at END AS published_at
FROM judged;
