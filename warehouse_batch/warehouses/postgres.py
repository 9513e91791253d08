"""PostgreSQL as the warehouse: the user's query, the metadata schema and the output tables live in Postgres.

DuckDB stays the compute engine (bodies, hashes, shards, parsing answers). Its private database in
the work dir holds a **write-through replica** of the `warehouse_batch` schema, so every statement
the ledger, compile and publish run keeps its one DuckDB text (no second SQL dialect to keep in
step, no mixed engine/warehouse joins):

- at open, and whenever another process changed Postgres while this one waited (`released()`),
  the replica is rebuilt from Postgres (`replica.pull`): a lost work dir loses nothing;
- every write to a metadata table, a job's rows table or an output table is pushed to Postgres
  when its engine transaction ends (a lone statement: right after it), in one Postgres
  transaction, *before* the engine commits and before the caller goes on to its side effect at
  the provider. A crash between the two leaves Postgres without the change, exactly as if the
  transaction had not committed — the crash-safe protocol is the DuckDB one, with Postgres as
  its durable store. Keyed metadata tables are diffed against a shadow copy of what Postgres
  holds, so a push sends only changed rows (`replica.push_rows`).

One process writes at a time, as with a DuckDB file: a writer holds the session advisory lock
`pg_advisory_lock(hashtext('warehouse_batch'))` while it works and lets go of it during waits
(`released()`); a killed runner's session ends and its lock with it. Readers (`status`, psql, BI
tools) never take it and are never blocked (MVCC; a push holds row locks for its own short
transaction only).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import duckdb
import pyarrow as pa
import sqlglot

from warehouse_batch.errors import ConfigError, JobError, WarehouseBusyError
from warehouse_batch.names import SCHEMA
from warehouse_batch.quoting import quote_ident, split_table
from warehouse_batch.sqlfiles import migration_files, postgres_migration
from warehouse_batch.warehouses import replica
from warehouse_batch.warehouses.base import Params, TableKind, WriteMode
from warehouse_batch.warehouses.duckdb import DEFAULT_LOCK_TIMEOUT, DuckDBWarehouse

#: Metadata tables diffed by key when pushed (others are replaced whole: small, or new).
KEYS: dict[str, tuple[str, ...]] = {
    "jobs": ("name",), "runs": ("run_id",), "requests": ("request_hash",), "batches": ("shard_id",),
    "results": ("request_hash",), "job_rows": ("job_name", "custom_id"), "settings": ("name",),
    "prices": ("model",), "quotas": ("location", "model"), "job_counts": ("job_name",),
    "request_shards": ("request_hash", "shard_id", "attempt"), "answered_rows": ("job_name", "custom_id"),
}
#: Tables analysts write too (jobs defined in SQL): their owner module reads and writes them in
#: Postgres itself (`direct_rows`, targeted UPDATEs) and mirrors them into the engine for reads; a
#: push (DELETE + INSERT of changed rows) could undo an analyst's concurrent edit, so none is made.
DIRECT = ("job_definitions", "job_definition_versions")
#: The one writer lock of a Postgres warehouse (like a DuckDB file's own lock).
LOCK_KEY = "warehouse_batch"
#: A Postgres-only sequence bumped by every push: a writer back from a wait re-reads if it moved.
CHANGES = f"{SCHEMA}.replica_changes"
SHADOW = "__wb_pg"
_WRITE = re.compile(
    r"\b(?:INSERT\s+(?:OR\s+REPLACE\s+)?INTO|UPDATE|DELETE\s+FROM|"
    r"CREATE\s+(?:OR\s+REPLACE\s+)?TABLE(?:\s+IF\s+NOT\s+EXISTS)?|DROP\s+TABLE(?:\s+IF\s+EXISTS)?|ALTER\s+TABLE)"
    r"\s+((?:\"[^\"]+\"|[A-Za-z_][\w$]*)(?:\s*\.\s*(?:\"[^\"]+\"|[A-Za-z_][\w$]*))?)",
    re.IGNORECASE)
_RENAME = re.compile(r"\bRENAME\s+TO\s+(\"[^\"]+\"|[A-Za-z_][\w$]*)", re.IGNORECASE)
_TEMP = re.compile(r"\bCREATE\s+(?:OR\s+REPLACE\s+)?TEMP(?:ORARY)?\s+TABLE", re.IGNORECASE)
#: Postgres types ADBC reads as the engine expects (by their `POSTGRESQL:type` name).
_NATIVE = {"int2", "int4", "int8", "float4", "float8", "bool", "text", "varchar", "bpchar", "name", "date",
           "timestamp", "timestamptz", "bytea", "json", "jsonb", "uuid", "time", "interval"}


def redact(uri: str) -> str:
    """The URI with its password (if any) replaced by ***."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return uri.replace(parts.netloc, f"{user}@{netloc[1]}", 1)


