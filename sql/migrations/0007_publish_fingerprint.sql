-- What each job's output table was last built from (rows, results, definition, prices), so an
-- unchanged re-run does not rebuild a million-row table for nothing.
ALTER TABLE warehouse_batch.jobs ADD COLUMN IF NOT EXISTS published_fingerprint VARCHAR;
