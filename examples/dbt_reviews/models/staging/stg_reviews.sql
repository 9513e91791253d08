-- depends_on: {{ ref('raw_reviews') }}
-- (the source is the seed: this line makes `dbt build` load the seed first)
select
    review_id,
    lower(trim(product)) as product,
    stars,
    trim(review_text) as review_text
from {{ source('raw', 'reviews') }}
where review_text is not null and trim(review_text) <> ''
