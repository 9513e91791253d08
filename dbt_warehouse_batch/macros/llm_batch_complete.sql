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
  {%- set allowed -%}({% for s in allow %}'{{ s }}'{{ ', ' if not loop.last }}{% endfor %}){%- endset -%}
  {%- if execute and load_relation(model) is not none -%}
    {#-- dbt's own line says only "Got N results": say what they are, by status and error_code --#}
    {%- set why = run_query("select " ~ status ~ ", error_code, count(*) from " ~ model ~ " where " ~ status
        ~ " is null or " ~ status ~ " not in " ~ allowed ~ " group by 1, 2 order by 3 desc, 1, 2") -%}
    {%- if why.rows -%}
      {%- set parts, total = [], [] -%}
      {%- for r in why.rows -%}
        {%- do parts.append(r[2] ~ ' ' ~ (r[0] or 'null') ~ (' (' ~ r[1] ~ ')' if r[1] else '')) -%}
        {%- do total.append(r[2]) -%}
      {%- endfor -%}
      {% do log("llm_batch_complete " ~ model.identifier ~ ": " ~ (total | sum) ~ " row(s) not complete: "
                ~ (parts | join(', ')), info=True) %}
    {%- endif -%}
  {%- endif -%}
  select *
  from {{ model }}
  where {{ status }} is null
     or {{ status }} not in {{ allowed }}
{% endtest %}
