-- name: chat_prompt
-- model: gpt-4o-mini
-- system: Classify the sentiment as Positive, Neutral or Negative.
-- temperature: 0
-- params: {max_tokens: 5, stop: ["\n"]}
SELECT review_id AS custom_id, review_text AS prompt FROM reviews
