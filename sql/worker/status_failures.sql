-- Rows of each job whose request did not complete, by error code (or status when the provider gave no code).
SELECT jr.job_name, coalesce(res.error_code, res.status) AS error_code, count(*) AS row_count
FROM warehouse_batch.job_rows AS jr
JOIN warehouse_batch.results AS res ON res.request_hash = jr.request_hash
WHERE res.status <> 'completed'
GROUP BY jr.job_name, coalesce(res.error_code, res.status)
ORDER BY jr.job_name, row_count DESC, error_code
