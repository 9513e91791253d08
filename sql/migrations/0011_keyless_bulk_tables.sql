-- Bulk tables without primary keys: requests, job_rows and results grow by a row per request (per
-- row, for job_rows), and a DuckDB primary key is an in-memory ART index that every insert must
-- probe and every commit must write: it costs seconds per million rows and memory that grows with
-- the job, which a bounded memory limit cannot spill. Uniqueness is kept by the statements that
-- write these tables instead: requests and job_rows are inserted with NOT EXISTS anti-joins, and an
-- answer is loaded in the transaction that moves its shard to `collected` (a compare-and-set), only
-- for requests whose current shard it is, de-duplicated by custom_id within those files.
-- DuckDB cannot drop a primary key in place: each table is copied without it (every column,
-- including ones later migrations add), then its defaults and NOT NULLs are restored.

CREATE TABLE warehouse_batch.requests__0011 AS SELECT * FROM warehouse_batch.requests;
DROP TABLE warehouse_batch.requests;
ALTER TABLE warehouse_batch.requests__0011 RENAME TO requests;
ALTER TABLE warehouse_batch.requests ALTER COLUMN request_hash SET NOT NULL;
ALTER TABLE warehouse_batch.requests ALTER COLUMN endpoint SET NOT NULL;
ALTER TABLE warehouse_batch.requests ALTER COLUMN line_bytes SET NOT NULL;
ALTER TABLE warehouse_batch.requests ALTER COLUMN est_input_tokens SET NOT NULL;
ALTER TABLE warehouse_batch.requests ALTER COLUMN first_job SET NOT NULL;
ALTER TABLE warehouse_batch.requests ALTER COLUMN attempts SET DEFAULT 0;
ALTER TABLE warehouse_batch.requests ALTER COLUMN attempts SET NOT NULL;
ALTER TABLE warehouse_batch.requests ALTER COLUMN created_at SET DEFAULT current_timestamp;
ALTER TABLE warehouse_batch.requests ALTER COLUMN created_at SET NOT NULL;

CREATE TABLE warehouse_batch.job_rows__0011 AS SELECT * FROM warehouse_batch.job_rows;
DROP TABLE warehouse_batch.job_rows;
ALTER TABLE warehouse_batch.job_rows__0011 RENAME TO job_rows;
ALTER TABLE warehouse_batch.job_rows ALTER COLUMN job_name SET NOT NULL;
ALTER TABLE warehouse_batch.job_rows ALTER COLUMN custom_id SET NOT NULL;
ALTER TABLE warehouse_batch.job_rows ALTER COLUMN request_hash SET NOT NULL;

CREATE TABLE warehouse_batch.results__0011 AS SELECT * FROM warehouse_batch.results;
DROP TABLE warehouse_batch.results;
ALTER TABLE warehouse_batch.results__0011 RENAME TO results;
ALTER TABLE warehouse_batch.results ALTER COLUMN request_hash SET NOT NULL;
ALTER TABLE warehouse_batch.results ALTER COLUMN status SET NOT NULL;
ALTER TABLE warehouse_batch.results ALTER COLUMN completed_at SET DEFAULT current_timestamp;
ALTER TABLE warehouse_batch.results ALTER COLUMN completed_at SET NOT NULL;
