-- name: review_sentiment_structured
-- description: Sentiment, confidence and key phrases of each review, as typed columns (Pydantic schema).
-- model: gpt-4o-mini
-- system: Classify the sentiment of this product review as Positive, Neutral or Negative, say how confident you are and quote up to five key phrases.
-- temperature: 0
-- output_schema: models:SentimentResult
--
-- # Run from the repository root (OPENAI_API_KEY set; add --base-url http://127.0.0.1:PORT/v1 for the emulator):
-- #   warehouse-batch run examples/reviews/review_sentiment_structured.sql --db reviews.duckdb --wait
SELECT review_id AS custom_id, review_text AS prompt, product, stars
FROM read_csv('examples/reviews/reviews.csv', header = true)
