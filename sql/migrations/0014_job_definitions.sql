-- Jobs defined in SQL (#16): an analyst INSERTs a row, `warehouse-batch worker` runs it.
-- The analyst writes name, query, options, enabled, cancel_requested (and defined_by on DuckDB,
-- which has no users); the worker fills in the rest. The views are written in SQL that PostgreSQL
-- runs too (no GROUP BY ALL, QUALIFY or DuckDB-only functions).

CREATE TABLE IF NOT EXISTS warehouse_batch.job_definitions (
    name             VARCHAR PRIMARY KEY,   -- the job name (letters, digits, _); also the output table unless options.table
    query            VARCHAR NOT NULL,      -- returns custom_id + prompt (or messages / input / body)
    options          JSON NOT NULL DEFAULT '{}',  -- the options of a job file: {"model": ..., "system": ..., "output_schema": ...}
    enabled          BOOLEAN NOT NULL DEFAULT true,   -- false: paused (nothing sent or collected)
    cancel_requested BOOLEAN NOT NULL DEFAULT false,  -- true: cancel the job's live batches
    run_requested    BOOLEAN NOT NULL DEFAULT false,  -- true: run the current version again (new source rows,
                                                      -- a refusal that no longer applies); the worker resets it
    defined_by       VARCHAR,               -- who may spend for it (filled by the worker when NULL)
    defined_at       TIMESTAMPTZ DEFAULT current_timestamp,
    -- Written by the worker only:
    version          INTEGER,               -- the job_definition_versions row now in force
    state            VARCHAR,               -- new | running | done | refused | failed | paused | cancelled
    last_error       VARCHAR,               -- why the definition was refused or its last step failed
    last_checked_at  TIMESTAMPTZ,           -- when the worker last read this row
    last_run_at      TIMESTAMPTZ,           -- when the worker last started a run of it
    ran_version      INTEGER                -- the version the worker last ran (or refused)
);

-- Every version of every definition, appended by the worker when it sees a new or changed row
-- (query, options or definer). Nothing here is ever updated except deleted_at.
CREATE TABLE IF NOT EXISTS warehouse_batch.job_definition_versions (
    name             VARCHAR NOT NULL,
    version          INTEGER NOT NULL,
    query            VARCHAR NOT NULL,
    options          JSON NOT NULL,
    defined_by       VARCHAR,
    fingerprint      VARCHAR NOT NULL,      -- sha256 of query, options and definer
    recorded_at      TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    deleted_at       TIMESTAMPTZ,           -- the definition row was deleted (its live batches were cancelled)
    PRIMARY KEY (name, version)
);

-- Per job: rows by status (as its output table shows them), percent done, an ETA from the rate of
-- its live batches, what it has cost so far and the expected cost of its requests still in flight.
CREATE OR REPLACE VIEW warehouse_batch.job_progress AS
WITH counts AS (
    SELECT job_name,
           sum(row_count) AS row_count,
           sum(CASE WHEN status = 'completed' THEN row_count ELSE 0 END) AS completed,
           sum(CASE WHEN status = 'failed' THEN row_count ELSE 0 END) AS failed,
           sum(CASE WHEN status = 'pending' THEN row_count ELSE 0 END) AS pending,
           sum(CASE WHEN status = 'expired' THEN row_count ELSE 0 END) AS expired,
           sum(CASE WHEN status = 'cancelled' THEN row_count ELSE 0 END) AS cancelled,
           sum(cost_usd) AS spend_usd
    FROM warehouse_batch.job_counts
    GROUP BY job_name
), live AS (
    SELECT job_name,
           count(*) AS live_batches,
           sum(coalesce(completed_count, 0) + coalesce(failed_count, 0)) AS done,
           sum(coalesce(total_count, line_count)) AS total,
           extract(epoch FROM now()) - extract(epoch FROM min(submitted_at)) AS elapsed
    FROM warehouse_batch.batches
    WHERE state <> 'collected'
    GROUP BY job_name
), remaining AS (
    SELECT r.first_job AS job_name,
           sum((r.est_input_tokens * p.input_per_1m
                + coalesce(r.est_output_expected, r.est_output_tokens, 0) * p.output_per_1m)
               * p.batch_discount / 1e6) AS cost_usd
    FROM warehouse_batch.requests AS r
    JOIN warehouse_batch.request_attempts AS ra ON ra.request_hash = r.request_hash
    JOIN warehouse_batch.batches AS b ON b.shard_id = ra.shard_id
    JOIN warehouse_batch.request_prices AS p ON p.request_hash = r.request_hash
    WHERE b.state <> 'collected'
      AND NOT EXISTS (SELECT 1 FROM warehouse_batch.results AS x WHERE x.request_hash = r.request_hash)
    GROUP BY r.first_job
)
SELECT j.name AS job_name,
       j.target_table,
       d.defined_by,
       d.version,
       d.enabled,
       d.state,
       coalesce(c.row_count, 0) AS row_count,
       coalesce(c.completed, 0) AS completed,
       coalesce(c.failed, 0) AS failed,
       coalesce(c.pending, 0) AS pending,
       coalesce(c.expired, 0) AS expired,
       coalesce(c.cancelled, 0) AS cancelled,
       -- one decimal, written so that it also runs transpiled on Postgres (no round(double, int) there)
       round(1000.0 * (coalesce(c.row_count, 0) - coalesce(c.pending, 0)) / nullif(c.row_count, 0)) / 10 AS percent_done,
       coalesce(l.live_batches, 0) AS live_batches,
       CASE WHEN l.done > 0 AND l.total > l.done AND l.elapsed > 0
            THEN round(l.elapsed / l.done * (l.total - l.done)) END AS eta_seconds,
       coalesce(c.spend_usd, 0) AS spend_usd,
       coalesce(rem.cost_usd, 0) AS est_remaining_usd,
       coalesce(d.last_error, j.last_error) AS last_error
FROM warehouse_batch.jobs AS j
LEFT JOIN warehouse_batch.job_definitions AS d ON d.name = j.name
LEFT JOIN counts AS c ON c.job_name = j.name
LEFT JOIN live AS l ON l.job_name = j.name
LEFT JOIN remaining AS rem ON rem.job_name = j.name;

-- Spend per UTC day, job (the job that first asked for each request), definer and model.
CREATE OR REPLACE VIEW warehouse_batch.daily_spend AS
SELECT CAST(timezone('UTC', res.completed_at) AS DATE) AS day,
       r.first_job AS job_name,
       d.defined_by,
       coalesce(res.model, r.model) AS model,
       count(*) AS requests,
       sum(res.input_tokens) AS input_tokens,
       sum(res.output_tokens) AS output_tokens,
       sum(rc.cost_usd) AS cost_usd
FROM warehouse_batch.results AS res
JOIN warehouse_batch.requests AS r ON r.request_hash = res.request_hash
LEFT JOIN warehouse_batch.result_costs AS rc ON rc.request_hash = res.request_hash
LEFT JOIN warehouse_batch.job_definitions AS d ON d.name = r.first_job
WHERE res.input_tokens IS NOT NULL OR res.output_tokens IS NOT NULL
GROUP BY CAST(timezone('UTC', res.completed_at) AS DATE), r.first_job, d.defined_by, coalesce(res.model, r.model);
