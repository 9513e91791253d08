-- name: review_sentiment
-- model: gpt-4o-mini
-- system: Classify the sentiment of this product review as Positive, Neutral or Negative.
-- max_tokens: 5
-- temperature: 0
SELECT review_id AS custom_id, review_text AS prompt, product, stars
FROM reviews
