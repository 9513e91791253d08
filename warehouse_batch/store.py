"""The warehouse: a DuckDB connection, the metadata schema and its migrations.

Every step of a run reads its input from here and writes its outcome here, so any step can be
killed and re-run. Writes that must survive together happen in one transaction.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
from sqlglot import exp

from warehouse_batch.errors import ConfigError
from warehouse_batch.sqlfiles import migration_files

SCHEMA = "warehouse_batch"


def quote_ident(name: str) -> str:
    """Quote one identifier for DuckDB (sqlglot knows the dialect's rules)."""
    return exp.to_identifier(name, quoted=True).sql(dialect="duckdb")


def quote_table(name: str) -> str:
    """Quote a possibly schema-qualified table name (`schema.table`)."""
    return exp.to_table(name, dialect="duckdb").sql(dialect="duckdb", identify=True)


def sql_literal(value: str) -> str:
    """A SQL string literal."""
    return exp.Literal.string(value).sql(dialect="duckdb")


class Store:
    """An open warehouse: a DuckDB file path, or an open connection. Use as a context manager, or call close()."""

    def __init__(
        self,
        path: str | Path | duckdb.DuckDBPyConnection,
        *,
        work_dir: str | Path | None = None,
        memory_limit: str | None = None,
        threads: int | None = None,
        lock_timeout: float = 0.0,
    ):
        if isinstance(path, duckdb.DuckDBPyConnection):
            # An open connection (a dbt-duckdb plugin, a notebook): use a cursor of it, never close it.
            self.con = path.cursor()
            self.path = str(self.scalar("SELECT path FROM duckdb_databases() WHERE database_name = current_database()") or ":memory:")
        else:
            self.path = str(path)
            self.con = _connect(self.path, lock_timeout)
            # Our own connection: nothing we write depends on row order (answers map by custom_id),
            # and keeping it costs DuckDB several times the memory on large copies.
            self.con.execute("SET preserve_insertion_order = false")
        if memory_limit:
            self.con.execute(f"SET memory_limit = {sql_literal(memory_limit)}")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        if work_dir is None:
            base = Path(self.path).resolve() if self.path != ":memory:" else Path.cwd() / "memory.duckdb"
            work_dir = base.parent / f"{base.name}.warehouse_batch"
        self.work_dir = Path(work_dir)
        self.migrate()

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries ---------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
        return self.con.execute(sql, params) if params is not None else self.con.execute(sql)

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a query and return its rows as dicts."""
        cur = self.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def register(self, name: str, data: object) -> None:
        """Expose an Arrow table to SQL under `name` (until unregister)."""
        self.con.register(name, data)

    def unregister(self, name: str) -> None:
        self.con.unregister(name)

    def one(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> tuple | None:
        """The first row of a query (the result is drained either way)."""
        rows = self.execute(sql, params).fetchall()
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        rows = self.execute(sql, params).fetchall()  # drain: DuckDB 2 refuses new work beside an open result
        return rows[0][0] if rows else None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: a crash or error inside leaves the warehouse as it was."""
        self.con.begin()
        try:
            yield
        except BaseException:
            self.con.rollback()
            raise
        self.con.commit()

    def table_exists(self, qualified: str) -> bool:
        table = exp.to_table(qualified, dialect="duckdb")
        return bool(
            self.scalar(
                "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
                [table.db or "main", table.name],
            )
        )

    # -- schema ----------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        """Apply the numbered migrations not yet recorded; safe to run any number of times."""
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        self.execute(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA}.migrations ("
            "version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)"
        )
        done = {row[0] for row in self.execute(f"SELECT version FROM {SCHEMA}.migrations").fetchall()}
        applied = []
        for version, name, text in migration_files():
            if version in done:
                continue
            with self.transaction():
                for statement in _split(text):
                    self.execute(statement)
                self.execute(f"INSERT INTO {SCHEMA}.migrations (version, name) VALUES (?, ?)", [version, name])
            applied.append(name)
        return applied


def _connect(path: str, lock_timeout: float) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file; while another process holds it, wait up to `lock_timeout` seconds."""
    deadline = time.monotonic() + lock_timeout
    while True:
        try:
            return duckdb.connect(path)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise ConfigError(f"cannot open the warehouse {path}: {exc}") from None
            if time.monotonic() >= deadline:
                holder = str(exc).split("Conflicting lock is held in", 1)[-1].strip() if "Conflicting" in str(exc) else ""
                raise ConfigError(
                    f"the warehouse {path} is in use by another process{' (' + holder + ')' if holder else ''}; "
                    "DuckDB allows one writer per file, so only one run/sync proceeds at a time. Wait for it, "
                    "or pass --lock-timeout SECONDS to wait automatically"
                ) from None
            time.sleep(0.2)


def _split(script: str) -> list[str]:
    """Statements of a migration file. DuckDB's parser splits them; comments and blanks are dropped."""
    return [stmt.query for stmt in duckdb.extract_statements(script)]
