-- name: chat_messages
-- model: gpt-4o
-- system: Be brief.
SELECT id AS custom_id, msgs AS messages FROM convos
