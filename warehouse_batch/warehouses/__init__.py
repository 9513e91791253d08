"""Warehouses: the `Warehouse` interface and the one factory that opens any of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb as _duckdb  # aliased: the submodule warehouses.duckdb takes the plain name

from warehouse_batch.errors import ConfigError
from warehouse_batch.warehouses.base import Warehouse
from warehouse_batch.warehouses.duckdb import DEFAULT_LOCK_TIMEOUT, DuckDBWarehouse


def is_postgres_uri(db: object) -> bool:
    return isinstance(db, str) and db.split("://", 1)[0].lower() in ("postgresql", "postgres")

Database = str | Path | _duckdb.DuckDBPyConnection


def open_warehouse(db: Database, **settings: Any) -> Warehouse:
    """The warehouse `db` names: a DuckDB file path (created if missing), an open DuckDB connection,
    or a PostgreSQL URI (`postgresql://user[:password]@host:port/dbname`).

    Settings: work_dir, memory_limit, threads, lock_timeout, read_only."""
    if is_postgres_uri(db):
        from warehouse_batch.warehouses.postgres import PostgresWarehouse

        return PostgresWarehouse(str(db), **settings)
    if isinstance(db, str) and "://" in db:
        scheme = db.split("://", 1)[0]
        raise ConfigError(
            f"warehouses of kind {scheme!r} are not supported; --db takes a DuckDB file path or a "
            "postgresql://user@host:port/dbname URI"
        )
    return DuckDBWarehouse(db, **settings)


__all__ = ["DEFAULT_LOCK_TIMEOUT", "Database", "DuckDBWarehouse", "Warehouse", "open_warehouse"]
