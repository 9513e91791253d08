-- Per product: how many reviews are answered and how they split, from the typed columns.
-- Plain SQL that runs on DuckDB and PostgreSQL (round() of a double needs numeric on Postgres).
select
    product,
    count(*) as reviews,
    count(*) filter (where status = 'completed') as answered,
    count(*) filter (where sentiment = 'Positive') as positive,
    count(*) filter (where sentiment = 'Neutral') as neutral,
    count(*) filter (where sentiment = 'Negative') as negative,
    round(cast(avg(confidence) as numeric), 3) as avg_confidence,
    round(avg(stars), 2) as avg_stars
from {{ ref('review_sentiment') }}
group by product
order by product
