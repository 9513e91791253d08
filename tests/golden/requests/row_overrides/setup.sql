CREATE TABLE prompts AS SELECT * FROM (VALUES
    (10, 'Say hi', 'gpt-4o-mini', 0.7, 20),
    (11, 'Say bye', NULL, NULL, NULL),
    (12, 'Say yes', 'gpt-4o', 1.0, NULL)
) t(id, txt, model, temperature, max_tokens);
