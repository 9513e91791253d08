"""Query → validated rows with request bodies and hashes, staged in a DuckDB temp table.

Nothing here writes to the warehouse: the stage is a temp table that vanishes with the connection,
so a query or row error leaves no state behind. `runner.py` persists a stage once it is valid.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from warehouse_batch import bodies, params
from warehouse_batch.errors import JobError, ValidationError
from warehouse_batch.jobs import Job
from warehouse_batch.store import Store, quote_ident, sql_literal

STAGE = "wb_stage"
#: Columns the output table adds; a query column of the same name would be shadowed.
OUTPUT_COLUMNS = (
    "content",
    "status",
    "error_code",
    "error_message",
    "finish_reason",
    "refusal",
    "input_tokens",
    "output_tokens",
    "request_hash",
    "batch_id",
    "completed_at",
)
_SAMPLE = 10


@dataclass(frozen=True)
class Stage:
    """A compiled job: the temp table `wb_stage` holds the query's rows plus `__wb_*` columns."""

    job: Job
    columns: dict[str, str]  # the query's own columns → DuckDB type
    input_column: str
    row_count: int
    request_count: int
    est_input_tokens: int


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


def describe(store: Store, job: Job) -> dict[str, str]:
    """The query's output columns and types, without running it."""
    try:
        cur = store.execute(f"DESCRIBE SELECT * FROM ({job.query}) AS q")
    except duckdb.Error as exc:
        raise JobError(f"job {job.name}: the query fails in DuckDB: {_first_line(exc)}") from None
    return {row[0]: row[1] for row in cur.fetchall()}


def compile_job(store: Store, job: Job, *, nonce: str | None = None) -> Stage:
    """Run the query once into the temp stage, build bodies and hashes in SQL, and validate every row.

    Raises JobError / ValidationError naming the columns or rows at fault; the stage is dropped then.
    """
    check_query(job)
    columns = describe(store, job)
    _check_columns(job, columns)
    spec = bodies.build(job, columns)
    try:
        store.execute(f"DROP TABLE IF EXISTS temp.{STAGE}")
        store.execute(
            f"""
            CREATE TEMP TABLE {STAGE} AS
            SELECT *, sha256(__wb_body{'' if nonce is None else ' || ' + sql_literal(chr(10) + nonce)}) AS __wb_hash,
                   CAST(ceil(strlen(__wb_body) / 4) AS BIGINT) AS __wb_tokens,
                   strlen(__wb_body) + {spec.line_overhead} AS __wb_line_bytes
            FROM (
                SELECT q.*, CAST(q.custom_id AS VARCHAR) AS __wb_cid,
                       {spec.body} AS __wb_body, {spec.model} AS __wb_model
                FROM ({job.query}) AS q
            )
            """
        )
    except duckdb.Error as exc:
        store.execute(f"DROP TABLE IF EXISTS temp.{STAGE}")
        raise JobError(f"job {job.name}: building request bodies failed: {_first_line(exc)}") from None
    problems = _row_problems(store, job, columns, spec.input_column)
    if problems:
        store.execute(f"DROP TABLE IF EXISTS temp.{STAGE}")
        raise ValidationError(problems)
    row_count, request_count, tokens = store.one(
        f"SELECT count(*), count(DISTINCT __wb_hash), coalesce(sum(__wb_tokens), 0) FROM {STAGE}"
    )
    return Stage(job, columns, spec.input_column, row_count, request_count, int(tokens))


def drop_stage(store: Store) -> None:
    store.execute(f"DROP TABLE IF EXISTS temp.{STAGE}")


def _check_columns(job: Job, columns: dict[str, str]) -> None:
    if "custom_id" not in columns:
        raise JobError(
            f"job {job.name}: the query has no custom_id column; select your key AS custom_id "
            f"(columns found: {', '.join(columns)})"
        )
    clashes = [c for c in columns if c in OUTPUT_COLUMNS or c.startswith("__wb_")]
    if clashes:
        raise JobError(
            f"job {job.name}: query column(s) {', '.join(clashes)} would clash with output columns of the same "
            "name; rename them (e.g. SELECT status AS source_status)"
        )


