-- name: row_overrides
-- model: gpt-4o-mini
-- temperature: 0.2
-- system: Answer in one word.
SELECT id AS custom_id, txt AS prompt, model, temperature, max_tokens FROM prompts
