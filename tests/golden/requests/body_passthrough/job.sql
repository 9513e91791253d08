-- name: body_passthrough
SELECT id AS custom_id, b AS body FROM raw
