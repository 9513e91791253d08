"""The dbt run-operations that need the library: `llm_batch_retry` and `llm_batch_status`.

The macros resolve model names (or a selector) to the models' relations and config in Jinja, and
call the plugin's `warehouse_batch_operation(json)` function once; this module turns each model
into its job name the same way the materialization does and acts through `Runner`. Status reads the
metadata tables only (no provider call, no key); retry collects, then resends the retryable rows.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import duckdb

from warehouse_batch.cost import usd
from warehouse_batch.dbt.sync import LOCK, OUTPUT_SUFFIX, Settings, _open, _runner, job_name_for
from warehouse_batch.names import SCHEMA
from warehouse_batch.quoting import quote_ident
from warehouse_batch.errors import NotFoundError
from warehouse_batch.sqlfiles import read_sql


def run_operation(conn: duckdb.DuckDBPyConnection, request_text: str, settings: Settings, *,
                  lock: threading.Lock = LOCK) -> dict[str, Any]:
    """{"lines": [...]}: what the operation did or found, one line per model."""
    request = json.loads(request_text)
    models = request.get("models") or []
    if request["operation"] == "cleanup":
        with lock, _open(conn, settings) as warehouse:
            return {"lines": cleanup(_runner(warehouse, settings), models)}
    if not models:
        raise NotFoundError(f"no llm_batch model matches {request.get('select')!r}; "
                            f"llm_batch models in this project: {', '.join(request.get('known') or []) or 'none'}")
    lines = []
    with lock, _open(conn, settings) as warehouse:
        runner = _runner(warehouse, settings)
        known = set(runner.ledger.job_names())
        for model in models:
            job_name = model.get("job_name") or job_name_for(model["schema"], model["identifier"])
            if job_name not in known:
                lines.append(f"{model['name']}: not run yet in this warehouse (job {job_name}); run dbt build first")
                continue
            if request["operation"] == "retry":
                runner.collect_related(job_name)
                report = runner.retry(job_name)
                sent = sum(b.get("line_count") or 0 for b in report.batches if report.run_id and report.run_id in str(b.get("shard_id")))
                lines.append(f"{model['name']}: {sent:,} request(s) resent; rows by status now "
                             f"{_statuses(report.statuses)}; `dbt build -s {model['name']}+` shows them when answered")
            else:
                lines.append(_status_line(runner, model["name"], job_name))
    return {"lines": lines}


def cleanup(runner: Any, models: list[dict[str, Any]]) -> list[str]:
    """Drop what no model needs: `--empty` scratch tables, the library's copies of model tables
    (`<job>__output`, rebuilt when needed), and the rows tables of dbt jobs whose model is gone
    (retired: their answers stay in the cache, so a model brought back pays nothing)."""
    current = {m.get("job_name") or job_name_for(m["schema"], m["identifier"]) for m in models}
    warehouse = runner.warehouse
    dropped, kept = [], []
    for (table,) in warehouse.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = ? "
            "AND (contains(table_name, '__wb_empty') OR suffix(table_name, ?)) ORDER BY 1",
            [SCHEMA, OUTPUT_SUFFIX]).fetchall():
        warehouse.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{quote_ident(table)}")
        dropped.append(table)
    for job_name in runner.ledger.job_names():
        job = runner.ledger.job(job_name)
        is_dbt_job = job.target_table == f"{SCHEMA}.{job_name}{OUTPUT_SUFFIX}"
        if not is_dbt_job or job_name in current:
            continue
        if runner.ledger.retire_job(job_name):
            dropped.append(f"{job_name}__rows")
        else:
            kept.append(job_name)
    lines = [f"dropped {len(dropped)} table(s) no model needs" + (f": {', '.join(dropped)}" if dropped else "")]
    if kept:
        lines.append(f"kept the jobs of removed models with batches still in flight: {', '.join(kept)}; "
                     "run cleanup again once they are collected")
    return lines


def _status_line(runner: Any, name: str, job_name: str) -> str:
    report = runner.job_report(job_name)
    progress = report.progress or {}
    in_flight = runner.warehouse.scalar(read_sql("ledger/in_flight_cost.sql"), {"job": job_name})
    line = f"{name} (job {job_name}): {_statuses(report.statuses)}"
    if progress.get("live_batches"):
        eta = progress.get("eta_seconds")
        line += (f"; {progress['live_batches']} batch(es) running, {progress['done']:,}/{progress['total']:,} "
                 f"requests done" + (f", about {eta:,} s left" if eta is not None else ", ETA unknown yet"))
    line += f"; in flight {usd(float(in_flight or 0))} expected"
    if report.error:
        line += f"; last error: {report.error}"
    return line


def _statuses(statuses: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {s}" for s, n in sorted(statuses.items())) or "no rows"
