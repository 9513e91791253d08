"""Query → validated rows with request hashes, staged as the job's next rows table.

The query runs once, into `warehouse_batch."<job>__rows_next"`: its own columns plus the request
hash, model, line size and token estimates (`__wb_*`), all computed in SQL. The request body is
built only to be hashed and measured; it is not stored (the shard writer builds it again for the
requests it sends). A query or row error drops the table, leaving no state behind; `runner.py`
renames a valid stage over the job's rows table in the transaction that records the run.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from warehouse_batch import bodies, endpoints, params
from warehouse_batch.errors import JobError, ValidationError
from warehouse_batch.jobs import Job
from warehouse_batch.names import is_reserved_column, stage_table
from warehouse_batch.quoting import quote_ident, sql_literal
from warehouse_batch.warehouses.base import Warehouse

_SAMPLE = 10


@dataclass(frozen=True)
class Stage:
    """A compiled job: `table` holds the query's rows plus `__wb_*` columns."""

    job: Job
    table: str  # quoted, schema-qualified
    columns: dict[str, str]  # the query's own columns → DuckDB type
    input_column: str
    row_count: int
    request_count: int


def check_query(job: Job) -> None:
    """The query must be exactly one read-only statement (SELECT, WITH … SELECT, VALUES, set operations)."""
    try:
        statements = [s for s in sqlglot.parse(job.query, read="duckdb") if s is not None]
    except ParseError as exc:
        if _duckdb_accepts_select(job.query):
            return  # valid DuckDB syntax that sqlglot does not know yet
        err = exc.errors[0] if exc.errors else {}
        where = f" at line {err.get('line')}, column {err.get('col')}" if err.get("line") else ""
        raise JobError(
            f"job {job.name}: the query does not parse{where}: {err.get('description', exc)}"
        ) from None
    if len(statements) != 1:
        raise JobError(f"job {job.name}: the query must be one statement, found {len(statements)}")
    if isinstance(statements[0], exp.Query):
        return
    try:
        kind = duckdb.extract_statements(job.query)[0].type.name
    except duckdb.Error as exc:  # sqlglot read it as an expression, DuckDB says why it is no statement
        raise JobError(f"job {job.name}: the query does not parse: {_first_line(exc)}") from None
    raise JobError(
        f"job {job.name}: the query must be a SELECT (or WITH … SELECT), not {kind}; "
        "warehouse_batch only reads your tables"
    )


def _duckdb_accepts_select(query: str) -> bool:
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error:
        return False
    return len(statements) == 1 and statements[0].type == duckdb.StatementType.SELECT


def describe(warehouse: Warehouse, job: Job) -> dict[str, str]:
    """The query's output columns and types, without running it."""
    try:
        return warehouse.describe_query(job.query)
    except duckdb.Error as exc:
        raise JobError(f"job {job.name}: the query fails in DuckDB: {_first_line(exc)}") from None


def compile_job(warehouse: Warehouse, job: Job, *, nonce: str | None = None) -> Stage:
    """Run the query once into the stage table, hash the bodies in SQL, and validate every row.

    Raises JobError / ValidationError naming the columns or rows at fault; the stage is dropped then.
    """
    check_query(job)
    columns = describe(warehouse, job)
    _check_columns(job, columns)
    spec = bodies.build(job, columns)
    table = stage_table(job.name)
    salt = "" if nonce is None else " || " + sql_literal(chr(10) + nonce)
    try:
        warehouse.execute(f"DROP TABLE IF EXISTS {table}")
        warehouse.execute(
            f"""
            CREATE TABLE {table} AS
            SELECT * EXCLUDE (__wb_body),
                   sha256(__wb_body{salt}) AS __wb_request_hash,
                   CAST(ceil(strlen(__wb_body) / 4) AS BIGINT) AS __wb_tokens,
                   strlen(__wb_body) + {spec.line_overhead} AS __wb_line_bytes
            FROM (
                SELECT q.*, CAST(q.custom_id AS VARCHAR) AS __wb_cid, {spec.body} AS __wb_body,
                       {spec.model} AS __wb_model, {spec.max_output} AS __wb_max_output
                FROM ({job.query}) AS q
            )
            """
        )
    except duckdb.Error as exc:
        drop_stage(warehouse, job)
        raise JobError(f"job {job.name}: building request bodies failed: {_first_line(exc)}") from None
    problems = _row_problems(warehouse, job, table, columns, spec.input_column)
    if problems:
        drop_stage(warehouse, job)
        raise ValidationError(problems)
    row_count, request_count = warehouse.one(f"SELECT count(*), count(DISTINCT __wb_request_hash) FROM {table}")
    return Stage(job, table, columns, spec.input_column, row_count, request_count)


def drop_stage(warehouse: Warehouse, job: Job) -> None:
    warehouse.execute(f"DROP TABLE IF EXISTS {stage_table(job.name)}")


