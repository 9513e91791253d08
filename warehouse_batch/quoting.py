"""Quoting of identifiers and literals for the SQL warehouse_batch generates (DuckDB dialect).

The one place that knows how a name or a value becomes SQL text; sqlglot knows each dialect's rules.
"""

from __future__ import annotations

from sqlglot import exp


def quote_ident(name: str, dialect: str = "duckdb") -> str:
    """Quote one identifier."""
    return exp.to_identifier(name, quoted=True).sql(dialect=dialect)


def quote_table(name: str, dialect: str = "duckdb") -> str:
    """Quote a possibly schema-qualified table name (`schema.table`)."""
    return exp.to_table(name, dialect=dialect).sql(dialect=dialect, identify=True)


def split_table(name: str, default_schema: str = "main") -> tuple[str, str]:
    """(schema, table) of a possibly qualified name, unquoted."""
    table = exp.to_table(name, dialect="duckdb")
    return (table.db or default_schema, table.name)


def sql_literal(value: str, dialect: str = "duckdb") -> str:
    """A SQL string literal."""
    return exp.Literal.string(value).sql(dialect=dialect)


__all__ = ["quote_ident", "quote_table", "split_table", "sql_literal"]
