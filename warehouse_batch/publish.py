"""The output table: each row of a job's query joined to its answer, typed, one status per row.

It is written only if warehouse_batch created it for this job (`check_target`, called at plan time
before anything is sent and again before every build): an existing table or view that is not ours,
a table another job owns, or a name in the reserved `warehouse_batch` schema is refused by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json

import duckdb
import sqlglot
from sqlglot import exp

from warehouse_batch import answers
from warehouse_batch.errors import JobError
from warehouse_batch.jobs import Job
from warehouse_batch.ledger import Ledger
from warehouse_batch.names import INTERNAL_PREFIX, SCHEMA, rows_table, temp_table
from warehouse_batch.quoting import quote_ident, quote_table, split_table, sql_literal
from warehouse_batch.sqlfiles import read_sql
from warehouse_batch.warehouses.base import Warehouse
from warehouse_batch.warehouses.duckdb import rows_within_limit

#: DuckDB memory per row of a publish statement: the output table is written in parts (each
#: committed) of as many rows as the memory limit holds at this many bytes each, so the joins of a
#: part fit it, spilling, whatever the job's size. Each part scans the metadata tables once, so
#: smaller parts cost more scans. Parts of 1M rows were measured to pass at the default limit on one
#: thread and to fail at 128MB; this makes a part 1,049,005 rows at 256MB (which DuckDB holds as
#: 244.1 MiB), so 1M rows are one part, and half that at 128MB.
PART_ROW_BYTES = 244


def part_rows(warehouse: Warehouse) -> int:
    """Rows per publish statement, from DuckDB's memory limit."""
    return rows_within_limit(warehouse, PART_ROW_BYTES)

#: The library's own copy of a dbt model's output lives in the metadata schema under this suffix.
LIBRARY_TABLE_SUFFIX = "__output"


def check_target(warehouse: Warehouse, ledger: Ledger, job: Job) -> None:
    """Refuse, before anything is sent, an output table the job may not write."""
    schema, name = split_table(job.target_table)
    how = "choose another name with the job option `table:` (or --table)"
    if schema.lower() == SCHEMA and not name.endswith(LIBRARY_TABLE_SUFFIX):
        raise JobError(f"job {job.name}: the schema {SCHEMA} is reserved for warehouse_batch's own tables; {how}")
    if job.table is None and name.lower() in _tables_read(job.query, warehouse.dialect):
        raise JobError(
            f"job {job.name}: its output table would be {job.target_table!r} (the job name), which its own query "
            f"reads; {how}"
        )
    owner = ledger.owner_of(job.target_table)
    if owner is not None and owner != job.name:
        raise JobError(f"job {job.name}: the table {job.target_table!r} is already the output of job {owner!r}; {how}")
    kind = warehouse.table_kind(job.target_table)
    if kind == "view":
        raise JobError(f"job {job.name}: {job.target_table!r} is an existing view, not a table warehouse_batch made; {how}")
    if kind == "table" and not (owner == job.name and ledger.table_created(job.name)):
        raise JobError(
            f"job {job.name}: a table named {job.target_table!r} already exists and warehouse_batch did not create "
            f"it, so it will not be replaced; {how}, or drop that table yourself if it is disposable"
        )


def _tables_read(query: str, dialect: str) -> set[str]:
    try:
        return {t.name.lower() for t in sqlglot.parse_one(query, read=dialect).find_all(exp.Table)}
    except sqlglot.errors.SqlglotError:
        return set()


def publish(warehouse: Warehouse, ledger: Ledger, job: Job) -> str:
    """(Re)build the job's output table from its rows and the results cache; returns its name.

    Answers are judged and typed in SQL (see `answers.py`): the output schema's fields, the
    embedding vector or the moderation flags become columns; a refused, cut-off, non-JSON or
    off-schema answer makes its row 'failed' with an error_code and keeps its raw content."""
    rows = rows_table(job.name)
    target = quote_table(job.target_table)
    fingerprint = _fingerprint(warehouse, ledger, job, rows)
    kind = warehouse.table_kind(job.target_table)
    if kind == "table" and fingerprint == ledger.published_fingerprint(job.name):
        return job.target_table  # built from exactly these rows, results, options and prices already
    if kind is not None:
        check_target(warehouse, ledger, job)
    types = {r[0]: r[1] for r in warehouse.execute(f"DESCRIBE {rows}").fetchall()}
    carried = ", ".join(quote_ident(c) for c in types if not c.startswith(INTERNAL_PREFIX) and c != "model")
    input_type = next((types[c] for c in ("input", "prompt") if c in types), None)
    answer = answers.answer_sql(job, input_type)
    typed = "".join(
        f"CASE WHEN __wb_status = 'completed' AND __wb_answer_error IS NULL THEN {expr} END::{sql_type} "
        f"AS {quote_ident(name)},\n       "
        for name, sql_type, expr in answer.columns
    )
    schema, _ = split_table(job.target_table)
    if "." in job.target_table:
        warehouse.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    fields = dict(rows=rows, carried=carried, parse=answer.parse, answer_error=answer.error,
                  answer_message=answer.message, typed=typed, job=sql_literal(job.name))
    sql = read_sql("duckdb/publish.sql")
    total = int(warehouse.scalar(f"SELECT count(*) FROM {rows}"))
    # In its own transaction: the parts below read it. Should the build fail, the next publish
    # finds these rows remembered already and keeps their time (the output table is unchanged).
    with warehouse.transaction():
        ledger.remember_answers(job.name)
    # The table is built under another name, a commit after each part, then swapped in: one
    # transaction of all the parts kept every uncommitted part in DuckDB's memory (about 21 MB per
    # million rows), which the later parts' joins then lacked; a 10M-row job ran out of the default
    # limit (benchmarks/RESULTS.md, 2026-12-03). Readers see the old table until the swap.
    building = _building_table(job.target_table)
    # The temp table outlives the transactions: dropping it inside one that an error or Ctrl-C
    # aborted would fail and hide what went wrong.
    with temp_table(warehouse, "__wb_stale") as stale:
        parts = _parts(warehouse, job, rows, stale.name, total)
        try:
            for k, part in enumerate(parts):
                into = f"CREATE OR REPLACE TABLE {building} AS" if k == 0 else f"INSERT INTO {building}"
                _write_part(warehouse, sql.format(into=into, **part, **fields))
            with warehouse.transaction():
                warehouse.execute(f"DROP TABLE IF EXISTS {target}")
                warehouse.execute(f"ALTER TABLE {building} RENAME TO {quote_ident(split_table(job.target_table)[1])}")
                ledger.record_published(job.name, target, fingerprint)
        except BaseException:
            with contextlib.suppress(Exception):
                warehouse.execute(f"DROP TABLE IF EXISTS {building}")
            raise
    return job.target_table


