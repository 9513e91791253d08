-- Rows of each job by the status its output table shows. Written by every publish in the same
-- transaction as the table, so it also counts answers that came back but failed on their own
-- (refusal, truncated, invalid_json, schema_mismatch), which the results cache cannot know.
CREATE TABLE IF NOT EXISTS warehouse_batch.job_counts (
    job_name        VARCHAR NOT NULL,
    status          VARCHAR NOT NULL,
    row_count       BIGINT NOT NULL,
    cost_usd        DOUBLE,
    PRIMARY KEY (job_name, status)
);

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
       j.updated_at AS last_run_at
FROM warehouse_batch.jobs AS j
LEFT JOIN counts AS c ON c.job_name = j.name
LEFT JOIN batch_counts AS b ON b.job_name = j.name;
