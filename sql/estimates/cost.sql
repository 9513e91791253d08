-- Expected and upper-bound tokens and cost per model of the requests in temp.wb_estimate, with the
-- output figures of their group (temp.wb_priors: model, output_key → expected, upper, cached_share).
-- Expected: least(the group's expected answer, the request's max_tokens), input at the cached
-- price for the share of it the service reported cached before. Upper bound: the request's
-- max_tokens, else the group's bound; no input cached.
WITH per_request AS (
    SELECT e.model, e.input_expected,
           least(g.expected, coalesce(e.max_output, g.expected)) AS output_expected,
           coalesce(e.max_output, greatest(g.upper, g.expected)) AS output_upper,
           coalesce(g.cached_share, 0) AS cached_share
    FROM temp.wb_estimate AS e
    JOIN temp.wb_priors AS g ON g.model IS NOT DISTINCT FROM e.model AND g.output_key IS NOT DISTINCT FROM e.output_key
),
per_model AS (
    SELECT model, count(*) AS requests, sum(input_expected) AS input_tokens,
           sum(input_expected * cached_share) AS cached_tokens,
           sum(output_expected) AS output_expected, sum(output_upper) AS output_upper
    FROM per_request GROUP BY model
)
SELECT m.model, m.requests, m.input_tokens, m.output_expected, m.output_upper,
       ((m.input_tokens - m.cached_tokens) * p.input_per_1m + m.cached_tokens * p.cached_input_per_1m
        + m.output_expected * p.output_per_1m) * p.batch_discount / 1e6 AS cost_expected,
       (m.input_tokens * p.input_per_1m + m.output_upper * p.output_per_1m) * p.batch_discount / 1e6 AS cost_upper
FROM per_model AS m
LEFT JOIN warehouse_batch.prices AS p ON starts_with(m.model, p.model)
QUALIFY row_number() OVER (PARTITION BY m.model ORDER BY length(p.model) DESC NULLS LAST) = 1
