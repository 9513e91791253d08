"""Test plumbing for PostgreSQL warehouses: an in-memory DuckDB copy of every table and view of a
Postgres database (so a test's checks keep their DuckDB SQL), and writing back the tables a test
created or changed through it (its source tables).

Values are read with ADBC and typed from Postgres's own column types; what the tests see is what a
user's psql session would read, in DuckDB's terms (jsonb → JSON, real[] → FLOAT[], numeric →
DECIMAL/DOUBLE)."""

from __future__ import annotations

import re
from typing import Any

import duckdb

from warehouse_batch.quoting import quote_ident

_SIMPLE = {
    "smallint": "SMALLINT", "integer": "INTEGER", "bigint": "BIGINT", "real": "FLOAT", "double precision": "DOUBLE",
    "boolean": "BOOLEAN", "text": "VARCHAR", "character varying": "VARCHAR", "json": "JSON", "jsonb": "JSON",
    "date": "DATE", "timestamp without time zone": "TIMESTAMP", "timestamp with time zone": "TIMESTAMPTZ",
    "bytea": "BLOB", "uuid": "UUID", "numeric": "DOUBLE", "interval": "INTERVAL",
}
_VIEW = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?VIEW\b", re.IGNORECASE)
_WRITE = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|CREATE\s+(?:OR\s+REPLACE\s+)?TABLE(?:\s+IF\s+NOT\s+EXISTS)?"
                    r"|ALTER\s+TABLE|DROP\s+TABLE(?:\s+IF\s+EXISTS)?)\s+([\w.\"]+)", re.IGNORECASE)


def _duck_type(pg_type: str, dims: int) -> str:
    base = pg_type.removesuffix("[]").split("(")[0].strip()
    if pg_type.startswith("numeric("):
        return pg_type.replace("numeric", "DECIMAL")
    if base.startswith("character"):
        base = "text"
    duck = _SIMPLE.get(base, "VARCHAR")
    return duck + "[]" * dims if pg_type.endswith("[]") else duck


def copy_of(uri: str) -> duckdb.DuckDBPyConnection:
    import adbc_driver_postgresql.dbapi as dbapi

    con = duckdb.connect()
    with dbapi.connect(uri, autocommit=True) as pg, pg.cursor() as cur:
        cur.execute(
            "SELECT c.relnamespace::regnamespace::text, c.relname FROM pg_class AS c "
            "WHERE c.relkind IN ('r', 'v', 'p') AND c.relnamespace::regnamespace::text NOT IN "
            "('pg_catalog', 'information_schema') AND c.relnamespace::regnamespace::text NOT LIKE 'pg_%' "
            "ORDER BY c.relkind")
        for schema, name in cur.fetchall():
            _copy_table(con, cur, schema, name)
    return con


def _copy_table(con: duckdb.DuckDBPyConnection, cur: Any, schema: str, name: str) -> None:
    cur.execute("SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a "
                "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                (f'"{schema}"."{name}"',))
    columns = cur.fetchall()
    pg_name = f'"{schema}"."{name}"'
    dims = {}
    for column, pg_type in columns:
        if pg_type.endswith("[]"):
            cur.execute(f'SELECT coalesce(max(array_ndims("{column}")), 1) FROM {pg_name}')
            dims[column] = cur.fetchone()[0]
    duck_schema = "main" if schema == "public" else schema
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(duck_schema)}")
    types = {c: _duck_type(t, dims.get(c, 1)) for c, t in columns}
    target = f"{quote_ident(duck_schema)}.{quote_ident(name)}"
    con.execute(f"CREATE TABLE {target} (" + ", ".join(f"{quote_ident(c)} {t}" for c, t in types.items()) + ")")
    selects = []
    for column, pg_type in columns:
        if pg_type.endswith("[]"):
            selects.append(f'array_to_json("{column}")::text AS "{column}"')
        elif pg_type.split("(")[0] in ("numeric", "json", "jsonb", "interval", "uuid") or pg_type not in _SIMPLE and \
                not pg_type.startswith("character"):
            selects.append(f'"{column}"::text AS "{column}"')
        else:
            selects.append(f'"{column}"')
    cur.execute(f"SELECT {', '.join(selects)} FROM {pg_name}")
    con.register("__pulled", cur.fetch_arrow_table())
    casts = [f"CAST(CAST({quote_ident(c)} AS JSON) AS {types[c]})" if t.endswith("[]") else
             f"CAST({quote_ident(c)} AS {types[c]})" for c, t in columns]
    con.execute(f"INSERT INTO {target} SELECT {', '.join(casts)} FROM __pulled")
    con.unregister("__pulled")


class Tracking:
    """A DuckDB connection that remembers which tables its statements wrote."""

    def __init__(self, con: duckdb.DuckDBPyConnection, written: set[str]):
        self._con, self._written = con, written

    def _note(self, sql: str) -> None:
        if _VIEW.search(sql):  # a view is made in Postgres itself, from its DuckDB text transpiled
            self._written.add("view:" + sql)
            return
        for match in _WRITE.finditer(sql):
            self._written.add(match.group(1))

    def execute(self, sql: str, *args: Any) -> Any:
        self._note(sql)
        return self._con.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        self._note(sql)
        return self._con.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def write_back(con: duckdb.DuckDBPyConnection, uri: str, written: set[str]) -> None:
    """Replace each written table in Postgres by its copy (through the product's bulk write path)."""
    import sqlglot

    views = [w.removeprefix("view:") for w in written if w.startswith("view:")]
    written = {w for w in written if not w.startswith("view:")}

    dropped = [t for t in written if not con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE lower(schema_name || '.' || table_name) = lower(?) "
        "OR (schema_name = 'main' AND lower(table_name) = lower(?))",
        [t.replace('"', ""), t.replace('"', "")]).fetchall()[0][0]]
    tables = [t for t in written if con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE lower(schema_name || '.' || table_name) = lower(?) "
        "OR (schema_name = 'main' AND lower(table_name) = lower(?))",
        [t.replace('"', ""), t.replace('"', "")]).fetchall()[0][0]]
    if not tables and not views and not dropped:
        return
    import adbc_driver_postgresql.dbapi as dbapi

    from warehouse_batch.quoting import split_table
    from warehouse_batch.warehouses import replica

    with dbapi.connect(uri, autocommit=True) as pg, pg.cursor() as cur:
        for table in dropped:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        for table in tables:
            schema, name = split_table(table.replace('"', ""), default_schema="public")
            if schema.lower() == "warehouse_batch":
                raise AssertionError("tests write the metadata of a PostgreSQL warehouse through the product only")
            source = f"{quote_ident('main' if schema == 'public' else schema)}.{quote_ident(name)}"
            types = {r[0]: r[1] for r in con.execute(f"DESCRIBE {source}").fetchall()}
            replica.push_whole(con, cur, source, types, schema, name, faithful=False)
        for view in views:
            cur.execute(sqlglot.transpile(view, read="duckdb", write="postgres")[0])