def _connect_module() -> Any:
    try:
        import adbc_driver_postgresql.dbapi as dbapi
    except ImportError:
        raise ConfigError(
            "a postgresql:// warehouse needs the ADBC PostgreSQL driver: pip install 'warehouse-batch[postgres]'"
        ) from None
    return dbapi


class PostgresWarehouse:
    """An open PostgreSQL warehouse (see the module docstring). Use as a context manager, or close()."""

    dialect = "postgres"

    def __init__(self, uri: str, *, work_dir: str | Path | None = None, memory_limit: str | None = None,
                 threads: int | None = None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT, read_only: bool = False):
        self.uri, self.read_only, self.lock_timeout = uri, read_only, lock_timeout
        parts = urlsplit(uri)
        self._password = unquote(parts.password) if parts.password else os.environ.get("PGPASSWORD")
        database = (parts.path or "/").lstrip("/") or (parts.username or "postgres")
        if work_dir is None:
            work_dir = Path.cwd() / ".warehouse_batch" / f"{parts.hostname or 'local'}_{parts.port or 5432}_{database}"
        self.work_dir = Path(work_dir).expanduser().resolve()
        self._dirty: set[tuple[str, str]] = set()
        self._in_transaction = False
        self._seen_changes: int | None = None
        self._locked = False
        self._query_role: str | None = None
        self.con = self._connect()
        self.cursor = self.con.cursor()
        try:
            if read_only:
                self._check_schema()
            else:
                self._lock()
                self.migrate()
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self._engine = DuckDBWarehouse(self._engine_path(), work_dir=self.work_dir, memory_limit=memory_limit,
                                           threads=threads)
            self._refresh()
        except BaseException:
            self.close()
            raise

    # -- connection --------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return redact(self.uri)

    @property
    def engine(self) -> duckdb.DuckDBPyConnection:
        return self._engine.con

    def _clean(self, text: str) -> str:
        """An error message without the password (drivers may quote the URI they were given)."""
        text = text.replace(self.uri, self.location)
        return text.replace(self._password, "***") if self._password else text

    def _connect(self) -> Any:
        dbapi = _connect_module()
        try:
            return dbapi.connect(self.uri, autocommit=True)
        except Exception as exc:  # noqa: BLE001 - every driver error becomes a ConfigError, password-free
            first = self._clean(str(exc)).strip().splitlines()
            raise ConfigError(
                f"cannot connect to the warehouse {self.location}: {first[0] if first else type(exc).__name__}. "
                "Check --db (or $WAREHOUSE_BATCH_DB), that the server runs, and the password ($PGPASSWORD or "
                "~/.pgpass)"
            ) from None

    def _engine_path(self) -> Path:
        """A private engine file per process (two runners may share a work dir); dead ones are removed."""
        for old in self.work_dir.glob("engine-*.duckdb"):
            pid = old.stem.split("-", 1)[1]
            if pid.isdigit() and not _alive(int(pid)):
                old.unlink(missing_ok=True)
                Path(str(old) + ".wal").unlink(missing_ok=True)
        path = self.work_dir / f"engine-{os.getpid()}.duckdb"
        path.unlink(missing_ok=True)
        Path(str(path) + ".wal").unlink(missing_ok=True)
        return path

    def _pg(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        try:
            self.cursor.execute(sql, params) if params is not None else self.cursor.execute(sql)
            return self.cursor.fetchall() if self.cursor.description else []
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"PostgreSQL ({self.location}) refused a statement: "
                              f"{self._clean(str(exc)).strip().splitlines()[0]}") from None

    def _lock(self) -> None:
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.05
        while not self._pg("SELECT pg_try_advisory_lock(hashtext($1))", (LOCK_KEY,))[0][0]:
            if time.monotonic() >= deadline:
                raise WarehouseBusyError(
                    f"the warehouse {self.location} is in use by another warehouse_batch process and stayed busy for "
                    f"{self.lock_timeout:g} s (one writer at a time). Try again, or pass --lock-timeout SECONDS to "
                    "wait longer"
                )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        self._locked = True

    def _unlock(self) -> None:
        if self._locked:
            self._locked = False
            self._pg("SELECT pg_advisory_unlock(hashtext($1))", (LOCK_KEY,))

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Let other writers in for the block; back from it, re-read what they changed."""
        if self.read_only:
            yield
            return
        self._unlock()
        try:
            yield
        finally:
            self._lock()
            if self._changes() != self._seen_changes:
                self._refresh()

    def close(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            path = Path(engine.path)
            engine.close()
            path.unlink(missing_ok=True)
            Path(str(path) + ".wal").unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            self.cursor.close()
        with contextlib.suppress(Exception):
            self.con.close()  # ends the session: its advisory lock and temp tables go with it

    def __enter__(self) -> PostgresWarehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- SQL (in the engine, written through to Postgres) ------------------------------------
    def execute(self, sql: str, params: Params = None) -> Any:
        if self.read_only or not self._note_writes(sql):
            return self._engine.execute(sql, params)
        cursor = self._engine.execute(sql, params)
        result = _Result(cursor)  # drained: a push runs other statements on this connection
        if not self._in_transaction:
            with self.transaction():
                pass
        return result

    def rows(self, sql: str, params: Params = None) -> list[dict[str, Any]]:
        cur = self.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def one(self, sql: str, params: Params = None) -> tuple | None:
        rows = self.execute(sql, params).fetchall()
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Params = None) -> Any:
        row = self.one(sql, params)
        return row[0] if row else None

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._note_writes(sql)
        self._engine.executemany(sql, rows)
        if not self._in_transaction and self._dirty:
            with self.transaction():
                pass

    def single_threaded(self, memory_share: float = 1.0) -> contextlib.AbstractContextManager[None]:
        return self._engine.single_threaded(memory_share)

    def joins_as_written(self) -> contextlib.AbstractContextManager[None]:
        return self._engine.joins_as_written()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing, in the engine and in Postgres: the changes reach Postgres (one transaction)
        before the engine commits."""
        if self._in_transaction:  # nested: part of the outer one
            yield
            return
        engine = self._engine.con
        engine.begin()
        self._in_transaction = True
        try:
            yield
            self._push()
        except BaseException:
            engine.rollback()
            self._engine.rolled_back()
            self._dirty.clear()
            raise
        finally:
            self._in_transaction = False
        engine.commit()

    def _note_writes(self, sql: str) -> bool:
        """Record which durable tables a statement writes (True if any)."""
        if _TEMP.search(sql):
            return False
        found = False
        for match in _WRITE.finditer(sql):
            schema, name = split_table(match.group(1).replace(" ", ""))
            if schema.lower() == "temp":
                continue
            rename = _RENAME.search(sql, match.end())
            # A table built under an internal name and renamed to a real one (publish) is pushed
            # under its new name.
            for written in (name, rename.group(1).strip('"') if rename else None):
                if written and not (written.startswith("__wb") or written.endswith("__rows_next")):
                    self._dirty.add((schema, written))
                    found = True
        return found

    def _push(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = sorted(self._dirty), set()
        self._pg("BEGIN")
        try:
            for schema, name in dirty:
                self._push_table(schema, name)
            self._seen_changes = self._pg(f"SELECT nextval('{CHANGES}')")[0][0]
            self._pg("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                self._pg("ROLLBACK")
            raise

    def _push_table(self, schema: str, name: str) -> None:
        if schema == SCHEMA and name in DIRECT:
            raise ConfigError(f"{SCHEMA}.{name} is written in PostgreSQL directly (analysts write it too); "
                              "a write through the engine replica would be lost or undo theirs")
        engine = self._engine.con
        exists = bool(replica.engine_columns(engine, schema, name))
        pg_schema = "public" if schema == "main" else schema
        if schema == SCHEMA and name in KEYS and exists:
            self._push_keyed(name)
        elif not exists:
            self._pg(f"DROP TABLE IF EXISTS {replica.qt(pg_schema, name)}")
        elif schema == SCHEMA and name in self._metadata_tables():
            replica.push_rows(engine, self.cursor, SCHEMA, name,
                              f"SELECT * FROM {SCHEMA}.{quote_ident(name)}", delete_all=True)
        else:  # a job's rows table (read back by the engine) or an output table (for people)
            replica.push_whole(engine, self.cursor, f"{quote_ident(schema)}.{quote_ident(name)}",
                               replica.engine_columns(engine, schema, name), pg_schema, name,
                               faithful=schema == SCHEMA)

    def _push_keyed(self, name: str) -> None:
        """Only the rows whose key has a changed row (either way) since Postgres last had the table."""
        engine = self._engine.con
        live, shadow = f"{SCHEMA}.{quote_ident(name)}", f"{SHADOW}.{quote_ident(name)}"
        key = ", ".join(quote_ident(k) for k in KEYS[name])
        engine.execute(
            f"CREATE OR REPLACE TEMP TABLE __wb_changed AS SELECT DISTINCT {key} FROM ("
            f"(SELECT * FROM {live} EXCEPT ALL SELECT * FROM {shadow}) UNION ALL "
            f"(SELECT * FROM {shadow} EXCEPT ALL SELECT * FROM {live}))")
        try:
            if not engine.execute("SELECT count(*) FROM temp.__wb_changed").fetchall()[0][0]:
                return
            changed = f"SELECT t.* FROM {live} AS t SEMI JOIN temp.__wb_changed USING ({key})"
            # Keys Postgres already has go over first, so that their old rows are deleted (a key whose
            # rows all went, too); only new keys (answers loaded, requests recorded) need no DELETE.
            known = engine.execute(
                f"SELECT count(*) FROM temp.__wb_changed SEMI JOIN {shadow} USING ({key})").fetchall()[0][0]
            keys_sql = f"SELECT * FROM temp.__wb_changed SEMI JOIN {shadow} USING ({key})" if known else None
            replica.push_rows(engine, self.cursor, SCHEMA, name, changed, keys_sql=keys_sql, key=KEYS[name])
            if known:
                engine.execute(f"DELETE FROM {shadow} WHERE ({key}) IN (SELECT ({key}) FROM temp.__wb_changed)")
            engine.execute(f"INSERT INTO {shadow} {changed}")
        finally:
            engine.execute("DROP TABLE IF EXISTS temp.__wb_changed")

    def _metadata_tables(self) -> set[str]:
        return {r[0] for r in self._engine.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = ? AND database_name = current_database() "
            "AND NOT internal", [SCHEMA]).fetchall() if not r[0].endswith("__rows") and r[0] != "migrations"}

    # -- the replica -------------------------------------------------------------------------
    def _changes(self) -> int | None:
        rows = self._pg(f"SELECT last_value FROM {CHANGES}")
        return rows[0][0] if rows else None

    def _refresh(self) -> None:
        """Rebuild the engine's copy of the metadata schema from Postgres."""
        engine = self._engine.con
        self._seen_changes = self._changes()
        metadata = self._metadata_tables()
        for (name,) in self._engine.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = ? AND database_name = current_database() "
                "AND table_name LIKE '%\\_\\_rows' ESCAPE '\\'", [SCHEMA]).fetchall():
            engine.execute(f"DROP TABLE {SCHEMA}.{quote_ident(name)}")
        engine.execute(f"CREATE SCHEMA IF NOT EXISTS {SHADOW}")
        pg_tables = [r[0] for r in self._pg(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
            (SCHEMA,))]
        for name in pg_tables:
            if name in metadata:
                self._pull_metadata(name)
            else:
                types = replica.recorded_types(self.cursor, SCHEMA, name)
                if types is not None:
                    replica.pull(engine, self.cursor, SCHEMA, name, create_types=types)
        for name in KEYS:  # a table Postgres does not have yet (a fresh warehouse): an empty shadow
            if name in metadata and name not in pg_tables:
                engine.execute(f"CREATE OR REPLACE TABLE {SHADOW}.{quote_ident(name)} AS "
                               f"SELECT * FROM {SCHEMA}.{quote_ident(name)} LIMIT 0")

    def _pull_metadata(self, name: str) -> None:
        engine = self._engine.con
        engine.execute(f"DELETE FROM {SCHEMA}.{quote_ident(name)}")
        replica.pull(engine, self.cursor, SCHEMA, name)
        if name in KEYS:
            engine.execute(f"CREATE OR REPLACE TABLE {SHADOW}.{quote_ident(name)} AS "
                           f"SELECT * FROM {SCHEMA}.{quote_ident(name)}")

    # -- tables analysts write too (DIRECT) --------------------------------------------------
    def direct_rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a statement in Postgres itself, not the engine (SQL both run, with `?` placeholders and
        no `?` inside literals, so that the DuckDB warehouse runs the same text); the rows it returns."""
        counter = iter(range(1, len(params) + 1))
        text = re.sub(r"\?", lambda _: f"${next(counter)}", sql)
        rows = self._pg(text, tuple(params) if params else None)
        names = [d[0] for d in self.cursor.description or ()]
        return [dict(zip(names, row)) for row in rows]

    @contextlib.contextmanager
    def direct_transaction(self, lock_timeout_s: float = 10.0) -> Iterator[None]:
        """One Postgres transaction for `direct_rows`. A row an analyst's open transaction holds is
        waited for at most lock_timeout_s (then the statement fails and the caller tries again later)."""
        with self._pg_transaction("BEGIN"):
            self._pg(f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
            yield

    @contextlib.contextmanager
    def _pg_transaction(self, begin: str) -> Iterator[None]:
        """A transaction on the warehouse's own session: committed when the block ends, rolled back if it raises."""
        self._pg(begin)
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                self._pg("ROLLBACK")
            raise
        self._pg("COMMIT")

    def mirror(self, *names: str) -> None:
        """Copy these DIRECT tables from Postgres into the engine (views and the ledger read them there)."""
        for name in names:
            self._pull_metadata(name)

    # -- the user's query --------------------------------------------------------------------
    @contextlib.contextmanager
    def as_role(self, role: str) -> Iterator[None]:
        """Read the user's query as `role` (the worker: a definition's definer) for the block: each
        read runs `SET LOCAL ROLE` in its read-only transaction, so Postgres checks that role's rights."""
        self._query_role = role
        try:
            yield
        finally:
            self._query_role = None

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """A read-only transaction for reading the user's query, as the `as_role` role if one is set."""
        with self._pg_transaction("BEGIN READ ONLY"):
            if self._query_role is not None:
                try:
                    self._pg(f"SET LOCAL ROLE {replica.q(self._query_role)}")
                except ConfigError as exc:
                    raise JobError(
                        f"cannot read the query as {self._query_role!r} ({exc}); the worker runs a definition's "
                        f"query with its definer's rights, so its login role must be a member of that role: "
                        f"GRANT {replica.q(self._query_role)} TO <the worker's role>") from None
            yield
            if self._query_role is not None and self._pg("SELECT current_user")[0][0] != self._query_role:
                raise JobError(f"the query changed the role it runs as (from {self._query_role!r}); a job defined "
                               "in SQL must read with its definer's rights only. Nothing was sent")

    def _source_select(self, query: str, limit: int | None = None) -> tuple[str, dict[str, str]]:
        """The query wrapped so that every column arrives through Arrow with its value intact, and
        the engine cast of each (numeric → DECIMAL or DOUBLE, money → DECIMAL, composites → JSON)."""
        try:
            self.cursor.execute(f"SELECT * FROM (\n{query}\n) AS q LIMIT 0")
            schema = self.cursor.fetch_arrow_table().schema
        except Exception as exc:  # noqa: BLE001
            detail = self._clean(str(exc)).strip().splitlines()[0].split("ERROR:", 1)[-1].strip()
            what = "does not parse" if "syntax error" in detail else "fails"
            raise JobError(f"the query {what} in PostgreSQL: {detail}") from None
        selects, casts = [], {}
        for field in schema:
            meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
            pg_type, column = meta.get("POSTGRESQL:type", ""), replica.q(field.name)
            base = pg_type.lstrip("_")
            if pg_type == "numeric":
                typmod = int(meta.get("POSTGRESQL:typmod", "-1"))
                precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
                if typmod >= 4 and precision <= 38:
                    selects.append(f"{column}::text")
                    casts[field.name] = f"DECIMAL({precision},{scale})"
                else:
                    selects.append(f"{column}::float8")
            elif pg_type == "money":
                selects.append(f"{column}::numeric::text")
                casts[field.name] = "DECIMAL(20,2)"
            elif base in _NATIVE:
                selects.append(column)
            elif self._pg("SELECT typtype FROM pg_type WHERE typname = $1 LIMIT 1", (pg_type,)) in ([("c",)], [("p",)]):
                selects.append(f"to_jsonb({column})::text")  # a composite (row) type: as JSON
                casts[field.name] = "JSON"
            else:  # enums, ranges, inet, … : their text
                selects.append(f"{column}::text")
        limit_sql = f" LIMIT {int(limit)}" if limit is not None else ""
        select = ", ".join(f"{s} AS {replica.q(f.name)}" for s, f in zip(selects, schema))
        return f"SELECT {select} FROM (\n{query}\n) AS q{limit_sql}", casts

    def _engine_select(self, schema: pa.Schema, casts: dict[str, str]) -> str:
        return ", ".join(
            (f"CAST({quote_ident(f.name)} AS {casts[f.name]})" if f.name in casts else quote_ident(f.name))
            + f" AS {quote_ident(f.name)}" for f in schema)

    def describe_query(self, query: str) -> dict[str, str]:
        with self._reading():
            select, casts = self._source_select(query, limit=0)
            self.cursor.execute(select)
            empty = self.cursor.fetch_arrow_table()
        self._engine.con.register("__wb_described", empty)
        try:
            cur = self._engine.con.execute(
                f"DESCRIBE SELECT {self._engine_select(empty.schema, casts)} FROM __wb_described")
            return {row[0]: row[1] for row in cur.fetchall()}
        finally:
            self._engine.con.unregister("__wb_described")

    def stream_query(self, query: str, batch_rows: int = 65536) -> pa.RecordBatchReader:
        select, _ = self._source_select(query)
        self.cursor.execute(select)
        return self.cursor.fetch_record_batch()

    def query_source(self, query: str) -> str:
        """Pull the query's rows into an engine temp table (streamed, read-only transaction) and name it."""
        with self._reading():
            select, casts = self._source_select(query)
            try:
                self.cursor.execute(select)
                reader = self.cursor.fetch_record_batch()
                self._engine.con.register("__wb_source_reader", reader)
                try:
                    self._engine.con.execute(
                        f"CREATE OR REPLACE TEMP TABLE __wb_source AS SELECT "
                        f"{self._engine_select(reader.schema, casts)} FROM __wb_source_reader")
                finally:
                    self._engine.con.unregister("__wb_source_reader")
            except duckdb.Error:
                raise
            except Exception as exc:  # noqa: BLE001 - the driver's error, password-free
                raise JobError(
                    f"the query fails in PostgreSQL: {self._clean(str(exc)).strip().splitlines()[0]}") from None
        return "temp.__wb_source"

    # -- tables ------------------------------------------------------------------------------
    def table_kind(self, qualified: str) -> TableKind | None:
        schema, name = split_table(qualified, default_schema="public")
        rows = self._pg(
            "SELECT CASE WHEN table_type = 'VIEW' THEN 'view' ELSE 'table' END FROM information_schema.tables "
            "WHERE lower(table_schema) = lower($1) AND lower(table_name) = lower($2)", (schema, name))
        return rows[0][0] if rows else None

    def write_table(self, qualified: str, data: pa.RecordBatchReader, mode: WriteMode,
                    key: Sequence[str] = ()) -> None:
        """Bulk-write Arrow data into Postgres (through the engine, for the type mapping)."""
        if mode != "replace":
            raise ConfigError(f"writing a PostgreSQL table in mode {mode!r} is not supported; use replace")
        schema, name = split_table(qualified, default_schema="public")
        engine = self._engine.con
        engine.register("__wb_incoming", data)
        try:
            engine.execute("CREATE OR REPLACE TEMP TABLE __wb_incoming_t AS SELECT * FROM __wb_incoming")
        finally:
            engine.unregister("__wb_incoming")
        types = {row[0]: row[1] for row in engine.execute("DESCRIBE temp.__wb_incoming_t").fetchall()}
        self._pg("BEGIN")
        try:
            replica.push_whole(engine, self.cursor, "temp.__wb_incoming_t", types, schema, name, faithful=False)
            self._pg("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                self._pg("ROLLBACK")
            raise
        finally:
            engine.execute("DROP TABLE IF EXISTS temp.__wb_incoming_t")

    # -- schema ------------------------------------------------------------------------------
    def _check_schema(self) -> None:
        if not self._pg("SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'migrations'",
                        (SCHEMA,)):
            raise ConfigError(f"{self.location} holds no warehouse_batch jobs yet; run a job first")
        done = {row[0] for row in self._pg(f"SELECT version FROM {SCHEMA}.migrations")}
        if any(version not in done for version, _, _ in migration_files()):
            raise ConfigError(
                f"{self.location} was written by an older warehouse_batch; run `warehouse-batch sync --db "
                f"{self.location}` once to upgrade its metadata tables"
            )

    def migrate(self) -> list[str]:
        """Apply the numbered migrations not yet recorded: `sql/migrations/postgres/<name>` where
        DuckDB's SQL does not run on Postgres, else the DuckDB file transpiled by sqlglot."""
        self._pg(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        self._pg(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.migrations (version INTEGER PRIMARY KEY, "
                 "name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)")
        self._pg(f"CREATE SEQUENCE IF NOT EXISTS {CHANGES}")
        done = {row[0] for row in self._pg(f"SELECT version FROM {SCHEMA}.migrations")}
        applied = []
        for version, name, text in migration_files():
            if version in done:
                continue
            self._pg("BEGIN")
            try:
                for statement in postgres_statements(name, text):
                    self._pg(statement)
                self._pg(f"INSERT INTO {SCHEMA}.migrations (version, name) VALUES ($1, $2)", (version, name))
                self._pg("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    self._pg("ROLLBACK")
                raise
            applied.append(name)
        return applied


def postgres_statements(name: str, text: str) -> list[str]:
    """The Postgres statements of a migration: its override file, else its DuckDB SQL transpiled."""
    override = postgres_migration(name)
    if override is not None:
        return _split_statements(override)
    return [sqlglot.transpile(s.query, read="duckdb", write="postgres")[0] for s in duckdb.extract_statements(text)]


def _split_statements(text: str) -> list[str]:
    """An override file's statements: each ends with `;` at the end of a line, except inside a
    `$$ … $$` function body (whose own statements end the same way)."""
    statements, current, in_body = [], [], False
    for line in text.splitlines():
        current.append(line)
        in_body ^= line.count("$$") % 2 == 1
        if not in_body and re.search(r";\s*$", line):
            statements.append("\n".join(current).strip().rstrip(";").strip())
            current = []
    statements.append("\n".join(current).strip())
    return [s for s in statements if _has_sql(s)]


def _has_sql(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())


class _Result:
    """A drained engine result (what callers of execute() read: fetchall, fetchone, description)."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection):
        self.description = cursor.description
        self._rows = cursor.fetchall() if cursor.description else []

    def fetchall(self) -> list[tuple]:
        rows, self._rows = self._rows, []
        return rows

    def fetchone(self) -> tuple | None:
        return self._rows.pop(0) if self._rows else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
