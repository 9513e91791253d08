"""Query → validated rows with request hashes, staged as the job's next rows table.

The query runs once, into `warehouse_batch."<job>__rows_next"`: its own columns plus the request
hash, model, line size and token estimates (`__wb_*`), all computed in SQL (`__wb_tokens` starts
as bytes / 4 and is made exact by `estimates.estimate_stage`). The request body is
built only to be hashed and measured; it is not stored (the shard writer builds it again for the
requests it sends). A query or row error drops the table, leaving no state behind; `runner.py`
renames a valid stage over the job's rows table in the transaction that records the run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from warehouse_batch import answers, bodies, endpoints, params
from warehouse_batch.errors import JobError, ValidationError
from warehouse_batch.jobs import Job
from warehouse_batch.names import SCHEMA, is_reserved_column, rows_table, rows_table_name, stage_table
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
    #: What the rows were compiled from (`rows_fingerprint`); set when the stage is the last run's
    #: rows table, reused because nothing it is built from changed.
    fingerprint: str | None = None
    #: `rows_fingerprint` of a freshly compiled stage, taken in the same scan that validates it.
    digest: str | None = None

    @property
    def reused(self) -> bool:
        return self.fingerprint is not None


def check_query(job: Job, dialect: str = "duckdb") -> None:
    """The query must be exactly one read-only statement (SELECT, WITH … SELECT, VALUES, set
    operations), checked in the warehouse's own SQL dialect."""
    try:
        statements = [s for s in sqlglot.parse(job.query, read=dialect) if s is not None]
    except ParseError as exc:
        if dialect != "duckdb" or _duckdb_accepts_select(job.query):
            return  # syntax sqlglot does not know yet: the warehouse itself judges it when describing
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
    except JobError as exc:  # a warehouse that is not DuckDB says which and why
        raise JobError(f"job {job.name}: {exc}") from None


def compile_job(warehouse: Warehouse, job: Job, *, nonce: str | None = None) -> Stage:
    """Run the query once into the stage table, hash the bodies in SQL, and validate every row.

    Raises JobError / ValidationError naming the columns or rows at fault; the stage is dropped then.
    """
    check_query(job, warehouse.dialect)
    columns = describe(warehouse, job)
    _check_columns(job, columns)
    spec = bodies.build(job, columns)
    table = stage_table(job.name)
    try:
        warehouse.execute(f"DROP TABLE IF EXISTS {table}")
        source = warehouse.query_source(job.query)
        warehouse.execute(f"CREATE TABLE {table} AS {_stage_sql(job, spec, nonce, source)}")
    except duckdb.Error as exc:
        drop_stage(warehouse, job)
        raise JobError(f"job {job.name}: building request bodies failed: {_first_line(exc)}") from None
    except JobError as exc:
        drop_stage(warehouse, job)
        raise JobError(f"job {job.name}: {exc}") from None
    problems, scan = _row_problems(warehouse, job, table, columns, spec.input_column)
    if problems:
        drop_stage(warehouse, job)
        raise ValidationError(problems)
    requests = int(warehouse.scalar(f"SELECT count(DISTINCT __wb_request_hash) FROM {table}"))
    return Stage(job, table, columns, spec.input_column, scan.rows, requests,
                 digest=_digest(job, columns, nonce, scan.fingerprint))


def _stage_sql(job: Job, spec: bodies.BodySQL, nonce: str | None, source: str | None = None) -> str:
    """The SELECT that compiles the job's query into its rows: query columns plus `__wb_*`.

    source: what the engine selects the query's rows from (`Warehouse.query_source`); by default
    the query itself, the form fingerprints are taken of whatever the warehouse."""
    salt = "" if nonce is None else " || " + sql_literal(chr(10) + nonce)
    return f"""
        SELECT * EXCLUDE (__wb_body),
               sha256(__wb_body{salt}) AS __wb_request_hash,
               CAST(ceil(strlen(__wb_body) / 4) AS BIGINT) AS __wb_tokens,
               strlen(__wb_body) + {spec.line_overhead} AS __wb_line_bytes,
               CAST(NULL AS BIGINT) AS __wb_output_expected  -- filled by estimates.estimate_stage
        FROM (
            SELECT q.*, CAST(q.custom_id AS VARCHAR) AS __wb_cid, {spec.body} AS __wb_body,
                   {spec.model} AS __wb_model, {spec.max_output} AS __wb_max_output,
                   {spec.output_key} AS __wb_output_key
            FROM {source or f"({job.query})"} AS q
        )
    """


