-- Shared-warehouse safety: which output tables a job created (only those are ever replaced), the
-- last error of each job (one broken job is reported on its own row, never stops the others), and
-- whether a run salted its hashes (cache: false), so resuming it re-uses its requests.
ALTER TABLE warehouse_batch.jobs ADD COLUMN IF NOT EXISTS table_created BOOLEAN DEFAULT false;
ALTER TABLE warehouse_batch.jobs ADD COLUMN IF NOT EXISTS last_error VARCHAR;
ALTER TABLE warehouse_batch.jobs ADD COLUMN IF NOT EXISTS last_error_at TIMESTAMPTZ;
ALTER TABLE warehouse_batch.runs ADD COLUMN IF NOT EXISTS cache BOOLEAN DEFAULT true;

-- Tables published before this migration were created by warehouse_batch.
UPDATE warehouse_batch.jobs SET table_created = true WHERE published_fingerprint IS NOT NULL;

CREATE OR REPLACE VIEW warehouse_batch.job_status AS
WITH counts AS (
    SELECT job_name,
           sum(row_count) AS row_count,
           sum(row_count) FILTER (WHERE status = 'completed') AS completed,
           sum(row_count) FILTER (WHERE status = 'failed') AS failed,
           sum(row_count) FILTER (WHERE status = 'pending') AS pending,
           sum(row_count) FILTER (WHERE status = 'expired') AS expired,
           sum(row_count) FILTER (WHERE status = 'cancelled') AS cancelled,
           sum(cost_usd) AS cost_usd
    FROM warehouse_batch.job_counts GROUP BY job_name
), batch_counts AS (
    SELECT job_name,
           count(*) AS batches,
           count_if(state <> 'collected') AS live_batches
    FROM warehouse_batch.batches GROUP BY job_name
)
SELECT j.name AS job_name, j.target_table,
       coalesce(c.row_count, 0) AS row_count,
       coalesce(c.completed, 0) AS completed, coalesce(c.failed, 0) AS failed,
       coalesce(c.pending, 0) AS pending, coalesce(c.expired, 0) AS expired,
       coalesce(c.cancelled, 0) AS cancelled,
       coalesce(b.batches, 0) AS batches, coalesce(b.live_batches, 0) AS live_batches,
       c.cost_usd,
       j.updated_at AS last_run_at,
       j.last_error,
       j.last_error_at
FROM warehouse_batch.jobs AS j
LEFT JOIN counts AS c ON c.job_name = j.name
LEFT JOIN batch_counts AS b ON b.job_name = j.name;