def _write_part(warehouse: Warehouse, statement: str) -> None:
    """Write one part on the engine's threads, and again on one thread if that ran out of memory.
    With two threads each keeps its own hash-join partitions, and parts of 170k–250k rows ran out of
    the default 256 MB now and then; on one thread a part spills and passes, but takes 1.5–2× as
    long (benchmarks/RESULTS.md, 2026-12-03). The part is one statement outside any transaction, so
    one that failed left nothing behind."""
    try:
        warehouse.execute(statement)
    except duckdb.OutOfMemoryException:
        with warehouse.single_threaded():
            warehouse.execute(statement)


def _building_table(target_table: str) -> str:
    """Where the output table is built before it is swapped in: beside it (a rename cannot move a
    table to another schema), under a name the tool owns and never pushes to a PostgreSQL warehouse."""
    schema, name = split_table(target_table)
    return f"{quote_ident(schema)}.{quote_ident(INTERNAL_PREFIX + 'next_' + name)}"


def _parts(warehouse: Warehouse, job: Job, rows: str, stale: str, total: int) -> list[dict[str, str]]:
    """What each statement of publish.sql writes: the rows whose request hash (hex) falls in one of
    ceil(total / part_rows) equal ranges, then the rows that show a stale answer (their answer is
    another request's, outside their range)."""
    n_stale = 0
    if job.keep_stale_answers:
        warehouse.execute(read_sql("duckdb/publish_stale.sql").format(stale=stale, rows=rows, job=sql_literal(job.name)))
        n_stale = int(warehouse.scalar(f"SELECT count(*) FROM {stale}"))
    not_stale = f" AND q.__wb_cid NOT IN (SELECT __wb_cid FROM {stale})" if n_stale else ""
    count = max(1, -(-total // part_rows(warehouse)))
    bounds = [sql_literal(f"{k * 0x10000 // count:04x}") for k in range(1, count)]
    parts = []
    for k in range(count):
        lo = f"request_hash >= {bounds[k - 1]}" if k > 0 else None
        hi = f"request_hash < {bounds[k]}" if k < count - 1 else None
        in_part = " AND ".join(c for c in (lo, hi) if c) or "true"
        rows_in_part = in_part.replace("request_hash", "q.__wb_request_hash") + not_stale
        parts.append({
            "keyed": f"SELECT q.__wb_cid, q.__wb_request_hash AS __wb_answer_hash FROM {rows} AS q WHERE {rows_in_part}",
            "in_part": in_part, "rows_in_part": rows_in_part,
        })
    if n_stale:
        parts.append({
            "keyed": f"SELECT __wb_cid, __wb_answer_hash FROM {stale}",
            "in_part": f"request_hash IN (SELECT __wb_answer_hash FROM {stale})",
            "rows_in_part": f"q.__wb_cid IN (SELECT __wb_cid FROM {stale})",
        })
    return parts


def _fingerprint(warehouse: Warehouse, ledger: Ledger, job: Job, rows: str) -> str:
    """A digest of everything the output table is built from: the job's rows (the fingerprint of
    what they were compiled from, recorded with them; else every value), the results cache (any load
    bumps its count or newest timestamp), shard membership and batch ids (attempts, batch_id of
    pending rows), the job's options and the prices."""
    compiled_from = ledger.rows_fingerprint(job.name)
    rows_digest = f"(SELECT {sql_literal(compiled_from)})" if compiled_from else \
        f"(SELECT count(*) || ':' || coalesce(bit_xor(hash(q)), 0) FROM {rows} AS q)"
    rows_state, results_state, shards_state, prices_digest = warehouse.one(
        f"""SELECT {rows_digest},
                   (SELECT count(*) || ':' || coalesce(CAST(max(completed_at) AS VARCHAR), '') FROM {SCHEMA}.results),
                   (SELECT count(*) FROM {SCHEMA}.request_shards) || ':'
                       || (SELECT coalesce(bit_xor(hash(shard_id, batch_id)), 0) FROM {SCHEMA}.batches),
                   (SELECT coalesce(bit_xor(hash(p)), 0) FROM {SCHEMA}.prices AS p)"""
    )
    definition = json.dumps(job.to_options(), sort_keys=True, default=str)
    return hashlib.sha256(
        f"{rows_state}|{results_state}|{shards_state}|{prices_digest}|{definition}".encode()).hexdigest()
