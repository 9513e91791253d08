-- The status page's jobs: every definition (with its job's progress once it ran) and every other
-- job of the warehouse (run from a job file), one row each.
SELECT d.name AS job_name, d.defined_by, d.version, d.enabled, d.cancel_requested, d.state,
       coalesce(d.last_error, p.last_error) AS last_error,
       coalesce(p.row_count, 0) AS row_count, coalesce(p.completed, 0) AS completed,
       coalesce(p.failed, 0) AS failed, coalesce(p.pending, 0) AS pending,
       coalesce(p.expired, 0) AS expired, coalesce(p.cancelled, 0) AS cancelled,
       p.percent_done, coalesce(p.live_batches, 0) AS live_batches, p.eta_seconds,
       coalesce(p.spend_usd, 0) AS spend_usd, coalesce(p.est_remaining_usd, 0) AS est_remaining_usd,
       true AS defined_in_sql
FROM warehouse_batch.job_definitions AS d
LEFT JOIN warehouse_batch.job_progress AS p ON p.job_name = d.name
UNION ALL
SELECT p.job_name, NULL, NULL, NULL, NULL, NULL, p.last_error, p.row_count, p.completed, p.failed, p.pending,
       p.expired, p.cancelled, p.percent_done, p.live_batches, p.eta_seconds, p.spend_usd, p.est_remaining_usd,
       false
FROM warehouse_batch.job_progress AS p
WHERE NOT EXISTS (SELECT 1 FROM warehouse_batch.job_definitions AS d WHERE d.name = p.job_name)
ORDER BY job_name
