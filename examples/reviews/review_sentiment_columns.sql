-- name: review_sentiment_columns
-- description: The same three fields as models.SentimentResult, written as a SQL column list.
-- model: gpt-4o-mini
-- system: Classify the sentiment of this product review as Positive, Neutral or Negative, say how confident you are and quote up to five key phrases.
-- temperature: 0
-- output_schema: >-
--   sentiment ENUM('Positive', 'Neutral', 'Negative') COMMENT 'Overall tone of the review',
--   confidence DOUBLE CHECK (confidence BETWEEN 0 AND 1) COMMENT 'How sure the model is, from 0 to 1',
--   key_phrases VARCHAR[] CHECK (len(key_phrases) <= 5) COMMENT 'Up to five short phrases that carry the sentiment'
--
-- # Run from the repository root (OPENAI_API_KEY set; add --base-url http://127.0.0.1:PORT/v1 for the emulator):
-- #   warehouse-batch run examples/reviews/review_sentiment_columns.sql --db reviews.duckdb --wait
SELECT review_id AS custom_id, review_text AS prompt, product, stars
FROM read_csv('examples/reviews/reviews.csv', header = true)
