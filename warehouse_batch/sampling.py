"""`run --sample N`: send a seeded sample of a job's requests first, to see answers and real cost.

The Runner plans the whole job as usual (every row is recorded, so the output table shows them
all), then `pick` chooses N of the requests it would send — stratified by model, in proportion,
at least one per model — and only those are sharded and sent (`restrict`). Their answers go into
the results cache like any others, so the next full run sends only the rest. `summary` reports the
sample's answers, what they cost, and the full job's cost extrapolated from them.
"""

from __future__ import annotations

from typing import Any

from warehouse_batch.errors import JobError
from warehouse_batch.jobs import Job
from warehouse_batch.ledger import Ledger
from warehouse_batch.quoting import quote_table
from warehouse_batch.warehouses.base import Warehouse

TABLE = "temp.wb_sample"
ANSWERS_SHOWN = 5


def check(job: Job, sample: int) -> None:
    if sample < 1:
        raise JobError(f"--sample must be at least 1 request, got {sample}")
    if not job.cache:
        raise JobError(
            f"job {job.name}: --sample needs the cache (the full run reuses the sample's answers); "
            "drop --no-cache / cache: false, or run without --sample"
        )


def allocate(sizes: dict[str, int], n: int) -> dict[str, int]:
    """Requests per model for a sample of n: proportional (largest remainder), at least one per
    model when n allows, never more than a model has."""
    total = sum(sizes.values())
    n = min(n, total)
    if not n:
        return {m: 0 for m in sizes}
    floor = 1 if n >= len(sizes) else 0
    share = {m: n * s / total for m, s in sizes.items()}
    quota = {m: min(s, max(floor, int(share[m]))) for m, s in sizes.items()}
    while sum(quota.values()) > n:  # the floor took too many: give back where it is most over share
        over = max((m for m in quota if quota[m] > floor), key=lambda m: (quota[m] - share[m], m))
        quota[over] -= 1
    while sum(quota.values()) < n:
        under = max((m for m in quota if quota[m] < sizes[m]), key=lambda m: (share[m] - quota[m], m))
        quota[under] += 1
    return quota


def pick(warehouse: Warehouse, todo_sql: str, n: int, seed: int) -> dict[str, int]:
    """Choose the sample among the requests `todo_sql` selects into TABLE; returns the requests to
    send per model (the population the sample stands for)."""
    sizes = {str(m): int(c) for m, c in warehouse.execute(
        f"SELECT model, count(*) FROM ({todo_sql}) GROUP BY model").fetchall()}
    quota = allocate(sizes, n)
    warehouse.execute(f"DROP TABLE IF EXISTS {TABLE}")
    warehouse.execute(
        f"""CREATE TEMP TABLE {TABLE.removeprefix('temp.')} AS
            WITH quota AS (SELECT * FROM (VALUES {', '.join('(?, ?)' for _ in quota) or "(NULL, 0)"}) AS t(model, k)),
            ranked AS (SELECT request_hash, model,
                              row_number() OVER (PARTITION BY model ORDER BY md5(request_hash || ?)) AS position
                       FROM ({todo_sql}))
            SELECT request_hash FROM ranked JOIN quota USING (model) WHERE position <= quota.k""",
        [v for item in quota.items() for v in item] + [str(seed)],
    )
    return sizes


def restrict(todo_sql: str) -> str:
    """`todo_sql` narrowed to the sample's requests."""
    return f"SELECT * FROM ({todo_sql}) AS todo WHERE todo.request_hash IN (SELECT request_hash FROM {TABLE})"


def summary(warehouse: Warehouse, ledger: Ledger, job: Job, run_id: str, population: dict[str, int],
            full: Any) -> dict[str, Any]:
    """The sample run's answers (a few), its actual cost, and the full job's cost extrapolated from
    it: per model, the sample's mean actual cost per request × the requests the full run sends."""
    warehouse.execute(f"DROP TABLE IF EXISTS {TABLE}")
    by_model = {r["model"]: r for r in ledger.run_actuals(run_id)}
    extrapolated: float | None = 0.0
    for model, requests in population.items():
        actual = by_model.get(model)
        if actual is None or not actual["answered"] or actual["cost_usd"] is None:
            extrapolated = None  # no priced answer of this model came back: nothing to scale
            break
        extrapolated += actual["cost_usd"] / actual["answered"] * requests  # type: ignore[operator]
    table = job.target_table
    answers = warehouse.rows(
        f"SELECT * EXCLUDE (request_hash, batch_id, completed_at, is_stale, answer_request_hash, published_at) FROM {quote_table(table)} "
        f"WHERE batch_id IN (SELECT batch_id FROM warehouse_batch.batches WHERE run_id = ?) "
        f"ORDER BY status, CAST(custom_id AS VARCHAR) LIMIT {ANSWERS_SHOWN}",
        [run_id],
    ) if warehouse.table_kind(table) else []
    return {
        "requests": sum(int(r["sent"]) for r in by_model.values()),
        "answered": sum(int(r["answered"]) for r in by_model.values()),
        "input_tokens": sum(int(r["input_tokens"] or 0) for r in by_model.values()),
        "output_tokens": sum(int(r["output_tokens"] or 0) for r in by_model.values()),
        "actual_cost_usd": sum(float(r["cost_usd"] or 0) for r in by_model.values()),
        "full_requests": sum(population.values()),
        "extrapolated_cost_usd": extrapolated,
        "full_cost_usd_expected": full.cost_usd_expected,
        "full_cost_usd_upper_bound": full.cost_usd_upper_bound,
        "answers": answers,
    }


__all__ = ["allocate", "check", "pick", "restrict", "summary"]
