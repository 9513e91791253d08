"""DuckDB as the warehouse: a database file (or an open connection) that is also the engine.

DuckDB lets one process write a file at a time, and a reader cannot open it while a writer holds
it. So a writer connects only while it works: `released()` closes the connection during a wait
and reopens it after, waiting with back-off while another process holds the file.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from warehouse_batch.errors import ConfigError, WarehouseBusyError
from warehouse_batch.names import SCHEMA
from warehouse_batch.quoting import quote_table, split_table, sql_literal
from warehouse_batch.sqlfiles import migration_files
from warehouse_batch.warehouses.base import Params, TableKind, WriteMode

#: Seconds a writer waits for a busy file before giving up, unless told otherwise.
DEFAULT_LOCK_TIMEOUT = 15.0
#: DuckDB's buffer pool when the caller sets none. DuckDB's own default (80% of RAM) lets a large
#: job hold gigabytes; with a fixed limit, sorts, joins and aggregates spill to the temp directory
#: instead, so every command's peak memory stays flat whatever the job's size (benchmarks/
#: bench_scale.py checks it) and the biggest job fits the smallest machine. Raise it with
#: --memory-limit for speed on a large machine.
DEFAULT_MEMORY_LIMIT = "256MB"


class DuckDBWarehouse:
    """An open DuckDB warehouse. Use as a context manager, or call close()."""

    dialect = "duckdb"

    def __init__(
        self,
        path: str | Path | duckdb.DuckDBPyConnection,
        *,
        work_dir: str | Path | None = None,
        memory_limit: str | None = None,
        threads: int | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        read_only: bool = False,
    ):
        self._threads, self.lock_timeout = threads, lock_timeout
        self.read_only = read_only
        self._owned = not isinstance(path, duckdb.DuckDBPyConnection)
        # An open connection is someone else's (dbt, a notebook): its settings stay theirs unless given.
        self._memory_limit = memory_limit or (DEFAULT_MEMORY_LIMIT if self._owned else None)
        self._after_rollback: list[str] = []  # settings an aborted transaction refused to restore
        self._temp_directory: Path | None = None
        if isinstance(path, duckdb.DuckDBPyConnection):
            # An open connection (a dbt-duckdb plugin, a notebook): use a cursor of it, never close it.
            self._parent = path
            self.con = path.cursor()
            self._apply_settings(self.con)  # only what the caller asked for
            self.path = str(self.scalar(
                "SELECT path FROM duckdb_databases() WHERE database_name = current_database()") or ":memory:")
        else:
            self.path = str(path) if str(path) == ":memory:" else str(Path(path).expanduser().resolve())
            if read_only and not Path(self.path).exists():
                raise ConfigError(
                    f"there is no warehouse at {self.path}; check --db (or $WAREHOUSE_BATCH_DB), or run a job "
                    "first to create it"
                )
        if work_dir is None:
            base = Path(self.path) if self.path != ":memory:" else Path.cwd() / "memory.duckdb"
            work_dir = base.parent / f"{base.name}.warehouse_batch"
        # Stored paths (shard files) must resolve from any directory a later command runs in.
        self.work_dir = Path(work_dir).expanduser().resolve()
        if self._owned:
            if self.path != ":memory:":
                # Spill files next to the shards (the disk the user chose with --work-dir), not in /tmp.
                self._temp_directory = self.work_dir / "duckdb_tmp"
            self.con = self._connect()
        try:
            self.migrate() if not read_only else self._check_schema()
        except BaseException:
            if self._owned:
                self.con.close()  # a connection left open would block the next one in this process
            raise

    # -- connection --------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return self.path

    @property
    def engine(self) -> duckdb.DuckDBPyConnection:
        return self.con

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """Open the file; while another process holds it, wait (with back-off) up to lock_timeout."""
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.05
        while True:
            try:
                con = duckdb.connect(self.path, read_only=self.read_only)
                break
            except duckdb.IOException as exc:
                text = str(exc)
                if "lock" not in text.lower():
                    raise ConfigError(_open_failure(self.path, text)) from None
                if time.monotonic() >= deadline:
                    holder = text.split("Conflicting lock is held in", 1)[-1].strip() if "Conflicting" in text else ""
                    raise WarehouseBusyError(
                        f"the warehouse {self.path} is in use by another process"
                        f"{' (' + holder.splitlines()[0] + ')' if holder else ''} and stayed busy for "
                        f"{self.lock_timeout:g} s; DuckDB lets one process write a file at a time. Try again, "
                        "or pass --lock-timeout SECONDS to wait longer"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
            except duckdb.Error as exc:  # not a database, a newer/older storage version, a corrupt file
                raise ConfigError(_open_failure(self.path, str(exc))) from None
        # Nothing we write depends on row order (answers map by custom_id), and keeping it costs
        # DuckDB several times the memory on large copies.
        con.execute("SET preserve_insertion_order = false")
        self._apply_settings(con)
        return con

    def _apply_settings(self, con: duckdb.DuckDBPyConnection) -> None:
        if self._memory_limit:
            con.execute(f"SET memory_limit = {sql_literal(self._memory_limit)}")
        if self._temp_directory is not None and not self.read_only:
            # DuckDB creates only the last folder of the path, and only when it first spills.
            self._temp_directory.parent.mkdir(parents=True, exist_ok=True)
            con.execute(f"SET temp_directory = {sql_literal(str(self._temp_directory))}")
        if self._threads:
            con.execute(f"SET threads = {int(self._threads)}")

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Close the file for the block, so readers (BI tools, `status`, dbt) and other writers get in."""
        if not self._owned or self.path == ":memory:":
            yield
            return
        try:  # closing inside the try: an interrupt during close still reopens on the way out
            self.con.close()
            yield
        finally:
            self.con = self._connect()

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> DuckDBWarehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- SQL ---------------------------------------------------------------------------------
    def execute(self, sql: str, params: Params = None) -> duckdb.DuckDBPyConnection:
        return self.con.execute(sql, params) if params is not None else self.con.execute(sql)

    def rows(self, sql: str, params: Params = None) -> list[dict[str, Any]]:
        cur = self.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def one(self, sql: str, params: Params = None) -> tuple | None:
        rows = self.execute(sql, params).fetchall()  # drain: DuckDB refuses new work beside an open result
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Params = None) -> Any:
        row = self.one(sql, params)
        return row[0] if row else None

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.con.executemany(sql, rows)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: a crash or error inside leaves the warehouse as it was."""
        self.con.begin()
        try:
            yield
        except BaseException:
            self.con.rollback()
            self.rolled_back()
            raise
        self.con.commit()

    def rolled_back(self) -> None:
        """After a rollback: restore the settings that a failed statement's aborted transaction refused."""
        pending, self._after_rollback = self._after_rollback, []
        for statement in pending:
            self.con.execute(statement)

    @contextlib.contextmanager
    def single_threaded(self, memory_share: float = 1.0) -> Iterator[None]:
        """Run what is inside on one DuckDB thread (a long chain of hash joins then fits the memory
        limit: each thread keeps its own partitions). A connection the tool was handed keeps its
        settings: dbt-duckdb runs us inside a query of that connection, and changing `threads`
        under a running query aborts DuckDB.

        memory_share < 1: DuckDB also gets only that part of its memory limit, leaving the rest to
        what Python holds beside a streaming result (Arrow batches, open files)."""
        if not self._owned:
            yield
            return
        threads = int(self.scalar("SELECT current_setting('threads')"))
        limit = str(self.scalar("SELECT current_setting('memory_limit')"))
        limit_bytes = _size_bytes(limit) if memory_share < 1 else None
        self.con.execute("SET threads = 1")
        if limit_bytes:
            try:
                self.con.execute(f"SET memory_limit = '{int(limit_bytes * memory_share) >> 10}KiB'")
            except duckdb.Error:  # more than that is pinned right now (an in-memory database): keep it
                limit_bytes = None
        restore = [f"SET threads = {threads}"]
        if limit_bytes:  # as it was given (DuckDB shows it rounded: setting that back would drift)
            restore.append(f"SET memory_limit = {sql_literal(self._memory_limit or limit)}")
        try:
            yield
        finally:
            self._restore(restore)

    @contextlib.contextmanager
    def joins_as_written(self) -> Iterator[None]:
        """Build each hash join on the side the statement puts on its right (DuckDB's
        `build_side_probe_side` optimizer off): DuckDB estimates a read_json scan at a few dozen rows
        however big its files are, and would build on every answer line. The option is global to the
        database, so a connection the tool was handed keeps its own."""
        if not self._owned:
            yield
            return
        before = str(self.scalar("SELECT current_setting('disabled_optimizers')"))
        disabled = ", ".join(filter(None, [before, "build_side_probe_side"]))
        self.con.execute(f"SET disabled_optimizers = {sql_literal(disabled)}")
        try:
            yield
        finally:
            self._restore([f"SET disabled_optimizers = {sql_literal(before)}"])

    def _restore(self, settings: list[str]) -> None:
        try:
            for statement in settings:
                self.con.execute(statement)
        except duckdb.TransactionException:
            # A statement inside failed (or Ctrl-C stopped it) and aborted the transaction, which
            # refuses even SET: restore once it is rolled back, and let the failure show.
            self._after_rollback.extend(settings)

    # -- the user's query --------------------------------------------------------------------
    def describe_query(self, query: str) -> dict[str, str]:
        cur = self.execute(f"DESCRIBE SELECT * FROM (\n{query}\n) AS q")
        return {row[0]: row[1] for row in cur.fetchall()}

    def stream_query(self, query: str, batch_rows: int = 65536) -> pa.RecordBatchReader:
        return self.con.execute(query).fetch_record_batch(batch_rows)

    def query_source(self, query: str) -> str:
        return f"(\n{query}\n)"

    # -- tables ------------------------------------------------------------------------------
    def table_kind(self, qualified: str) -> TableKind | None:
        schema, name = split_table(qualified)
        row = self.one(
            "SELECT CASE WHEN table_type = 'VIEW' THEN 'view' ELSE 'table' END FROM information_schema.tables "
            "WHERE lower(table_schema) = lower(?) AND lower(table_name) = lower(?) "
            "AND table_catalog = current_database()",
            [schema, name],
        )
        return row[0] if row else None

    def write_table(self, qualified: str, data: pa.RecordBatchReader, mode: WriteMode,
                    key: Sequence[str] = ()) -> None:
        target = quote_table(qualified)
        self.con.register("__wb_incoming", data)
        try:
            if mode == "replace":
                self.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM __wb_incoming")
            elif mode == "append":
                self.execute(f"INSERT INTO {target} SELECT * FROM __wb_incoming")
            else:  # upsert: the table's primary key, which must be `key`, decides which rows are replaced
                self.execute(f"INSERT OR REPLACE INTO {target} BY NAME SELECT * FROM __wb_incoming")
        finally:
            self.con.unregister("__wb_incoming")

    # -- schema ------------------------------------------------------------------------------
    def _check_schema(self) -> None:
        """Read-only: the metadata must exist and be current (a reader never migrates)."""
        if not self.scalar("SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = 'migrations'",
                           [SCHEMA]):
            raise ConfigError(f"{self.path} holds no warehouse_batch jobs yet; run a job first")
        done = {row[0] for row in self.execute(f"SELECT version FROM {SCHEMA}.migrations").fetchall()}
        if any(version not in done for version, _, _ in migration_files()):
            raise ConfigError(
                f"{self.path} was written by an older warehouse_batch; run `warehouse-batch sync --db {self.path}` "
                "once to upgrade its metadata tables"
            )

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
                for statement in duckdb.extract_statements(text):
                    self.execute(statement.query)
                self.execute(f"INSERT INTO {SCHEMA}.migrations (version, name) VALUES (?, ?)", [version, name])
            applied.append(name)
        return applied


