"""dbt integration: the dbt-duckdb plugin (`warehouse_batch.dbt.plugin`) behind the `llm_batch`
materialization of the dbt package in `dbt_warehouse_batch/`. See docs/dbt.md.

`sync` holds the library side and does not import dbt; `plugin` needs dbt-duckdb (extra `dbt`).
"""
