"""Answers already paid for elsewhere: copy them from another warehouse, opened read-only.

A CI build on a fresh database (plugin setting `defer_db`, like dbt's `--defer`) asks the same
questions production already answered. Before the model's run, the requests its rows make are
looked up in the other warehouse's results cache and the answers found are copied into this
warehouse's cache, so the run finds them answered: real answers, nothing sent, nothing paid.
The other file is ATTACHed READ_ONLY for the copy and detached right after; nothing there changes.
"""

from __future__ import annotations

import os

import duckdb

from warehouse_batch import compile as compiler
from warehouse_batch.errors import ConfigError
from warehouse_batch.jobs import Job
from warehouse_batch.names import SCHEMA
from warehouse_batch.quoting import sql_literal
from warehouse_batch.warehouses.duckdb import DuckDBWarehouse

ALIAS = "__wb_defer"


def import_answers(warehouse: DuckDBWarehouse, job: Job, path: str) -> int:
    """Copy the answers `path` holds for this job's requests and this warehouse lacks; returns how many."""
    if not os.path.exists(path):
        raise ConfigError(f"defer_db {path!r} does not exist; point the plugin setting defer_db at the "
                          "production warehouse file (a copy of it works too)")
    stage = compiler.compile_job(warehouse, job, nonce=None if job.cache else "no-defer")
    try:
        try:
            warehouse.execute(f"ATTACH {sql_literal(path)} AS {ALIAS} (READ_ONLY)")
        except duckdb.Error as exc:
            raise ConfigError(f"defer_db {path!r} cannot be opened read-only: {str(exc).splitlines()[0]} (another "
                              "process may hold it for writing; use a copy of the file)") from None
        try:
            if not warehouse.scalar("SELECT count(*) FROM duckdb_tables() WHERE database_name = ? "
                                    "AND schema_name = ? AND table_name = 'results'", [ALIAS, SCHEMA]):
                return 0  # no warehouse_batch answers there (yet)
            with warehouse.transaction():
                before = warehouse.scalar(f"SELECT count(*) FROM {SCHEMA}.results")
                warehouse.execute(
                    f"""INSERT INTO {SCHEMA}.results BY NAME
                        SELECT other.* FROM {ALIAS}.{SCHEMA}.results AS other
                        WHERE other.status = 'completed'
                          AND other.request_hash IN (SELECT __wb_request_hash FROM {stage.table})
                          AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.results AS mine
                                          WHERE mine.request_hash = other.request_hash)""")
                return int(warehouse.scalar(f"SELECT count(*) FROM {SCHEMA}.results") - before)
        finally:
            warehouse.execute(f"DETACH {ALIAS}")
    finally:
        compiler.drop_stage(warehouse, job)
