"""What a run would cost: exact input tokens, expected and upper-bound output tokens, both costs.

`estimate_stage` works on the requests a compiled stage would send (`ledger.stage_todo_sql`):

* **Input tokens** are counted with the model's tokenizer (`tokens.py`: message text, chat framing,
  the structured-output schema). Bodies are built again in DuckDB and streamed as Arrow, one per
  distinct request. Up to `EXACT_LIMIT` requests every body is counted; above it, a seeded sample
  of `SAMPLE_SIZE` is, and the total is bytes/4 of all requests × the sample's tokens-per-(bytes/4)
  ratio, with a 95% interval (a ratio estimator: tokens follow bytes closely, so its error is far
  smaller than a mean-per-request estimate's).
* **The per-request figure** that shard token budgets and `max_enqueued_tokens` use (the stage's
  `__wb_tokens`, stored as `requests.est_input_tokens`) is the exact count; with a sample it is
  bytes/4 × the *largest* ratio seen in the sample, so text that tokenizes densely (CJK, where
  bytes/4 under-counts) is not under-counted.
* **Output tokens, expected**: the mean output of completed answers with the same endpoint, model and
  answer format (`output_key`) that this job asked for; else that other jobs asked for; else the
  prior of `priors.py`. **Upper bound**: the request's max_tokens & co., else `priors.upper_output`.
  Each request's expected figure is stored (`requests.est_output_expected`) for the daily budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from warehouse_batch import arrow_pool, bodies, endpoints, priors, schema, tokens
from warehouse_batch.jobs import Job
from warehouse_batch.names import temp_table
from warehouse_batch.sqlfiles import read_sql
from warehouse_batch.warehouses.base import Warehouse

#: Requests counted one by one (≈ 2.5 s per 100,000 on one core); larger runs count a sample.
EXACT_LIMIT = 100_000
SAMPLE_SIZE = 10_000
SAMPLE_SEED = 0
_BATCH_ROWS = 20_000
_Z95 = 1.959964


@dataclass(frozen=True)
class Estimate:
    """Tokens and cost of the requests a run would send. Costs are None when a model has no price."""

    requests: int
    input_tokens: int
    input_method: str  # "exact", or "sample of N, ±x%"
    output_expected: int
    output_upper_bound: int
    output_method: str  # where the expected output comes from (history or a prior), per group
    cost_usd_expected: float | None
    cost_usd_upper_bound: float | None
    unpriced_models: tuple[str, ...] = ()

    def cost(self, figure: str) -> float | None:
        """The cost a guard compares: `expected` or `upper_bound`."""
        return self.cost_usd_expected if figure == "expected" else self.cost_usd_upper_bound


def estimate_stage(warehouse: Warehouse, stage: str, todo_sql: str, job: Job, columns: dict[str, str]) -> Estimate:
    """Estimate the requests `todo_sql` selects from `stage`, and write each one's safe input figure
    (`__wb_tokens`) and expected output (`__wb_output_expected`) into the stage."""
    with temp_table(warehouse, "wb_estimate") as table, temp_table(warehouse, "wb_priors") as prior_table:
        warehouse.execute(
            f"""CREATE TEMP TABLE wb_estimate AS
                SELECT request_hash, model, output_key, max_output, input_tokens AS bytes4,
                       CAST(input_tokens AS DOUBLE) AS input_expected, input_tokens AS input_safe
                FROM ({todo_sql})"""
        )
        try:
            count = _count_inputs(warehouse, stage, table.name, job, columns)
        finally:
            arrow_pool.release_unused()
        methods = _priors(warehouse, prior_table.name, job)
        warehouse.execute(
            f"""UPDATE {stage} AS s
                SET __wb_tokens = e.input_safe,
                    __wb_output_expected = least(g.expected, coalesce(e.max_output, g.expected))
                FROM {table.name} AS e JOIN {prior_table.name} AS g
                  ON g.model IS NOT DISTINCT FROM e.model AND g.output_key IS NOT DISTINCT FROM e.output_key
                WHERE s.__wb_request_hash = e.request_hash"""
        )
        rows = warehouse.rows(read_sql("estimates/cost.sql"))
    unpriced = tuple(sorted(str(r["model"]) for r in rows if r["cost_expected"] is None))
    return Estimate(
        requests=sum(int(r["requests"]) for r in rows),
        input_tokens=count.input_tokens,
        input_method=count.method,
        output_expected=sum(int(round(r["output_expected"] or 0)) for r in rows),
        output_upper_bound=sum(int(r["output_upper"] or 0) for r in rows),
        output_method="; ".join(methods) or "none (nothing to send)",
        cost_usd_expected=None if unpriced else float(sum(r["cost_expected"] for r in rows)),
        cost_usd_upper_bound=None if unpriced else float(sum(r["cost_upper"] for r in rows)),
        unpriced_models=unpriced,
    )


# -- input --------------------------------------------------------------------------------
def _count_inputs(warehouse: Warehouse, stage: str, table: str, job: Job, columns: dict[str, str]) -> tokens.TokenEstimate:
    """Count the bodies (all, or a seeded sample) and set input_expected / input_safe of `table`."""
    n, bytes4 = warehouse.one(f"SELECT count(*), coalesce(sum(bytes4), 0) FROM {table}") or (0, 0)
    if not n:
        return tokens.TokenEstimate(0, 0, 0, 0, 0)
    query_columns = {c: t for c, t in columns.items() if not c.startswith("__wb_")}
    body = bodies.build(job, query_columns).body
    with temp_table(warehouse, "wb_picked") as picked, temp_table(warehouse, "wb_counted") as counted:
        if n <= EXACT_LIMIT:
            warehouse.execute(f"CREATE TEMP TABLE wb_picked AS SELECT request_hash FROM {table}")
        else:  # a seeded uniform sample: md5 of hash and seed orders requests the same way every time
            warehouse.execute(f"CREATE TEMP TABLE wb_picked AS SELECT request_hash FROM {table} "
                              f"ORDER BY md5(request_hash || '{int(SAMPLE_SEED)}') LIMIT {int(SAMPLE_SIZE)}")
        _count_bodies(warehouse, read_sql("estimates/bodies.sql").format(stage=stage, picked=picked.name, body=body),
                      job.endpoint, counted.name)
        if n <= EXACT_LIMIT:
            warehouse.execute(f"UPDATE {table} AS e SET input_expected = c.tokens, input_safe = c.tokens "
                              f"FROM {counted.name} AS c WHERE c.request_hash = e.request_hash")
            total = int(warehouse.scalar(f"SELECT coalesce(sum(input_safe), 0) FROM {table}"))
            return tokens.TokenEstimate(total, n, n, total, total)
        pairs = warehouse.execute(f"SELECT c.tokens, e.bytes4 FROM {counted.name} AS c "
                                  f"JOIN {table} AS e USING (request_hash)").fetchall()
    ratio, largest, half = _ratio_estimate(pairs, n, int(bytes4))
    warehouse.execute(f"UPDATE {table} SET input_expected = bytes4 * {ratio!r}, "
                      f"input_safe = CAST(ceil(bytes4 * {largest!r}) AS BIGINT)")
    total = round(bytes4 * ratio)
    return tokens.TokenEstimate(total, n, len(pairs), max(0, math.floor(total - half)), math.ceil(total + half))


def _count_bodies(warehouse: Warehouse, bodies_sql: str, endpoint: str, into: str) -> None:
    """Stream (request_hash, body) from DuckDB as Arrow, count each body, store (request_hash, tokens)."""
    reader = warehouse.engine.sql(bodies_sql).to_arrow_reader(_BATCH_ROWS)
    counted = [pa.record_batch([batch.column("request_hash"), tokens.count_bodies(batch.column("body"), endpoint)],
                               names=["request_hash", "tokens"]) for batch in reader]
    schema_ = pa.schema([("request_hash", pa.string()), ("tokens", pa.int64())])
    counts = pa.Table.from_batches(counted, schema=schema_) if counted else schema_.empty_table()
    warehouse.engine.register("__wb_counts", counts)
    try:
        warehouse.execute(f"CREATE TEMP TABLE {into.removeprefix('temp.')} AS SELECT * FROM __wb_counts")
    finally:
        warehouse.engine.unregister("__wb_counts")


def _ratio_estimate(pairs: list[tuple[int, int]], population: int, bytes4_total: int) -> tuple[float, float, float]:
    """(tokens per bytes/4 unit, the largest such ratio in the sample, half-width of the 95% interval
    of the total) from (exact tokens, bytes/4) pairs of a simple random sample."""
    k = len(pairs)
    counted = sum(c for c, _ in pairs)
    weight = sum(b for _, b in pairs) or 1
    ratio = counted / weight
    largest = max((c / b for c, b in pairs if b), default=1.0)
    if k < 2:
        return ratio, largest, 0.0
    residual = sum((c - ratio * b) ** 2 for c, b in pairs) / (k - 1)
    mean_b = bytes4_total / population
    # Var(R) ≈ (1 - f) / (k · mean_b²) · s²_residual; the total is R × bytes4_total.
    half = _Z95 * bytes4_total * math.sqrt(max(0.0, 1 - k / population) * residual / k) / mean_b
    return ratio, largest, half


# -- output -------------------------------------------------------------------------------
def _priors(warehouse: Warehouse, into: str, job: Job) -> list[str]:
    """Fill `into` (model, output_key → expected, upper, cached_share) for every group of
    wb_estimate; returns how each group's expected figure was found."""
    groups = warehouse.execute("SELECT model, output_key, count(*) FROM temp.wb_estimate GROUP BY ALL ORDER BY ALL").fetchall()
    history: dict[tuple[str, bool], tuple[int, float, float]] = {
        (key, bool(own)): (int(answers), float(output), float(cached or 0.0))
        for key, own, answers, output, cached in warehouse.execute(
            read_sql("estimates/history.sql"), {"job": job.name}).fetchall()
    }
    output_schema = _schema_of(job)
    rows: list[tuple[Any, ...]] = []
    methods: list[str] = []
    for model, key, _ in groups:
        upper = priors.upper_output(job.endpoint, model, schema=output_schema, params=job.params)
        own, others = history.get((key, True)), history.get((key, False))
        if own:
            answers, output, cached = own
            method = f"mean of {answers:,} answer(s) of this job"
        elif others:
            answers, output, cached = others
            method = f"mean of {answers:,} answer(s) of other jobs with this model and schema"
        else:
            prior, method = priors.expected_output(job.endpoint, model, system=job.system, schema=output_schema,
                                                   params=job.params)
            output, cached = float(prior), 0.0
        rows.append((model, key, output, upper, cached))
        label = f"{model}: {method}" if len(groups) > 1 else method
        if label not in methods:
            methods.append(label)
    warehouse.execute(f"CREATE TEMP TABLE {into.removeprefix('temp.')} (model VARCHAR, output_key VARCHAR, "
                      "expected DOUBLE, upper BIGINT, cached_share DOUBLE)")
    if rows:
        warehouse.executemany(f"INSERT INTO {into} VALUES (?, ?, ?, ?, ?)", rows)
    return methods


def _schema_of(job: Job) -> dict[str, Any] | None:
    """The answer's JSON Schema, for jobs whose bodies warehouse_batch builds (a `body` column's own
    format is not parsed: those jobs get the free-text prior)."""
    if endpoints.get(job.endpoint).schema_key is None or job.output_schema is None or isinstance(job.output_schema, type):
        return None
    loaded = schema.load(job.output_schema)
    return loaded.json_schema() if loaded is not None else None


__all__ = ["EXACT_LIMIT", "Estimate", "SAMPLE_SIZE", "estimate_stage"]
