-- Jobs defined in SQL on PostgreSQL (#16): `warehouse_batch.define_job(name, query, options)` and
-- a trigger that records the definer from `current_user` (sql/migrations/postgres/0015_define_job.sql).
-- DuckDB has no users, no functions that write and no triggers: there a definition is a plain
-- INSERT, and `defined_by` is what the row says (docs/worker.md, Permission model). Nothing to do.
SELECT 1;
