"""Moving tables between PostgreSQL and the DuckDB engine as Arrow: the engine's replica of the
metadata and the output tables written into Postgres.

PostgreSQL is the durable warehouse; the engine holds a write-through replica of its metadata
schema (see `warehouses/postgres.py` for why). `pull` rebuilds a table of the replica from
Postgres; `push` sends the rows of a table that changed in the engine back, in the caller's
Postgres transaction, with `adbc_ingest` into a temp table and one set-based statement — never
row by row. Types that Arrow or `adbc_ingest` do not carry faithfully (JSON, nested lists,
STRUCT, MAP, numeric) travel as text and are cast back on arrival.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import duckdb

from warehouse_batch.quoting import quote_ident, sql_literal

#: Engine types `adbc_ingest` writes as the same Postgres type (and that come back unchanged).
PRIMITIVE = {
    "BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "FLOAT", "DOUBLE", "VARCHAR", "DATE",
    "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "BLOB", "TIME",
}
#: Postgres types ADBC reads into Arrow as the engine expects; any other arrives as text.
PG_NATIVE = {
    "smallint", "integer", "bigint", "real", "double precision", "boolean", "text", "character varying",
    "character", "date", "timestamp without time zone", "timestamp with time zone", "bytea",
    "time without time zone", "uuid",
}
#: Where a Postgres table records the engine types of columns it stores as text (rows tables).
TYPES_COMMENT_KEY = "warehouse_batch_engine_types"
BATCH_ROWS = 65536


def q(name: str) -> str:
    return quote_ident(name, "postgres")


def qt(schema: str, name: str) -> str:
    return f"{q(schema)}.{q(name)}"


def engine_columns(engine: duckdb.DuckDBPyConnection, schema: str, name: str) -> dict[str, str]:
    rows = engine.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
        "AND table_catalog = current_database() ORDER BY ordinal_position", [schema, name]).fetchall()
    return dict(rows)


def pg_columns(cursor: Any, schema: str, name: str) -> dict[str, str]:
    """Column → Postgres type (format_type: `real[]`, `jsonb`, `numeric(5,2)`, …) of a table or view."""
    cursor.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a "
        "JOIN pg_class AS c ON c.oid = a.attrelid JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (schema, name))
    return dict(cursor.fetchall())


def pg_text_expr(column: str, pg_type: str) -> str:
    """How to select a Postgres column so that the engine can cast it back to its own type."""
    if pg_type.endswith("]"):
        return f"array_to_json({column})::text"  # ADBC flattens multi-dimensional arrays
    if pg_type in PG_NATIVE:
        return column
    return f"{column}::text"


def engine_cast(expr: str, engine_type: str, pg_type: str | None) -> str:
    """The engine expression that turns a pulled value back into `engine_type`."""
    if pg_type is not None and pg_type.endswith("]"):
        return f"CAST(CAST({expr} AS JSON) AS {engine_type})"
    return f"CAST({expr} AS {engine_type})"


def pull(engine: duckdb.DuckDBPyConnection, cursor: Any, schema: str, name: str, *,
         create_types: dict[str, str] | None = None, into: str | None = None) -> None:
    """Copy a Postgres table into the engine table `into` (default: the same schema and name),
    which exists with the engine's types, or is created from `create_types`."""
    pg_types = pg_columns(cursor, schema, name)
    target = into or f"{quote_ident(schema)}.{quote_ident(name)}"
    types = create_types if create_types is not None else engine_columns(
        engine, *([schema, name] if into is None else into.split(".", 1)))
    if create_types is not None:
        engine.execute(f"CREATE OR REPLACE TABLE {target} ("
                       + ", ".join(f"{quote_ident(c)} {t}" for c, t in types.items()) + ")")
    columns = [c for c in types if c in pg_types]
    if not columns:
        return
    cursor.execute(f"SELECT {', '.join(pg_text_expr(q(c), pg_types[c]) + ' AS ' + q(c) for c in columns)} "
                   f"FROM {qt(schema, name)}")
    reader = cursor.fetch_record_batch()
    engine.register("__wb_pulled", reader)
    try:
        engine.execute(
            f"INSERT INTO {target} ({', '.join(quote_ident(c) for c in columns)}) SELECT "
            + ", ".join(engine_cast(quote_ident(c), types[c], pg_types[c]) for c in columns)
            + " FROM __wb_pulled")
    finally:
        engine.unregister("__wb_pulled")


