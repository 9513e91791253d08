-- Answers already paid for that predict the output of the requests in temp.wb_estimate: completed
-- results of requests with the same output_key (endpoint, model, answer format), split into those
-- this job ($job) asked first and those of other jobs. output_tokens includes reasoning tokens,
-- as the service bills them.
SELECT r.output_key, r.first_job = $job AS own, count(*) AS answers,
       avg(res.output_tokens) AS output_tokens,
       avg(coalesce(res.cached_tokens, 0) / nullif(res.input_tokens, 0)) AS cached_share
FROM warehouse_batch.results AS res
JOIN warehouse_batch.requests AS r USING (request_hash)
WHERE res.status = 'completed' AND res.output_tokens IS NOT NULL
  AND r.output_key IN (SELECT DISTINCT output_key FROM temp.wb_estimate)
GROUP BY ALL