def _check_columns(job: Job, columns: dict[str, str]) -> None:
    if "custom_id" not in columns:
        raise JobError(
            f"job {job.name}: the query has no custom_id column; select your key AS custom_id "
            f"(columns found: {', '.join(columns)})"
        )
    clashes = [c for c in columns if is_reserved_column(c)]
    if clashes:
        raise JobError(
            f"job {job.name}: query column(s) {', '.join(clashes)} would clash with output columns of the same "
            "name; rename them (e.g. SELECT status AS source_status)"
        )


def _row_problems(warehouse: Warehouse, job: Job, table: str, columns: dict[str, str], input_column: str) -> list[str]:
    """Every reason some rows cannot be sent, each naming up to 10 custom_ids and the count.

    All rules are counted in one scan; examples are fetched only for the rules that fail."""
    column = quote_ident(input_column)
    rules: list[tuple[str, str]] = []  # (WHERE condition, what is wrong with those rows)
    if input_column in ("prompt", "input") and columns[input_column].upper() == "VARCHAR":
        rules.append((f"{column} IS NULL OR trim({column}) = ''", f"have a NULL or empty {input_column}"))
    elif input_column in ("prompt", "input"):
        rules.append((f"{column} IS NULL", f"have a NULL {input_column}"))
    elif input_column == "messages" and columns["messages"].upper() in ("VARCHAR", "JSON"):
        rules.append((
            f"{column} IS NULL OR NOT json_valid({column}) OR json_type({column}) <> 'ARRAY' "
            f"OR json_array_length({column}) = 0",
            "have messages that are not a non-empty JSON array of chat messages",
        ))
    elif input_column == "messages":
        rules.append((f"{column} IS NULL OR len({column}) = 0", "have NULL or empty messages"))
    elif input_column == "body":
        if columns["body"].upper() in ("VARCHAR", "JSON"):
            rules.append((
                f"{column} IS NULL OR NOT json_valid({column}) OR json_type({column}) <> 'OBJECT'",
                "have a body that is not a JSON object",
            ))
            rules.append((
                f"{column} IS NOT NULL AND json_valid({column}) AND json_extract(CAST({column} AS VARCHAR), '$.stream') = 'true'",
                "ask for streaming, which the Batch API does not support (remove \"stream\": true)",
            ))
    if input_column != "body":  # per-row override values (temperature, max_tokens, ...) of the wrong type or range
        rules += params.row_checks(endpoints.get(job.endpoint), columns, bodies.OVERRIDE_COLUMNS)
    # Only meaningful once the inputs themselves are sound: reported when the rules above all pass.
    missing_model = "set 'model:' in the job" if input_column != "body" else "put \"model\" in each body"
    later = [
        ("__wb_model IS NULL OR trim(__wb_model) = ''", f"have no model ({missing_model}, or add a model column)"),
        (f"__wb_line_bytes > {int(job.max_bytes_per_shard)}",
         f"are larger than the shard limit of {job.max_bytes_per_shard:,} bytes"),
        ("__wb_request_hash IS NULL", "could not be turned into a request body (a NULL in a required column)"),
    ]
    everything = rules + later
    counts = warehouse.one(
        "SELECT count_if(__wb_cid IS NULL), "
        + ", ".join(f"count_if(coalesce(({where}), false))" for where, _ in everything)
        + f" FROM {table}"
    )
    problems = []
    if counts[0]:
        problems.append(f"{counts[0]} row(s) have a NULL custom_id; every row needs a unique, non-NULL custom_id")
    dupes = warehouse.execute(
        f"SELECT __wb_cid, count(*) FROM {table} WHERE __wb_cid IS NOT NULL "
        "GROUP BY __wb_cid HAVING count(*) > 1 ORDER BY __wb_cid"
    ).fetchall()
    if dupes:
        shown = ", ".join(f"{_show(cid)} (×{n})" for cid, n in dupes[:_SAMPLE])
        more = f" and {len(dupes) - _SAMPLE} more" if len(dupes) > _SAMPLE else ""
        problems.append(f"{len(dupes)} custom_id value(s) appear more than once: {shown}{more}")
    failing = [rule for rule, count in zip(everything, counts[1:]) if count]
    if any(rule in rules for rule in failing):
        failing = [rule for rule in failing if rule in rules]
    elif problems:
        failing = []
    for where, what in failing:
        problems += offenders(warehouse, table, where, what)
    return problems


def offenders(warehouse: Warehouse, table: str, where: str, what: str) -> list[str]:
    """'N row(s) <what>: custom_id a, b, … and M more' for the rows of `table` matching `where`."""
    count, sample = warehouse.one(
        f"SELECT count(*), list(__wb_cid ORDER BY __wb_cid) FILTER (WHERE __wb_cid IS NOT NULL)[1:{_SAMPLE}] "
        f"FROM {table} WHERE coalesce(({where}), false)"
    )
    if not count:
        return []
    shown = ", ".join(_show(c) for c in (sample or []))
    more = f" and {count - len(sample or [])} more" if count > len(sample or []) else ""
    return [f"{count} row(s) {what}: custom_id {shown}{more}"]


def _show(custom_id: str) -> str:
    return repr(custom_id if len(custom_id) <= 40 else custom_id[:37] + "...")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


__all__ = ["Stage", "check_query", "compile_job", "describe", "drop_stage", "offenders"]