def outbound_expr(column: str, engine_type: str, *, faithful: bool) -> str:
    """How the engine hands a column to `adbc_ingest`. faithful (internal tables read back by the
    engine): anything not primitive goes as the engine's own text; else (tables for people and BI
    tools, metadata columns with a Postgres type): JSON and nested values go as JSON text, and
    lists of numbers as Postgres array literals."""
    upper = engine_type.upper()
    if upper in PRIMITIVE:
        return column
    if upper.startswith("ENUM"):
        return f"CAST({column} AS VARCHAR)"
    if faithful:
        return f"CAST({column} AS VARCHAR)"
    if upper == "JSON":
        return f"CAST({column} AS VARCHAR)"
    if upper.endswith("]") and _list_base(upper) in ("FLOAT", "DOUBLE", "INTEGER", "BIGINT", "SMALLINT", "TINYINT"):
        return f"replace(replace(CAST({column} AS VARCHAR), '[', '{{'), ']', '}}')"
    if upper.startswith("DECIMAL") or upper in ("HUGEINT", "UBIGINT", "UUID", "INTERVAL", "UHUGEINT"):
        return f"CAST({column} AS VARCHAR)"
    return f"CAST(to_json({column}) AS VARCHAR)"


def pg_type_of(engine_type: str) -> str:
    """The Postgres column type of an output table column of this engine type."""
    upper = engine_type.upper()
    simple = {"BOOLEAN": "boolean", "TINYINT": "smallint", "SMALLINT": "smallint", "INTEGER": "integer",
              "BIGINT": "bigint", "FLOAT": "real", "DOUBLE": "double precision", "VARCHAR": "text",
              "DATE": "date", "TIMESTAMP": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamptz",
              "BLOB": "bytea", "TIME": "time", "HUGEINT": "numeric", "UBIGINT": "numeric", "UUID": "uuid",
              "INTERVAL": "interval", "JSON": "jsonb", "USMALLINT": "integer", "UINTEGER": "bigint",
              "UTINYINT": "smallint"}
    if upper in simple:
        return simple[upper]
    if upper.startswith("ENUM"):
        return "text"
    if upper.startswith("DECIMAL"):
        return upper.replace("DECIMAL", "numeric")
    if upper.endswith("]"):
        base = _list_base(upper)
        dims = upper.count("[")
        if base in simple and base not in ("JSON", "BLOB", "INTERVAL") and "STRUCT" not in upper and "MAP" not in upper:
            return simple[base] + "[]" * dims
    return "jsonb"  # STRUCT, MAP, UNION, lists of those


def _list_base(upper: str) -> str:
    return upper.split("[", 1)[0].strip()


def pg_cast(expr: str, pg_type: str) -> str:
    if pg_type.endswith("]") and "char" not in pg_type and "text" not in pg_type:
        return f"CAST({expr} AS {pg_type})"
    if pg_type.endswith("]"):  # text arrays came as JSON text: one dimension
        return (f"CASE WHEN {expr} IS NOT NULL THEN "
                f"ARRAY(SELECT jsonb_array_elements_text(CAST({expr} AS jsonb)))::{pg_type} END")
    return f"CAST({expr} AS {pg_type})"


def ingest(cursor: Any, temp_name: str, relation: duckdb.DuckDBPyRelation) -> None:
    """Stream an engine relation into a new Postgres temp table (dropped at commit)."""
    cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{q(temp_name)}")
    reader = relation.to_arrow_reader(BATCH_ROWS)
    cursor.adbc_ingest(temp_name, reader, mode="create", temporary=True)


def push_rows(engine: duckdb.DuckDBPyConnection, cursor: Any, schema: str, name: str, select_sql: str, *,
              delete_all: bool = False, keys_sql: str | None = None, key: Sequence[str] = ()) -> None:
    """Send the engine rows `select_sql` (columns of the engine table schema.name) into the Postgres
    table of that name (which exists), after deleting its rows whose `key` is among `keys_sql`
    (engine SQL), or all of them (delete_all)."""
    engine_types = engine_columns(engine, schema, name)
    pg_types = pg_columns(cursor, schema, name)
    columns = [c for c in engine_types if c in pg_types]
    if keys_sql is not None:
        ingest(cursor, "__wb_keys", engine.sql(keys_sql))
        cursor.execute(f"DELETE FROM {qt(schema, name)} AS t USING pg_temp.__wb_keys AS k WHERE "
                       + " AND ".join(f"t.{q(k)} = k.{q(k)}" for k in key))
    elif delete_all:
        cursor.execute(f"DELETE FROM {qt(schema, name)}")
    ingest(cursor, "__wb_rows", engine.sql(
        "SELECT " + ", ".join(outbound_expr(quote_ident(c), engine_types[c], faithful=False) + " AS "
                              + quote_ident(c) for c in columns) + f" FROM ({select_sql}) AS s"))
    cursor.execute(
        f"INSERT INTO {qt(schema, name)} ({', '.join(q(c) for c in columns)}) SELECT "
        + ", ".join(pg_cast(q(c), pg_types[c]) for c in columns) + " FROM pg_temp.__wb_rows")
    cursor.execute("DROP TABLE IF EXISTS pg_temp.__wb_rows")
    cursor.execute("DROP TABLE IF EXISTS pg_temp.__wb_keys")


