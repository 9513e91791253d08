CREATE TABLE raw AS SELECT * FROM (VALUES
    ('r1', '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Exact body"}], "logprobs": true}')
) t(id, b);
