-- PostgreSQL version of 0011_keyless_bulk_tables.sql: the same tables without primary keys.
-- Postgres drops a constraint in place (DuckDB had to copy each table); a plain index keeps the
-- lookups by request (the push of changed rows, analysts' joins) fast.
ALTER TABLE warehouse_batch.requests DROP CONSTRAINT requests_pkey;
CREATE INDEX requests_request_hash ON warehouse_batch.requests (request_hash);
CREATE INDEX requests_shard_id ON warehouse_batch.requests (shard_id);
ALTER TABLE warehouse_batch.job_rows DROP CONSTRAINT job_rows_pkey;
CREATE INDEX job_rows_job_custom_id ON warehouse_batch.job_rows (job_name, custom_id);
ALTER TABLE warehouse_batch.results DROP CONSTRAINT results_pkey;
CREATE INDEX results_request_hash ON warehouse_batch.results (request_hash);
