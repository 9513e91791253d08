{#-
  Model-level run-operations, through the plugin's warehouse_batch_operation function:

    dbt run-operation llm_batch_retry  --args '{select: review_sentiment}'
    dbt run-operation llm_batch_status --args '{select: "tag:llm"}'

  `select` is a model name, a list of names, `tag:<tag>`, `path:<prefix>` or `*` (every llm_batch
  model; the default for status). Names are resolved here, from dbt's graph, into each model's
  relation and config, so the job names match what the materialization uses.
-#}
{% macro llm_batch_models(select) -%}
  {%- set selectors = select if select is iterable and select is not string else [select] -%}
  {%- set found, known = [], [] -%}
  {%- for node in graph.nodes.values() if node.resource_type == 'model' and node.config.materialized == 'llm_batch' -%}
    {%- do known.append(node.name) -%}
    {%- set hit = [] -%}
    {%- for s in selectors -%}
      {%- set s = s | string -%}
      {%- if s == '*' or s == node.name
            or (s.startswith('tag:') and s[4:] in node.tags)
            or (s.startswith('path:') and node.original_file_path.startswith(s[5:])) -%}
        {%- do hit.append(1) -%}
      {%- endif -%}
    {%- endfor -%}
    {%- if hit -%}
      {%- do found.append({'name': node.name, 'schema': node.schema, 'identifier': node.alias or node.name,
                           'job_name': node.config.get('job_name')}) -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return({'models': found, 'known': known | sort}) }}
{%- endmacro %}

{% macro llm_batch_operation(operation, select) -%}
  {%- set resolved = warehouse_batch.llm_batch_models(select) -%}
  {%- if target.type == 'postgres' -%}
    {#-- no Python on dbt-postgres: say which command does it there --#}
    {%- set hints = {'retry': "`warehouse-batch dbt sync --retry -s <model>` resends retryable failures",
                     'status': "`dbt run-operation llm_batch_status` without select prints every job's rows and spend"} -%}
    {{ exceptions.raise_compiler_error("llm_batch_" ~ operation ~ " by model runs on dbt-duckdb (its plugin); on dbt-postgres "
        ~ hints.get(operation, "it is not available yet") ~ " (docs/dbt.md, dbt-postgres)") }}
  {%- endif -%}
  {%- set found = run_query("select count(*) from duckdb_functions() where function_name = 'warehouse_batch_operation'") -%}
  {%- if found.columns[0].values()[0] == 0 -%}
    {{ exceptions.raise_compiler_error("llm_batch_" ~ operation ~ " needs the warehouse_batch plugin in this profile (see docs/dbt.md)") }}
  {%- endif -%}
  {%- set payload = tojson({'operation': operation, 'select': select, 'models': resolved['models'], 'known': resolved['known']}) -%}
  {%- set result = run_query("select warehouse_batch_operation('" ~ (payload | replace("'", "''")) ~ "')") -%}
  {% do adapter.commit() %}
  {%- set report = fromjson(result.columns[0].values()[0]) -%}
  {%- if report.get('error') -%}
    {{ exceptions.raise_compiler_error("llm_batch_" ~ operation ~ ": " ~ report['error']) }}
  {%- endif -%}
  {%- for line in report['lines'] -%}
    {% do log("llm_batch_" ~ operation ~ ": " ~ line, info=True) %}
  {%- endfor -%}
{%- endmacro %}

{% macro llm_batch_retry(select=none) %}
  {%- if not execute -%}{{ return(none) }}{%- endif -%}
  {%- if select is none -%}
    {{ exceptions.raise_compiler_error("llm_batch_retry: say which models, e.g. --args '{select: review_sentiment}' (or '{select: \"*\"}')") }}
  {%- endif -%}
  {% do warehouse_batch.llm_batch_operation('retry', select) %}
{% endmacro %}

{#-
  dbt run-operation llm_batch_cleanup: drop the tables no llm_batch model of this project needs:
  `--empty` scratch tables, leftover library copies, and the rows of jobs whose model was removed or
  renamed (their answers stay cached: bringing the model back pays nothing). Jobs with batches still
  in flight are kept until they are collected. The removed models' own relations are dbt's to drop.
-#}
{% macro llm_batch_cleanup() %}
  {%- if not execute -%}{{ return(none) }}{%- endif -%}
  {% do warehouse_batch.llm_batch_operation('cleanup', '*') %}
{% endmacro %}