def push_whole(engine: duckdb.DuckDBPyConnection, cursor: Any, source: str, engine_types: dict[str, str],
               schema: str, name: str, *, faithful: bool) -> None:
    """Replace the Postgres table schema.name by the engine table `source` (of `engine_types`).
    faithful: an internal table the engine reads back (its engine types are recorded in the
    table's comment); else an output table typed for people (BIGINT, DOUBLE PRECISION, text[],
    real[], JSONB …).

    One pass over the rows: `adbc_ingest` creates a staging table in the target schema with the
    Arrow types (bigint, text, double precision, text[], real[] … arrive as such), only columns
    that came in another type (JSON text → jsonb, numeric(p,s), nested values) are converted by one
    ALTER, and the staging table is renamed into place in the caller's transaction."""
    staging = f"__wb_new_{name}"[:63]
    relation = engine.sql(
        "SELECT " + ", ".join(_direct_expr(quote_ident(c), t, faithful=faithful) + " AS " + quote_ident(c)
                              for c, t in engine_types.items()) + f" FROM {source}")
    cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {q(schema)}")
    cursor.execute(f"DROP TABLE IF EXISTS {qt(schema, staging)}")
    cursor.adbc_ingest(staging, relation.to_arrow_reader(BATCH_ROWS), mode="create", db_schema_name=schema)
    if not faithful:
        arrived = dict(_query(cursor, "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a "
                                      "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
                              (qt(schema, staging),)))
        changes = [f"ALTER COLUMN {q(c)} TYPE {pg_type_of(t)} USING {pg_cast(q(c), pg_type_of(t))}"
                   for c, t in engine_types.items() if not _same_type(arrived.get(c, ""), pg_type_of(t))]
        if changes:
            cursor.execute(f"ALTER TABLE {qt(schema, staging)} " + ", ".join(changes))
    cursor.execute(f"DROP TABLE IF EXISTS {qt(schema, name)}")
    cursor.execute(f"ALTER TABLE {qt(schema, staging)} RENAME TO {q(name)}")
    if faithful:
        cursor.execute(f"COMMENT ON TABLE {qt(schema, name)} IS "
                       + sql_literal(json.dumps({TYPES_COMMENT_KEY: engine_types}), "postgres"))


#: One-dimensional lists ADBC ingests as Postgres arrays of the right type.
_NATIVE_LISTS = {"BOOLEAN[]", "SMALLINT[]", "INTEGER[]", "BIGINT[]", "FLOAT[]", "DOUBLE[]", "VARCHAR[]"}
#: Postgres's own names (format_type) of the short names pg_type_of uses.
_LONG_NAMES = {"timestamptz": "timestamp with time zone", "timestamp": "timestamp without time zone",
               "time": "time without time zone"}


def _direct_expr(column: str, engine_type: str, *, faithful: bool) -> str:
    """How a column goes into `adbc_ingest` when the table is created from the Arrow types."""
    if not faithful and engine_type.upper() in _NATIVE_LISTS:
        return column
    return outbound_expr(column, engine_type, faithful=faithful)


def _same_type(arrived: str, wanted: str) -> bool:
    base, dims = wanted.removesuffix("[]" * wanted.count("[]")), wanted.count("[]")
    return arrived == _LONG_NAMES.get(base, base) + "[]" * dims


def _query(cursor: Any, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    cursor.execute(sql, params)
    return cursor.fetchall()


def recorded_types(cursor: Any, schema: str, name: str) -> dict[str, str] | None:
    """The engine types a faithful copy recorded in its comment (None: not one of ours)."""
    cursor.execute(f"SELECT obj_description(to_regclass($1), 'pg_class')", (qt(schema, name),))
    row = cursor.fetchone()
    try:
        return json.loads(row[0])[TYPES_COMMENT_KEY] if row and row[0] else None
    except (ValueError, KeyError, TypeError):
        return None

