-- Before the output table is rebuilt from the job's rows table ({rows}): remember, per custom_id,
-- the request whose answer the job now publishes as completed (warehouse_batch.answered_rows).
-- A row whose current request has a completed answer replaces its memory if the request changed;
-- a row that left the query is forgotten; a row whose changed request is still pending keeps its
-- memory, so publish can show the old answer, stale. Only changed pairs are written: an unchanged
-- job rewrites nothing, and published_at stays the time the answer was first published. Parameter: job.
DELETE FROM warehouse_batch.answered_rows AS a
WHERE a.job_name = $job
  AND NOT EXISTS (SELECT 1 FROM {rows} AS q WHERE q.__wb_cid = a.custom_id AND q.__wb_request_hash = a.request_hash)
  AND (NOT EXISTS (SELECT 1 FROM {rows} AS q WHERE q.__wb_cid = a.custom_id)
       OR EXISTS (SELECT 1 FROM {rows} AS q JOIN warehouse_batch.results AS res ON res.request_hash = q.__wb_request_hash
                  WHERE q.__wb_cid = a.custom_id AND res.status = 'completed'));

INSERT INTO warehouse_batch.answered_rows
SELECT $job, q.__wb_cid, q.__wb_request_hash, now() FROM {rows} AS q
WHERE EXISTS (SELECT 1 FROM warehouse_batch.results AS res
              WHERE res.request_hash = q.__wb_request_hash AND res.status = 'completed')
  AND NOT EXISTS (SELECT 1 FROM warehouse_batch.answered_rows AS a
                  WHERE a.job_name = $job AND a.custom_id = q.__wb_cid);
