{#-
  dbt run-operation llm_batch_status [--args '{select: review_sentiment}' | '{job: main__review_sentiment}']

  With `select` (a model name, list, tag:<tag>, path:<prefix> or *): one line per llm_batch model with
  its rows by status, live batches' progress and ETA, and the expected cost of what is in flight
  (see llm_batch_operations.sql). Without it, the table below.

  Rows by status and spend of every warehouse_batch job in this database (one job per llm_batch
  model, named <schema>__<model>, plus any job run from the CLI). Reads the metadata tables only:
  no provider call. Spend counts each paid request once, under the job that first asked for it.
-#}
{% macro llm_batch_status(job=none, select=none) %}
  {%- if not execute -%}{{ return(none) }}{%- endif -%}
  {%- if select is not none -%}
    {% do warehouse_batch.llm_batch_operation('status', select) %}
    {{ return(none) }}
  {%- endif -%}
  {%- set exists = run_query(
      "select count(*) from information_schema.tables "
      ~ "where table_schema = 'warehouse_batch' and table_name in ('job_status', 'spend')") -%}
  {%- if exists.columns[0].values()[0] < 2 -%}
    {% do log("llm_batch_status: no warehouse_batch jobs in this database yet (run an llm_batch model first)", info=True) %}
    {{ return(none) }}
  {%- endif -%}
  {%- set where = "where js.job_name = '" ~ (job | replace("'", "''")) ~ "'" if job else "" -%}
  {%- set jobs = run_query(
      "select js.job_name, js.row_count, js.completed, js.failed, js.pending, js.expired, js.cancelled, "
      ~ "js.live_batches, coalesce(sp.requests, 0) as paid_requests, sp.cost_usd "
      ~ "from warehouse_batch.job_status as js "
      ~ "left join (select job_name, sum(requests) as requests, sum(cost_usd) as cost_usd "
      ~ "           from warehouse_batch.spend group by 1) as sp using (job_name) "
      ~ where ~ " order by 1") -%}
  {%- if job and not jobs.rows -%}
    {%- set names = run_query("select string_agg(name, ', ' order by name) from warehouse_batch.jobs") -%}
    {{ exceptions.raise_compiler_error("llm_batch_status: no job named '" ~ job ~ "' in this warehouse; jobs: "
        ~ (names.columns[0].values()[0] or 'none') ~ ". To ask by model name: --args '{select: <model>}'") }}
  {%- endif -%}
  {%- set total = run_query("select coalesce(sum(requests), 0), sum(cost_usd), count(*) - count(cost_usd) "
                            ~ "from warehouse_batch.spend") -%}
  {%- set header = ['job', 'rows', 'completed', 'failed', 'pending', 'expired', 'cancelled', 'live batches',
                    'paid requests', 'cost usd'] -%}
  {%- set lines = [] -%}
  {%- for row in jobs.rows -%}
    {%- set cost = 'n/a' if row[9] is none else '%.4f' | format(row[9]) -%}
    {%- do lines.append([row[0]] + (row[1:9] | map('string') | list) + [cost]) -%}
  {%- endfor -%}
  {%- set widths = [] -%}
  {%- for i in range(header | length) -%}
    {%- set w = [header[i] | length] -%}
    {%- for line in lines -%}{%- do w.append(line[i] | length) -%}{%- endfor -%}
    {%- do widths.append(w | max) -%}
  {%- endfor -%}
  {%- set out = [] -%}
  {%- for line in [header] + lines -%}
    {%- set cells = [] -%}
    {%- for cell in line -%}
      {%- do cells.append(cell.ljust(widths[loop.index0]) if loop.first else cell.rjust(widths[loop.index0])) -%}
    {%- endfor -%}
    {%- do out.append(cells | join('  ')) -%}
  {%- endfor -%}
  {% do log("llm_batch_status: " ~ (jobs.rows | length) ~ " job(s)\n" ~ (out | join('\n')), info=True) %}
  {%- set t = total.rows[0] -%}
  {% do log("llm_batch_status: spend " ~ t[0] ~ " paid request(s), $"
            ~ ('%.4f' | format(t[1] or 0)) ~ (" (" ~ t[2] ~ " spend row(s) without a price)" if t[2] else ""), info=True) %}
{% endmacro %}
