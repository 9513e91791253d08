-- Rows of a job (keep_stale_answers) whose request changed and has no answer yet but whose last
-- published answer is there: they show that answer, stale, until the new one arrives. Usually
-- none or few; publish.sql writes them as a part of their own. Placeholders: stale (the temp
-- table to create), rows (the job's rows table), job (the job's name, a literal).
CREATE OR REPLACE TEMP TABLE {stale} AS
SELECT q.__wb_cid, a.request_hash AS __wb_answer_hash
FROM {rows} AS q
JOIN warehouse_batch.answered_rows AS a ON a.job_name = {job} AND a.custom_id = q.__wb_cid
WHERE a.request_hash <> q.__wb_request_hash
  AND NOT EXISTS (SELECT 1 FROM warehouse_batch.results AS cur WHERE cur.request_hash = q.__wb_request_hash)
  AND EXISTS (SELECT 1 FROM warehouse_batch.results AS prev
              WHERE prev.request_hash = a.request_hash AND prev.status = 'completed');