def _row_problems(store: Store, job: Job, columns: dict[str, str], input_column: str) -> list[str]:
    """Every reason some rows cannot be sent, each naming up to 10 custom_ids and the count."""
    problems = []
    null_ids = store.scalar(f"SELECT count(*) FROM {STAGE} WHERE __wb_cid IS NULL")
    if null_ids:
        problems.append(f"{null_ids} row(s) have a NULL custom_id; every row needs a unique, non-NULL custom_id")
    dupes = store.execute(
        f"SELECT __wb_cid, count(*) FROM {STAGE} WHERE __wb_cid IS NOT NULL "
        "GROUP BY __wb_cid HAVING count(*) > 1 ORDER BY __wb_cid"
    ).fetchall()
    if dupes:
        shown = ", ".join(f"{_show(cid)} (×{n})" for cid, n in dupes[:_SAMPLE])
        more = f" and {len(dupes) - _SAMPLE} more" if len(dupes) > _SAMPLE else ""
        problems.append(f"{len(dupes)} custom_id value(s) appear more than once: {shown}{more}")

    column = f"{STAGE}.{quote_ident(input_column)}"
    if input_column in ("prompt", "input") and columns[input_column].upper() == "VARCHAR":
        problems += offenders(store, f"{column} IS NULL OR trim({column}) = ''", f"have a NULL or empty {input_column}")
    elif input_column in ("prompt", "input"):
        problems += offenders(store, f"{column} IS NULL", f"have a NULL {input_column}")
    elif input_column == "messages" and columns["messages"].upper() in ("VARCHAR", "JSON"):
        problems += offenders(
            store,
            f"{column} IS NULL OR NOT json_valid({column}) OR json_type({column}) <> 'ARRAY' "
            f"OR json_array_length({column}) = 0",
            "have messages that are not a non-empty JSON array of chat messages",
        )
    elif input_column == "messages":
        problems += offenders(store, f"{column} IS NULL OR len({column}) = 0", "have NULL or empty messages")
    elif input_column == "body":
        if columns["body"].upper() in ("VARCHAR", "JSON"):
            problems += offenders(
                store,
                f"{column} IS NULL OR NOT json_valid({column}) OR json_type({column}) <> 'OBJECT'",
                "have a body that is not a JSON object",
            )
        problems += offenders(store, "__wb_body IS NOT NULL AND (json_valid(__wb_body) AND json_extract(__wb_body, '$.stream') = 'true')",
                               "ask for streaming, which the Batch API does not support (remove \"stream\": true)")

    if input_column != "body":  # per-row override values (temperature, max_tokens, ...) of the wrong type or range
        for where, what in params.row_checks(job.endpoint, columns, bodies.OVERRIDE_COLUMNS):
            problems += offenders(store, where, what)

    if not problems:
        missing_model = "set 'model:' in the job" if input_column != "body" else "put \"model\" in each body"
        problems += offenders(store, "__wb_model IS NULL OR trim(__wb_model) = ''", f"have no model ({missing_model}, or add a model column)")
        problems += offenders(
            store,
            f"__wb_line_bytes > {int(job.max_bytes_per_shard)}",
            f"are larger than the shard limit of {job.max_bytes_per_shard:,} bytes",
        )
        problems += offenders(store, "__wb_body IS NULL", "could not be turned into a request body (a NULL in a required column)")
    return problems


def offenders(store: Store, where: str, what: str) -> list[str]:
    count, sample = store.one(
        f"SELECT count(*), list(__wb_cid ORDER BY __wb_cid) FILTER (WHERE __wb_cid IS NOT NULL)[1:{_SAMPLE}] "
        f"FROM {STAGE} WHERE {where}"
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


__all__ = ["Stage", "check_query", "compile_job", "describe", "drop_stage", "sql_literal"]
