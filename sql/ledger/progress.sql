-- Live batches of one job (or all, when $job is NULL): how many, requests done / total, seconds since the first was submitted.
SELECT count(*) AS live,
       coalesce(sum(coalesce(completed_count, 0) + coalesce(failed_count, 0)), 0) AS done,
       coalesce(sum(coalesce(total_count, line_count)), 0) AS total,
       epoch(now()) - epoch(min(submitted_at)) AS elapsed
FROM warehouse_batch.batches
WHERE state <> 'collected' AND ($job IS NULL OR job_name = $job)
