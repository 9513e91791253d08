-- The raw reviews come from a seed (seeds/raw_reviews.csv); in a real project this would be a
-- source() of the table your loader writes.
select
    review_id,
    lower(trim(product)) as product,
    stars,
    trim(review_text) as review_text
from {{ ref('raw_reviews') }}
where review_text is not null and trim(review_text) <> ''
