-- name: review_moderation
-- description: Moderation flags of every review (flagged BOOLEAN, one BOOLEAN per category, category_scores).
-- endpoint: /v1/moderations
-- model: omni-moderation-latest
--
-- # Run from the repository root (OPENAI_API_KEY set; add --base-url http://127.0.0.1:PORT/v1 for the emulator):
-- #   warehouse-batch run examples/reviews/review_moderation.sql --db reviews.duckdb --wait
SELECT review_id AS custom_id, review_text AS input, product
FROM read_csv('examples/reviews/reviews.csv', header = true)
