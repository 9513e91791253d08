{#-
  The llm_batch materialization: the model is a SELECT with custom_id and prompt / messages / input;
  its config carries the job options (model, system, params, output_schema, max_cost_usd, ...) and
  wait_timeout (seconds to block; default 0). Each run:

    1. commits whatever pre-hooks wrote, because the library reads committed data only;
    2. calls warehouse_batch_sync('<json>') once: the plugin's UDF collects finished batches,
       submits requests never submitted, and publishes rows ⋈ results into the library's own
       table, all on its own cursor (spend records never ride on dbt's transaction);
    3. commits, so the next statement sees what the sync wrote;
    4. builds the model's table from the library's table, swapping it in like a `table` model.

  `dbt run --empty` publishes the columns with no rows and calls no provider; `dbt compile`,
  `dbt show` and `dbt ls` never run a materialization, so they send nothing.
-#}
{% materialization llm_batch, adapter='duckdb', supported_languages=['sql'] %}

  {%- set existing_relation = load_cached_relation(this) -%}
  {%- set target_relation = this.incorporate(type='table') -%}
  {%- set intermediate_relation = make_intermediate_relation(target_relation) -%}
  {%- set preexisting_intermediate_relation = load_cached_relation(intermediate_relation) -%}
  {%- set backup_relation_type = 'table' if existing_relation is none else existing_relation.type -%}
  {%- set backup_relation = make_backup_relation(target_relation, backup_relation_type) -%}
  {%- set preexisting_backup_relation = load_cached_relation(backup_relation) -%}
  {%- set grant_config = config.get('grants') -%}

  {{ drop_relation_if_exists(preexisting_intermediate_relation) }}
  {{ drop_relation_if_exists(preexisting_backup_relation) }}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {#-- 1. is the plugin there? (this query also opens the transaction that commits the pre-hooks) --#}
  {%- set found = run_query("select count(*) from duckdb_functions() where function_name = 'warehouse_batch_sync'") -%}
  {% do adapter.commit() %}
  {%- if found.columns[0].values()[0] == 0 -%}
    {{ exceptions.raise_compiler_error(
        "llm_batch needs the warehouse_batch plugin in this profile. Add to the dbt-duckdb output in "
        ~ "profiles.yml:\n  plugins:\n    - module: warehouse_batch.dbt.plugin\n      alias: warehouse_batch\n"
        ~ "and install the library with its dbt extra: pip install 'warehouse-batch[dbt]'") }}
  {%- endif -%}

  {#-- 2. the sync: once per model, with the compiled SQL and the model's config --#}
  {%- set project_dir = flags.PROJECT_DIR | default(none) -%}
  {#-- schema.yml columns: without output_schema, their data_type + description define the answer --#}
  {%- set yml_columns = {} -%}
  {%- for name, column in model.columns.items() -%}
    {%- do yml_columns.update({name: {'data_type': column.get('data_type'), 'description': column.get('description')}}) -%}
  {%- endfor -%}
  {%- set request = {
      'relation': target_relation.render(),
      'schema': target_relation.schema,
      'identifier': target_relation.identifier,
      'project_dir': (project_dir | string) if project_dir else none,
      'path': model.original_file_path,
      'sql': compiled_code,
      'config': model.config,
      'empty': (flags.EMPTY | default(false)) is true,
      'no_cache': var('llm_batch_no_cache', false),
      'preview': var('llm_batch_preview', 0),
      'columns': yml_columns,
  } -%}
  {%- set payload = tojson(request) -%}
  {%- if payload is none -%}
    {{ exceptions.raise_compiler_error("llm_batch: the config of " ~ this ~ " cannot be written as JSON") }}
  {%- endif -%}
  {%- set synced = run_query("select warehouse_batch_sync('" ~ (payload | replace("'", "''")) ~ "') as report") -%}
  {#-- 3. commit: the next statement must see the table the sync just published --#}
  {% do adapter.commit() %}
  {%- set report = fromjson(synced.columns[0].values()[0]) -%}
  {%- if report.get('error') -%}
    {#-- the library's own message, in dbt's words; a failed sync has committed its spend records --#}
    {%- if report['kind'] == 'config' -%}
      {{ exceptions.raise_compiler_error("llm_batch: " ~ report['error']) }}
    {%- else -%}
      {{ exceptions.raise_database_error("llm_batch: " ~ report['error']) }}
    {%- endif -%}
  {%- endif -%}
  {%- if report.get('preview') is not none -%}
    {#-- preview: show the rendered requests; the model's table and the ledger stay as they are --#}
    {%- for r in report['preview'] -%}
      {% do log("llm_batch " ~ this ~ " preview, custom_id " ~ r['custom_id'] ~ ":\n" ~ r['body'], info=True) %}
    {%- endfor -%}
    {% call statement('main') -%} select 1 {%- endcall %}
    {{ return({'relations': []}) }}
  {%- endif -%}
  {%- if not report.get('empty') -%}
    {% do log(warehouse_batch.llm_batch_plan_line(this, report), info=True) %}
  {%- endif -%}
  {% do log(warehouse_batch.llm_batch_summary(this, report), info=True) %}
  {% do warehouse_batch.llm_batch_warnings(model.name, this, report) %}

  {#-- an enforced contract is checked against the columns the model is about to get --#}
  {%- set contract_config = config.get('contract') -%}
  {%- if contract_config and contract_config.enforced -%}
    {{ get_assert_columns_equivalent('select * from ' ~ report['table']) }}
  {%- endif -%}

  {#-- 4. build the model from the library's table --#}
  {% call statement('main') -%}
    create table {{ intermediate_relation }} as select * from {{ report['table'] }}
  {%- endcall %}
  {#-- one stored copy of the rows beyond this table (the job's rows table): the library's copy goes;
       the next run rebuilds it from the ledger when it needs it --#}
  {% do run_query("drop table if exists " ~ report['table']) %}
  {% if existing_relation is not none %}
    {{ adapter.rename_relation(existing_relation, backup_relation) }}
  {% endif %}
  {{ adapter.rename_relation(intermediate_relation, target_relation) }}

  {#-- docs for the answer fields and generated columns (the yml's description wins), persist_docs or not --#}
  {%- for name, doc in (report.get('column_docs') or {}).items() -%}
    {%- set yml = model.columns.get(name) -%}
    {%- set text = yml.get('description') if yml and yml.get('description') else doc -%}
    {% call statement('llm_batch_column_doc') -%}
      comment on column {{ target_relation }}.{{ adapter.quote(name) }} is '{{ text | replace("'", "''") }}'
    {%- endcall %}
  {%- endfor -%}
  {{ run_hooks(post_hooks, inside_transaction=True) }}

  {% set should_revoke = should_revoke(existing_relation, full_refresh_mode=True) %}
  {% do apply_grants(target_relation, grant_config, should_revoke=should_revoke) %}
  {% do persist_docs(target_relation, model) %}

  {{ adapter.commit() }}

  {{ drop_relation_if_exists(backup_relation) }}

  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [target_relation]}) }}

{% endmaterialization %}


{#-
  dbt-postgres: dbt cannot run Python here, so `warehouse-batch dbt build` (which wraps dbt build) runs
  the model through the library first, publishing its table in Postgres under the model's own
  relation; this materialization keeps that table (hooks, contract check, grants and docs apply) and
  never calls a provider. Plain `dbt build` keeps the table as last published, or stops in one line
  when there is none yet.
-#}
{% materialization llm_batch, adapter='postgres', supported_languages=['sql'] %}
  {%- set existing_relation = load_cached_relation(this) -%}
  {%- if existing_relation is none -%}
    {{ exceptions.raise_compiler_error(
        "llm_batch " ~ this ~ " does not exist yet: on dbt-postgres, llm_batch models are sent and collected by "
        ~ "`warehouse-batch dbt build` (it wraps dbt build and takes the same arguments); run that instead of dbt build") }}
  {%- endif -%}
  {%- set target_relation = this.incorporate(type='table') -%}
  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}
  {%- set contract_config = config.get('contract') -%}
  {%- if contract_config and contract_config.enforced -%}
    {{ get_assert_columns_equivalent('select * from ' ~ target_relation) }}
  {%- endif -%}
  {% call statement('main') -%} select 1 {%- endcall %}
  {% do log("llm_batch " ~ this ~ ": the table as `warehouse-batch dbt build` last published it (on dbt-postgres "
            ~ "that command sends and collects; dbt alone does not)", info=True) %}
  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {% do apply_grants(target_relation, config.get('grants'), should_revoke=should_revoke(existing_relation, full_refresh_mode=True)) %}
  {% do persist_docs(target_relation, model) %}
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}
  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}


{#-- Any other adapter: say what is supported instead of failing somewhere obscure. --#}
{% materialization llm_batch, default %}
  {{ exceptions.raise_compiler_error(
      "the llm_batch materialization runs on dbt-duckdb with the warehouse_batch plugin, and on dbt-postgres through "
      ~ "`warehouse-batch dbt build` (adapter here: "
      ~ adapter.type() ~ "). See docs/dbt.md of warehouse_batch.") }}
{% endmaterialization %}


{#-- Per model: the plan (for a reviewer of a CI build), then what the run did, in counts it measured. --#}
{% macro llm_batch_plan_line(relation, report) -%}
  {%- set cost = report.get('cost_usd_expected') -%}
  llm_batch {{ relation }} plan: {{ report['rows'] }} rows, {{ report['requests'] }} distinct requests: {{ report['cached'] }} cached, {{ report['in_flight'] }} in flight, {{ report['new'] }} new
  {%- if report['new'] %} (estimated {{ 'unknown: no price' if cost is none else '$%.4f' | format(cost) }}
  {%- if report.get('cost_usd_upper_bound') is not none %}, at most {{ '$%.4f' | format(report['cost_usd_upper_bound']) }}{% endif %})
  {%- endif -%}
  {%- if not report['submit'] and report['new'] %}; submit is off: nothing is sent{% endif -%}
{%- endmacro %}

{% macro llm_batch_summary(relation, report) -%}
  {%- set parts = [] -%}
  {%- for status, n in report['statuses'].items() -%}
    {%- do parts.append(n ~ ' ' ~ status) -%}
  {%- endfor -%}
  {%- if report.get('empty') -%}
    llm_batch {{ relation }}: --empty, columns only, nothing sent
  {%- else -%}
    llm_batch {{ relation }}: {{ report['rows'] }} rows ({{ parts | join(', ') if parts else 'none' }}
    {%- if report['stale'] %}; {{ report['stale'] }} of them stale: last answer kept while the changed request is in flight{% endif -%}
    ); {{ report['sent'] }} requests sent now, {{ report['collected'] }} answers collected now
    {%- if report['held'] %}, {{ report['held'] }} held (submit is off){% endif -%}
    ; job {{ report['job'] }}
  {%- endif -%}
{%- endmacro %}

{#-- Failed/expired rows and a wait that ran out are warnings of the model (errors under --warn-error). --#}
{% macro llm_batch_warnings(model_name, relation, report) -%}
  {%- if report.get('errors') -%}
    {%- set parts = [] -%}
    {%- for code, n in report['errors'].items() -%}{%- do parts.append(n ~ ' ' ~ code) -%}{%- endfor -%}
    {% do exceptions.warn("llm_batch " ~ relation ~ ": rows not answered: " ~ (parts | join(', '))
        ~ ". Retryable ones (expired, cancelled, transient errors) are resent by the next build, up to max_attempts = "
        ~ report['max_attempts'] ~ ", or now: dbt run-operation llm_batch_retry --args '{select: " ~ model_name ~ "}'") %}
  {%- endif -%}
  {%- if report.get('timed_out') -%}
    {% do exceptions.warn("llm_batch " ~ relation ~ ": wait_timeout (" ~ report['wait_timeout'] ~ " s) ran out with "
        ~ report['live_batches'] ~ " batch(es) still running; their rows stay as they are (pending or stale) and the next build collects them") %}
  {%- endif -%}
{%- endmacro %}
