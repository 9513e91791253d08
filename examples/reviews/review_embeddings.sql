-- name: review_embeddings
-- description: A 256-dimension embedding of every review (column embedding FLOAT[]).
-- endpoint: /v1/embeddings
-- model: text-embedding-3-small
-- dimensions: 256
--
-- # Run from the repository root (OPENAI_API_KEY set; add --base-url http://127.0.0.1:PORT/v1 for the emulator):
-- #   warehouse-batch run examples/reviews/review_embeddings.sql --db reviews.duckdb --wait
SELECT review_id AS custom_id, review_text AS input, product
FROM read_csv('examples/reviews/reviews.csv', header = true)
