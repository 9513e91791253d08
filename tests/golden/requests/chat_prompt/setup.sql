CREATE TABLE reviews AS SELECT * FROM (VALUES
    (1, 'Great "value" 😀'),
    (2, E'Two\nlines'),
    (3, 'Great "value" 😀')  -- same text as row 1: one request for both
) t(review_id, review_text);