def _open_failure(path: str, detail: str) -> str:
    first = detail.strip().splitlines()[0] if detail.strip() else "unknown error"
    if not os.access(os.path.dirname(path) or ".", os.W_OK) and not os.path.exists(path):
        return f"cannot create the warehouse {path}: its folder is not writable ({first})"
    return (
        f"cannot open the warehouse {path}: {first}. Is it a DuckDB database written by a compatible DuckDB "
        "version? Check --db (or $WAREHOUSE_BATCH_DB)"
    )


_UNITS = {"bytes": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def rows_within_limit(warehouse: Any, row_bytes: int) -> int:
    """How many rows of `row_bytes` each DuckDB's memory limit in force holds (at least 16,384): a
    step that works in parts sizes them by this, so they fit whatever limit was set."""
    return max(1 << 14, int(memory_limit_bytes(warehouse) // row_bytes))


def memory_limit_bytes(warehouse: Any) -> float:
    """DuckDB's memory limit in force, in bytes (the default's when DuckDB shows it otherwise)."""
    return _size_bytes(str(warehouse.scalar("SELECT current_setting('memory_limit')"))) or 256e6


def _size_bytes(setting: str) -> float | None:
    """Bytes of a size as DuckDB shows a setting ('244.1 MiB'); None for anything else."""
    parts = setting.split()
    if len(parts) != 2 or parts[1].lower() not in _UNITS:
        return None
    try:
        return float(parts[0]) * _UNITS[parts[1].lower()]
    except ValueError:
        return None
