-- (Re)build a job's output table: each row of its query joined to its result, one status per row.
-- The table is written in parts (publish.py), each one statement, committed, into a table that is
-- swapped in once all are written: the rows whose request hash falls in one range of hashes, then
-- the rows that show a stale answer (few). Every table below is filtered to the part's hashes
-- before it is joined, so each hash join holds one part and memory does not grow with the job; the
-- metadata joins run over narrow rows (keys and answers) and meet the query's own columns once, at
-- the end.
-- Placeholders, filled by publish.py from answers.answer_sql: into (`CREATE OR REPLACE TABLE t AS`
-- for the first part, `INSERT INTO t` for the others; t is the table being built), rows (the job's
-- rows table), stale (the temp table of rows that show a stale answer: __wb_cid,
-- __wb_answer_hash), keyed (the part's rows: __wb_cid, __wb_answer_hash, the request whose answer
-- each shows), in_part (a predicate over a column `request_hash`: the part's answer hashes),
-- rows_in_part (a predicate over q, the rows table, selecting the part's rows), carried (the
-- query's columns), parse (the answer read once: from_json_strict behind json_valid and TRY, or
-- NULL), answer_error / answer_message (why a completed answer is still a failure; NULL when
-- good), typed (the answer's typed columns, each `expr AS name,`), job (the job's name, a literal).
-- A failed answer keeps its raw content, gets NULL typed columns, and never fails the statement.
-- Cost is priced from the few distinct models (longest price-list prefix, as
-- warehouse_batch.result_costs does) rather than through that view, which ranks prices per request.
{into}
WITH keyed AS (
    {keyed}
), model_prices AS (
    SELECT m.model, p.input_per_1m, p.cached_input_per_1m, p.output_per_1m, p.batch_discount
    FROM (SELECT DISTINCT model FROM warehouse_batch.requests) AS m
    JOIN warehouse_batch.prices AS p ON starts_with(m.model, p.model)
    QUALIFY row_number() OVER (PARTITION BY m.model ORDER BY length(p.model) DESC) = 1
), answers AS (
    SELECT k.__wb_cid AS __wb_key,
           k.__wb_answer_hash,
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
           ra.attempts AS __wb_attempts,
           -- published_at: when this row's answer was first published (remember_answers).
           pub.published_at AS __wb_published_at
    FROM keyed AS k
    LEFT JOIN (SELECT * FROM warehouse_batch.results WHERE {in_part}) AS res
           ON res.request_hash = k.__wb_answer_hash
    LEFT JOIN (SELECT request_hash, model FROM warehouse_batch.requests WHERE {in_part}) AS req
           ON req.request_hash = k.__wb_answer_hash
    LEFT JOIN (SELECT request_hash, shard_id, attempts FROM warehouse_batch.request_attempts WHERE {in_part}) AS ra
           ON ra.request_hash = k.__wb_answer_hash
    LEFT JOIN warehouse_batch.batches AS b ON b.shard_id = ra.shard_id
    LEFT JOIN model_prices AS mp ON mp.model = req.model
    LEFT JOIN (SELECT custom_id, request_hash, published_at FROM warehouse_batch.answered_rows
               WHERE job_name = {job} AND {in_part}) AS pub
           ON pub.custom_id = k.__wb_cid AND pub.request_hash = k.__wb_answer_hash
), joined AS (
    SELECT q.*, a.* EXCLUDE (__wb_key)
    FROM {rows} AS q
    JOIN answers AS a ON a.__wb_key = q.__wb_cid
    WHERE {rows_in_part}
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
       CASE WHEN __wb_status = 'completed' AND __wb_answer_error IS NULL THEN __wb_published_at END AS published_at
FROM judged;
