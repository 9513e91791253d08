"""What the worker's HTTP side shows: a snapshot of the warehouse taken while the loop holds it.

The page and the metrics never open the warehouse themselves: DuckDB lets one process hold the
file, and the worker releases it between steps so analysts can write their definitions. So the
loop reads these figures at the end of each step, and the HTTP thread serves the latest copy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from warehouse_batch.names import SCHEMA
from warehouse_batch.sqlfiles import read_sql
from warehouse_batch.warehouses.base import Warehouse


@dataclass
class Snapshot:
    """The warehouse's state as of `taken_at` (epoch seconds)."""

    taken_at: float = 0.0
    jobs: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)  # job_name, error_code, row_count
    spend_today_by_job: dict[str, float] = field(default_factory=dict)
    batches_by_state: dict[str, int] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)  # requests_sent/answered/failed, spend_usd, spend_today_usd


@dataclass
class Stats:
    """What happened in this process (the warehouse does not record it)."""

    started_at: float = field(default_factory=time.time)
    last_step_at: float | None = None
    last_step_error: str | None = None
    last_successful_poll: float | None = None
    provider_errors: int = 0
    webhooks: dict[str, int] = field(default_factory=dict)  # outcome → count

    def webhook(self, outcome: str) -> None:
        self.webhooks[outcome] = self.webhooks.get(outcome, 0) + 1


def take(warehouse: Warehouse) -> Snapshot:
    totals = warehouse.rows(read_sql("worker/status_totals.sql"))[0]
    return Snapshot(
        taken_at=time.time(),
        jobs=warehouse.rows(read_sql("worker/status_jobs.sql")),
        failures=warehouse.rows(read_sql("worker/status_failures.sql")),
        spend_today_by_job={r["job_name"]: float(r["cost_usd"] or 0)
                            for r in warehouse.rows(read_sql("worker/status_today.sql"))},
        batches_by_state={state: int(n) for state, n in warehouse.execute(
            f"SELECT state, count(*) FROM {SCHEMA}.batches GROUP BY state").fetchall()},
        totals={k: float(v or 0) for k, v in totals.items()},
    )
