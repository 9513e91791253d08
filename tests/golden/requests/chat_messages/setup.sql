CREATE TABLE convos AS SELECT * FROM (VALUES
    ('c1', '[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}]'),
    ('c2', '[{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"https://example.invalid/a.png"}}]}]')
) t(id, msgs);
