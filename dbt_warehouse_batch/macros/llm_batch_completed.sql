{#-
  The completed rows of an llm_batch model, for incremental models downstream:

      {{ config(materialized='incremental', unique_key='custom_id') }}
      {{ warehouse_batch.llm_batch_completed(ref('review_sentiment')) }}

  Rows come with status = 'completed' only (pending and failed rows never flow downstream as NULLs).
  In an incremental run, only rows whose `published_at` is newer than the newest one already in
  {{ this }}: `published_at` is when the llm_batch model first published the row's current answer,
  so it grows monotonically and includes answers served from the cache (their `completed_at` may be
  days old) and rows answered long after they first appeared (a `custom_id not in this` filter
  would have kept their NULLs). A changed answer (a prompt edit, once the new request is answered)
  gets a new published_at and replaces the old row through `unique_key`. A row whose changed request
  is still pending keeps its old answer with is_stale = true and is not re-sent downstream.
-#}
{% macro llm_batch_completed(relation, watermark='published_at') -%}
select * from {{ relation }}
where status = 'completed'
{%- if is_incremental() %}
  and {{ watermark }} > (select coalesce(max({{ watermark }}), '1970-01-01'::timestamptz) from {{ this }})
{%- endif %}
{%- endmacro %}
