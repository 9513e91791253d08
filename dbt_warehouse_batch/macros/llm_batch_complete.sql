{#-
  Generic test: rows of an llm_batch model whose answer is not (yet) usable.

      models:
        - name: review_sentiment
          data_tests:
            - warehouse_batch.llm_batch_complete      # warns on pending and failed rows
            - warehouse_batch.llm_batch_complete:
                config: {severity: error}             # or fail the build
                arguments:
                  allow: [completed, pending]         # tolerate rows still in flight

  On a column (`columns: [{name: status, data_tests: [warehouse_batch.llm_batch_complete]}]`) that column is the
  status; otherwise the model's `status` column. Returns the offending rows, so `--store-failures`
  keeps them. Default severity is warn: pending rows are normal for an asynchronous model.
-#}
{% test llm_batch_complete(model, column_name=none, allow=['completed']) %}
  {{ config(severity='warn') }}
  {%- set status = adapter.quote(column_name) if column_name else 'status' -%}
  select *
  from {{ model }}
  where {{ status }} is null
     or {{ status }} not in ({% for s in allow %}'{{ s }}'{{ ', ' if not loop.last }}{% endfor %})
{% endtest %}
