-- Embedding answers are loaded as float vectors (one per input, in input order), not as JSON text,
-- so the output table's `embedding FLOAT[]` column is a plain column read, and results stay one
-- generic cache for every endpoint.
ALTER TABLE warehouse_batch.results ADD COLUMN IF NOT EXISTS embeddings FLOAT[][];
