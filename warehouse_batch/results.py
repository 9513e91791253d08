"""Downloaded output/error files → `warehouse_batch.results` → the job's output table."""

from __future__ import annotations

import json
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


def rows_table(job_name: str) -> str:
    """The table that holds a job's query rows as of its last run."""
    return f"{SCHEMA}.{quote_ident(job_name + '__rows')}"


def load_batch(
    store: Store,
    *,
    shard_id: str,
    batch_id: str | None,
    batch_status: str,
    files: list[Path],
    batch_errors: list[dict[str, Any]],
) -> None:
    """Store every answer of one batch; requests without a line get the batch's outcome. Call in a transaction."""
    present = [str(p) for p in files if p.stat().st_size > 0]
    if present:
        store.execute(read_sql("duckdb/load_results.sql"), {"files": present, "batch_id": batch_id, "shard_id": shard_id})
    status, code, message = _MISSING.get(batch_status, _MISSING["completed"])
    if batch_status == "failed" and batch_errors:
        lineless = [e for e in batch_errors if e.get("line") is None]
        if lineless:
            code = lineless[0].get("code") or code
        summary = "; ".join(
            f"{e.get('code')}: {e.get('message')}" + (f" (line {e['line']})" if e.get("line") else "")
            for e in batch_errors[:3]
        )
        message = f"the batch failed validation: {summary}"
    store.execute(
        read_sql("duckdb/missing_results.sql"),
        {
            "shard_id": shard_id,
            "batch_id": batch_id,
            "status": status,
            "error_code": code,
            "error_message": message,
            "line_errors": json.dumps([e for e in batch_errors if e.get("line") is not None]),
        },
    )


def publish(store: Store, job: Job) -> str:
    """(Re)build the job's output table from its rows and the results cache; returns its name.

    Answers are judged and typed in SQL (see `answers.py`): the output schema's fields, the
    embedding vector or the moderation flags become columns; a refused, cut-off, non-JSON or
    off-schema answer makes its row 'failed' with an error_code and keeps its raw content."""
    rows = rows_table(job.name)
    target = quote_table(job.target_table)
    types = {r[0]: r[1] for r in store.execute(f"DESCRIBE {rows}").fetchall()}
    carried = ", ".join(quote_ident(c) for c in types if c not in ("__wb_request_hash", "model"))
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
    return job.target_table
