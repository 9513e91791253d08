-- After the stage was renamed to the job's rows table ({rows}): job_rows and requests change only
-- where the rows did, so re-running an unchanged job writes almost nothing. Parameters: job, endpoint
-- (each statement gets the ones it names). Placeholders {any} and {group_by}: when every row asks
-- for a request of its own (the usual case), the requests are the rows themselves and the
-- aggregate that picks one row per request is left out ({any} empty, {group_by} empty); it held
-- a million hashes and spilled at the default memory limit.
DELETE FROM warehouse_batch.job_rows AS jr WHERE jr.job_name = $job AND NOT EXISTS (
    SELECT 1 FROM {rows} AS r WHERE r.__wb_cid = jr.custom_id AND r.__wb_request_hash = jr.request_hash);

INSERT INTO warehouse_batch.job_rows
SELECT $job, r.__wb_cid, r.__wb_request_hash FROM {rows} AS r
WHERE NOT EXISTS (SELECT 1 FROM warehouse_batch.job_rows AS jr WHERE jr.job_name = $job
                  AND jr.custom_id = r.__wb_cid AND jr.request_hash = r.__wb_request_hash);

INSERT INTO warehouse_batch.requests (request_hash, endpoint, model, line_bytes, est_input_tokens,
                                      est_output_tokens, first_job, est_output_expected, output_key)
SELECT __wb_request_hash, $endpoint, {any}(__wb_model), {any}(__wb_line_bytes),
       {any}(__wb_tokens), {any}(__wb_max_output), $job, {any}(__wb_output_expected),
       {any}(__wb_output_key)
FROM {rows} AS s
WHERE NOT EXISTS (SELECT 1 FROM warehouse_batch.requests AS r WHERE r.request_hash = s.__wb_request_hash)
{group_by};
