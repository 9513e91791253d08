"""Downloaded output/error files → `warehouse_batch.results` → the job's output table."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any


from warehouse_batch import answers
from warehouse_batch.jobs import Job
from warehouse_batch.sqlfiles import read_sql
from warehouse_batch.store import SCHEMA, Store, quote_ident, quote_table

#: What a request that got no line in its batch's files becomes, by the batch's final status.
_MISSING = {
    "failed": ("failed", "batch_failed", "the batch failed validation before this request ran"),
    "expired": ("expired", "batch_expired", "the batch expired before this request ran"),
    "cancelled": ("cancelled", "batch_cancelled", "the batch was cancelled before this request ran"),
    "completed": ("failed", "missing_result", "the batch completed without a result line for this request"),
}


#: Our shard lines start with the custom_id (the request hash), so a line number maps back cheaply.
_CUSTOM_ID = re.compile(rb'^\{"custom_id":"([0-9a-f]{64})"')


def rows_table(job_name: str) -> str:
    """The table that holds a job's query rows as of its last run."""
    return f"{SCHEMA}.{quote_ident(job_name + '__rows')}"


def load_batches(store: Store, batches: list[dict[str, Any]]) -> None:
    """Store every answer of the given batches in one statement; then give each request that got
    no line its batch's outcome. Each item: shard_id, batch_id, status, files, errors, path (the
    shard file). Call in a transaction."""
    sources = [
        {"file": str(f), "batch_id": b["batch_id"], "shard_id": b["shard_id"]}
        for b in batches for f in b["files"] if f.stat().st_size > 0
    ]
    if sources:
        store.execute(read_sql("duckdb/load_results.sql"),
                      {"files": [s["file"] for s in sources], "sources": json.dumps(sources)})
    for batch in batches:
        _missing(store, batch)


def _missing(store: Store, batch: dict[str, Any]) -> None:
    errors = batch["errors"]
    status, code, message = _MISSING.get(batch["status"], _MISSING["completed"])
    if batch["status"] == "failed" and errors:
        lineless = [e for e in errors if e.get("line") is None]
        if lineless:
            code = lineless[0].get("code") or code
        summary = "; ".join(
            f"{e.get('code')}: {e.get('message')}" + (f" (line {e['line']})" if e.get("line") else "")
            for e in errors[:3]
        )
        message = f"the batch failed validation: {summary}"
    store.execute(
        read_sql("duckdb/missing_results.sql"),
        {
            "shard_id": batch["shard_id"],
            "batch_id": batch["batch_id"],
            "status": status,
            "error_code": code,
            "error_message": message,
            "line_errors": json.dumps(_line_errors(errors, batch.get("path"))),
        },
    )


def _line_errors(errors: list[dict[str, Any]], shard_path: str | None) -> list[dict[str, Any]]:
    """Validation errors that name a line, with the custom_id found on that line of the shard file."""
    wanted = {int(e["line"]): e for e in errors if e.get("line") is not None}
    if not wanted or not shard_path or not Path(shard_path).exists():
        return []
    found = []
    with open(shard_path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if number in wanted:
                match = _CUSTOM_ID.match(line)
                if match:
                    found.append({**wanted[number], "custom_id": match.group(1).decode()})
                if len(found) == len(wanted):
                    break
    return found


def publish(store: Store, job: Job) -> str:
    """(Re)build the job's output table from its rows and the results cache; returns its name.

    Answers are judged and typed in SQL (see `answers.py`): the output schema's fields, the
    embedding vector or the moderation flags become columns; a refused, cut-off, non-JSON or
    off-schema answer makes its row 'failed' with an error_code and keeps its raw content."""
    rows = rows_table(job.name)
    target = quote_table(job.target_table)
    fingerprint = _fingerprint(store, job, rows)
    if store.table_exists(job.target_table) and fingerprint == store.scalar(
        f"SELECT published_fingerprint FROM {SCHEMA}.jobs WHERE name = ?", [job.name]
    ):
        return job.target_table  # built from exactly these rows, results, options and prices already
    types = {r[0]: r[1] for r in store.execute(f"DESCRIBE {rows}").fetchall()}
    carried = ", ".join(quote_ident(c) for c in types if not c.startswith("__wb_") and c != "model")
    input_type = next((types[c] for c in ("input", "prompt") if c in types), None)
    answer = answers.answer_sql(job, input_type)
    typed = "".join(
        f"CASE WHEN __wb_status = 'completed' AND __wb_answer_error IS NULL THEN {expr} END::{sql_type} "
        f"AS {quote_ident(name)},\n       "
        for name, sql_type, expr in answer.columns
    )
    if "." in job.target_table:
        store.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(job.target_table.split('.')[0])}")
    with store.transaction():
        store.execute(
            read_sql("duckdb/publish.sql").format(
                target=target, rows=rows, carried=carried, parse=answer.parse, answer_error=answer.error,
                answer_message=answer.message, typed=typed,
            )
        )
        # The per-status counts travel with the table, so job_status and reports agree with it.
        store.execute(f"DELETE FROM {SCHEMA}.job_counts WHERE job_name = ?", [job.name])
        store.execute(
            f"INSERT INTO {SCHEMA}.job_counts SELECT ?, status, count(*), sum(cost_usd) FROM {target} GROUP BY status",
            [job.name],
        )
        store.execute(f"UPDATE {SCHEMA}.jobs SET published_fingerprint = ? WHERE name = ?", [fingerprint, job.name])
    return job.target_table


def _fingerprint(store: Store, job: Job, rows: str) -> str:
    """A digest of everything the output table is built from: every value of the job's rows, the
    results cache (any load bumps its count or newest timestamp), the job's options and the prices."""
    rows_digest, results_state, prices_digest = store.one(
        f"""SELECT (SELECT count(*) || ':' || coalesce(bit_xor(hash(q)), 0) FROM {rows} AS q),
                   (SELECT count(*) || ':' || coalesce(CAST(max(completed_at) AS VARCHAR), '') FROM {SCHEMA}.results),
                   (SELECT coalesce(bit_xor(hash(p)), 0) FROM {SCHEMA}.prices AS p)"""
    )
    definition = json.dumps(job.to_options(), sort_keys=True, default=str)
    return hashlib.sha256(f"{rows_digest}|{results_state}|{prices_digest}|{definition}".encode()).hexdigest()
