"""The `Warehouse` interface: where the user's query runs and where metadata and output tables live.

DuckDB is always the compute engine (request bodies, hashes, shards, parsing answers), whatever
the warehouse, so a request has one hash everywhere. A warehouse that is not DuckDB (PostgreSQL
next) streams the query's rows into the engine as Arrow and takes tables back with its bulk path.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import duckdb
import pyarrow as pa

Params = Sequence[Any] | dict[str, Any] | None
WriteMode = Literal["replace", "append", "upsert"]
TableKind = Literal["table", "view"]


@runtime_checkable
class Warehouse(Protocol):
    """An open warehouse. Implementations: `warehouses.duckdb.DuckDBWarehouse`,
    `warehouses.postgres.PostgresWarehouse`."""

    #: sqlglot dialect the user's query is checked in.
    dialect: str
    #: Where shard and result files go.
    work_dir: Path
    #: True when opened for reading only (status, reports): every write is refused by the warehouse.
    read_only: bool

    @property
    def location(self) -> str:
        """The warehouse for messages, with any password redacted."""

    @property
    def engine(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection that compiles requests and parses answers."""

    # -- SQL on the warehouse (metadata tables, output tables) -------------------------------
    def execute(self, sql: str, params: Params = None) -> Any: ...
    def rows(self, sql: str, params: Params = None) -> list[dict[str, Any]]: ...
    def one(self, sql: str, params: Params = None) -> tuple | None: ...
    def scalar(self, sql: str, params: Params = None) -> Any: ...
    def transaction(self) -> AbstractContextManager[None]: ...
    def single_threaded(self, memory_share: float = 1.0) -> AbstractContextManager[None]:
        """One engine thread for what is inside (memory-bound statements), and with memory_share < 1
        only that part of the engine's memory limit (the rest is for Python beside a stream)."""

    def joins_as_written(self) -> AbstractContextManager[None]:
        """Hash joins inside build on the side the statement writes on their right, whatever the
        engine estimates (it underestimates read_json scans)."""

    # -- the user's query --------------------------------------------------------------------
    def describe_query(self, query: str) -> dict[str, str]:
        """The query's columns → engine (DuckDB) types, without running it."""

    def stream_query(self, query: str, batch_rows: int = 65536) -> pa.RecordBatchReader:
        """The query's rows as Arrow record batches (bounded memory)."""

    def query_source(self, query: str) -> str:
        """SQL the engine can select the query's rows from: the query itself when the warehouse is
        the engine, else an engine temp table its rows were streamed into."""

    # -- tables ------------------------------------------------------------------------------
    def table_kind(self, qualified: str) -> TableKind | None:
        """Whether a table or view of that name exists (any case), and which."""

    def write_table(self, qualified: str, data: pa.RecordBatchReader, mode: WriteMode,
                    key: Sequence[str] = ()) -> None:
        """Bulk-write Arrow data: replace the table, append to it, or upsert on `key`."""

    # -- lifecycle ---------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        """Apply the numbered migrations not yet recorded."""

    def released(self) -> AbstractContextManager[None]:
        """Let other processes in for the duration of the block (a wait between polls)."""

    def close(self) -> None: ...

