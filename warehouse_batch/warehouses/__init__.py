"""Warehouses: the `Warehouse` interface and the one factory that opens any of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb as _duckdb  # aliased: the submodule warehouses.duckdb takes the plain name

from warehouse_batch.errors import ConfigError
from warehouse_batch.warehouses.base import Warehouse
from warehouse_batch.warehouses.duckdb import DEFAULT_LOCK_TIMEOUT, DuckDBWarehouse

Database = str | Path | _duckdb.DuckDBPyConnection


def open_warehouse(db: Database, **settings: Any) -> Warehouse:
    """The warehouse `db` names: a DuckDB file path (created if missing) or an open DuckDB connection.

    Settings: work_dir, memory_limit, threads, lock_timeout, read_only."""
    if isinstance(db, str) and "://" in db:
        scheme = db.split("://", 1)[0]
        raise ConfigError(
            f"warehouses of kind {scheme!r} are not supported yet; --db takes a DuckDB file path"
        )
    return DuckDBWarehouse(db, **settings)


__all__ = ["DEFAULT_LOCK_TIMEOUT", "Database", "DuckDBWarehouse", "Warehouse", "open_warehouse"]
