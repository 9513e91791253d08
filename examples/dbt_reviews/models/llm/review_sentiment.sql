{#- One request per review through the OpenAI Batch API. Each `dbt run` sends only reviews never
    asked before, collects finished batches and rebuilds this table: rows still in flight are
    `pending`, so a scheduled `dbt build` fills it in over time. -#}
{{ config(
    materialized='llm_batch',
    model='gpt-4o-mini',
    system='Classify the sentiment of this product review as Positive, Neutral or Negative, and say how confident you are, from 0 to 1.',
    output_schema="sentiment ENUM('Positive', 'Neutral', 'Negative'), confidence DOUBLE CHECK (confidence BETWEEN 0 AND 1)",
    temperature=0,
    max_tokens=50,
    max_cost_usd=1.00,
) }}

select
    review_id as custom_id,
    review_text as prompt,
    product,
    stars
from {{ ref('stg_reviews') }}