def rows_fingerprint(warehouse: Warehouse, job: Job, columns: dict[str, str], source: str,
                     nonce: str | None) -> str:
    """A digest of everything a rows table is compiled from: every value of the query's columns in
    `source` (the query, or a stage holding its columns), their types, the exact SQL that builds the
    rows (job definition, body template, hashing, salt included) and the job's options.

    Equal digests mean compiling again would produce the same rows. A changed, added or removed row
    changes the count or one of two order-independent sums of 64-bit row hashes (an additive one,
    so repeated rows do not cancel out, and an xor of a second hash)."""
    return _digest(job, columns, nonce, warehouse.one(f"SELECT {_fingerprint_sums(columns)} FROM {source}"))


def _fingerprint_sums(columns: dict[str, str]) -> str:
    """The three aggregates over the query's values that `rows_fingerprint` digests."""
    values = ", ".join(quote_ident(c) for c in columns)
    return (f"count(*), coalesce(sum(CAST(hash({values}) AS HUGEINT)), 0), "
            f"coalesce(bit_xor(hash({values}, 'warehouse_batch')), 0)")


def _digest(job: Job, columns: dict[str, str], nonce: str | None, sums: Sequence[Any]) -> str:
    count, total, mixed = sums
    built_by = _stage_sql(job, bodies.build(job, columns), nonce)
    text = json.dumps([str(count), str(total), str(mixed), columns, built_by, job.to_options()],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def reuse_rows(warehouse: Warehouse, job: Job, recorded: str | None) -> Stage | None:
    """The job's rows table as this run's stage, when the query's rows, the job and the way rows
    are compiled are all unchanged since it was built (`recorded`: its rows_fingerprint), so an
    unchanged re-run neither rebuilds nor re-hashes a single body. None: compile the job."""
    if recorded is None or job.cache is False:
        return None  # an uncached run salts its hashes anew: never the same rows
    exists = warehouse.scalar("SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
                              [SCHEMA, rows_table_name(job.name)])
    if not exists:
        return None
    check_query(job, warehouse.dialect)
    columns = describe(warehouse, job)
    _check_columns(job, columns)
    try:
        current = rows_fingerprint(warehouse, job, columns, f"{warehouse.query_source(job.query)} AS q", None)
    except (duckdb.Error, JobError):
        return None  # let compile_job run the query and say what is wrong with it
    if current != recorded:
        return None
    table = rows_table(job.name)
    row_count, request_count = warehouse.one(f"SELECT count(*), count(DISTINCT __wb_request_hash) FROM {table}")
    return Stage(job, table, columns, bodies.build(job, columns).input_column, row_count, request_count,
                 fingerprint=recorded)


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


@dataclass(frozen=True)
class _Scan:
    rows: int
    fingerprint: tuple[Any, ...]  # the aggregates of `_fingerprint_sums`


def _row_problems(warehouse: Warehouse, job: Job, table: str, columns: dict[str, str], input_column: str,
                  ) -> tuple[list[str], _Scan]:
    """Every reason some rows cannot be sent, each naming up to 10 custom_ids and the count; and
    the stage's row count and fingerprint sums.

    All rules and the fingerprint are computed in one scan of the stage (its prompts are read once
    for both); examples are fetched only for the rules that fail."""
    rules = input_rules(job.endpoint, input_column, columns[input_column])
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
    # No DISTINCT aggregate here: next to the others it made this scan twice as slow as running it alone.
    scanned = warehouse.one(
        f"SELECT {_fingerprint_sums(columns)}, count_if(__wb_cid IS NULL), "
        + ", ".join(f"count_if(coalesce(({where}), false))" for where, _ in everything)
        + f" FROM {table} AS q"
    )
    scan = _Scan(rows=int(scanned[0]), fingerprint=tuple(scanned[:3]))
    counts = scanned[3:]
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
    return problems, scan


_TEXT_COLUMN = ("VARCHAR", "JSON")


def input_rules(path: str, input_column: str, column_type: str) -> list[tuple[str, str]]:
    """(WHERE condition, what is wrong) for the rows whose input column cannot be sent.

    A column of the wrong type fails every row: DuckDB would otherwise turn a number into JSON
    `5`, a list into an array, and the provider would refuse (and charge for) the whole file."""
    endpoint = endpoints.get(path)
    column = quote_ident(input_column)
    kind = answers.input_kind(column_type)
    if input_column in ("prompt", "input"):
        accepted = {"text"}
        if input_column == "input":
            accepted |= {"texts", "tokens", "token_lists"} if endpoint.token_inputs else {"texts"}
        if kind == "text":
            return [(f"{column} IS NULL OR trim(CAST({column} AS VARCHAR)) = ''", f"have a NULL or empty {input_column}")]
        if kind in accepted:  # a list of texts or of token ids: none may be missing or empty
            bad_item = {"texts": "x IS NULL OR trim(x) = ''", "tokens": "x IS NULL",
                        "token_lists": "x IS NULL OR len(x) = 0 OR list_count(x) < len(x)"}[kind]
            return [(f"{column} IS NULL OR len({column}) = 0 OR list_bool_or(list_transform({column}, lambda x: {bad_item}))",
                     f"have a NULL or empty {input_column}, or a NULL or empty item in it")]
        if kind is None and input_column == "input" and endpoint.item_inputs and column_type.endswith("[]"):
            return [(f"{column} IS NULL OR len({column}) = 0", "have a NULL or empty input")]  # multimodal items
        takes = {
            "prompt": "text",
            "input": "text or a list of texts (VARCHAR[])"
                     + (", or token ids (INTEGER[] or INTEGER[][])" if endpoint.token_inputs else ""),
        }[input_column]
        return [("true", f"have {'an' if input_column == 'input' else 'a'} {input_column} of type {column_type}, "
                         f"but {input_column} takes {takes} (cast it in the query: CAST(x AS VARCHAR) AS {input_column})")]
    if input_column == "messages":
        if column_type.upper() in _TEXT_COLUMN:
            # DuckDB evaluates both sides of OR/AND: only CASE keeps json_type off text that is not JSON.
            array = f"CASE WHEN json_valid({column}) THEN json_type({column}) = 'ARRAY' ELSE false END"
            rules = [(f"CASE WHEN {array} THEN json_array_length({column}) = 0 ELSE true END",
                      "have messages that are not a non-empty JSON array of chat messages (or not JSON at all)")]
        elif column_type.endswith("[]"):
            array = "true"
            rules = [(f"{column} IS NULL OR len({column}) = 0", "have NULL or empty messages")]
        else:
            return [("true", f"have messages of type {column_type}, but messages takes JSON text or a list of "
                             "STRUCT(role, content) (e.g. [{'role': 'user', 'content': txt}] AS messages)")]
        return rules + _message_rules(endpoint, bodies.json_text(column, column_type), array)
    if input_column == "body" and column_type.upper() in _TEXT_COLUMN:
        return [
            (f"CASE WHEN json_valid({column}) THEN json_type({column}) <> 'OBJECT' ELSE true END",
             "have a body that is not a JSON object (or not JSON at all)"),
            (f"CASE WHEN json_valid({column}) THEN json_extract(CAST({column} AS VARCHAR), '$.stream') = 'true' END",
             "ask for streaming, which the Batch API does not support (remove \"stream\": true)"),
        ]
    return []


def _message_rules(endpoint: endpoints.Endpoint, messages: str, is_array: str) -> list[tuple[str, str]]:
    """Rules over each message of a JSON array `messages`, evaluated only where `is_array` holds
    (json_extract would raise on text that is not JSON)."""
    roles = endpoint.message_roles
    role = "json_extract_string(m, '$.role')"
    content = "json_type(m, '$.content')"
    # /v1/responses input may mix messages with other items (function_call_output, ...) named by `type`.
    message = "coalesce(json_extract_string(m, '$.type'), 'message') = 'message'" if endpoint.typed_items else "true"
    # An assistant message that calls tools needs no content; the deprecated function message may be null.
    contentless = (f"({role} = 'assistant' AND (json_type(m, '$.tool_calls') IS NOT NULL "
                   f"OR json_type(m, '$.function_call') IS NOT NULL)) OR {role} = 'function'")
    bad_role = (f"json_type(m) <> 'OBJECT' OR ({message} AND coalesce({role}, '') NOT IN "
                f"({', '.join(sql_literal(r) for r in roles)}))")
    no_content = (f"{message} AND NOT ({contentless}) AND (coalesce({content}, 'NULL') = 'NULL' "
                  f"OR ({content} = 'VARCHAR' AND trim(json_extract_string(m, '$.content')) = '') "
                  f"OR ({content} = 'ARRAY' AND json_array_length(m, '$.content') = 0))")

    def any_message(condition: str) -> str:
        return (f"CASE WHEN {is_array} THEN list_bool_or(list_transform("
                f"json_extract({messages}, '$[*]'), lambda m: {condition})) END")

    return [
        (any_message(bad_role), f"have a message without a valid role (one of {', '.join(roles)})"),
        (any_message(f"json_type(m) = 'OBJECT' AND NOT ({bad_role}) AND {no_content}"),
         "have a message without content (missing, NULL or empty)"),
    ]


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


__all__ = ["Stage", "check_query", "compile_job", "describe", "drop_stage", "offenders", "reuse_rows",
           "rows_fingerprint"]
