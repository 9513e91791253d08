"""Prices, spend estimates before a run, and the guards that refuse a run over budget.

Estimates are made in SQL over the compiled stage: input tokens are `ceil(body bytes / 4)` (an
over-estimate for English prose, named as such wherever it is shown); output tokens are the
request's `max_tokens` / `max_completion_tokens` / `max_output_tokens` (see endpoints.MAX_OUTPUT_KEYS),
else the endpoint's `default_output_tokens` (256 for text, 0 for embeddings and moderations). Actual spend comes from each answer's
`usage`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from warehouse_batch import endpoints
from warehouse_batch.errors import ConfigError, JobError
from warehouse_batch.jobs import Job
from warehouse_batch.names import SCHEMA
from warehouse_batch.warehouses.base import Warehouse

PRICES_ENV = "WAREHOUSE_BATCH_PRICES"
ESTIMATE_METHOD = "input: ceil(request body bytes / 4); output: max_tokens, else 256 per request"


@dataclass(frozen=True)
class Estimate:
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None  # None when some model has no price
    unpriced_models: tuple[str, ...]


def load_prices(warehouse: Warehouse, path: str | Path | None = None) -> None:
    """Replace the prices table with the shipped list, overlaid with the user's file (if any)."""
    shipped = json.loads(resources.files("warehouse_batch").joinpath("data/prices.json").read_text(encoding="utf-8"))
    discount = float(shipped.get("batch_discount", 0.5))
    models = {model: _model_price(price) for model, price in shipped["models"].items()}
    path = path or os.environ.get(PRICES_ENV)
    if path:
        custom_discount, custom_models = read_prices(Path(path))
        discount = discount if custom_discount is None else custom_discount
        models.update(custom_models)
    rows = [(model, *price, discount) for model, price in models.items()]
    with warehouse.transaction():
        warehouse.execute(f"DELETE FROM {SCHEMA}.prices")
        warehouse.executemany(f"INSERT INTO {SCHEMA}.prices VALUES (?, ?, ?, ?, ?)", rows)


_PRICES_SHAPE = ('{"batch_discount": 0.5, "models": {"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, '
                 '"output": 0.6}}} (USD per 1M tokens)')


def read_prices(path: Path) -> tuple[float | None, dict[str, tuple[float, float, float]]]:
    """A user's price file: its batch_discount (None when unset) and (input, cached_input, output) per model.

    Raises ConfigError naming the file and what is wrong with it: a wrong price would silently
    pass or refuse runs under max_cost_usd."""
    where = f"prices file {path} (--prices or ${PRICES_ENV})"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist; fix the path, or unset it to use the shipped prices") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the {where}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        custom = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                          f"expected {_PRICES_SHAPE}") from None
    if not isinstance(custom, dict) or not isinstance(custom.get("models", {}), dict):
        raise ConfigError(f"{where} has the wrong shape; expected {_PRICES_SHAPE}")
    discount = custom.get("batch_discount")
    if discount is not None and (not _is_number(discount) or not 0 < discount <= 1):
        raise ConfigError(f"{where}: batch_discount must be a number above 0 and at most 1, got {json.dumps(discount)}")
    models = {}
    for model, price in custom.get("models", {}).items():
        try:
            models[model] = _model_price(price)
        except ValueError as exc:
            raise ConfigError(f"{where}: model {model!r} {exc}") from None
    return discount, models


def _model_price(price: object) -> tuple[float, float, float]:
    """(input, cached_input, output) USD per 1M tokens; cached input defaults to input, output to 0."""
    if not isinstance(price, dict) or "input" not in price:
        raise ValueError(f'needs a mapping like {{"input": 0.15, "output": 0.6}}, got {json.dumps(price)}')
    values = {"input": price["input"], "cached_input": price.get("cached_input", price["input"]),
              "output": price.get("output", 0.0)}
    for key, value in values.items():
        if not _is_number(value) or value < 0:
            raise ValueError(f"needs '{key}' as a number ≥ 0 (USD per 1M tokens), got {json.dumps(value)}")
    return float(values["input"]), float(values["cached_input"]), float(values["output"])


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def estimate(warehouse: Warehouse, todo_sql: str, endpoint: str) -> Estimate:
    """Tokens and cost of the requests `todo_sql` selects: one row per request with columns
    model, input_tokens and max_output (NULL: no max_tokens set). Priced per model, not per row."""
    default = endpoints.get(endpoint).default_output_tokens
    output = "0" if default == 0 else f"coalesce(max_output, {default})"
    rows = warehouse.rows(
        f"""
        WITH todo AS ({todo_sql}),
        per_model AS (
            SELECT model, count(*) AS requests, sum(input_tokens) AS input_tokens, sum({output}) AS output_tokens
            FROM todo GROUP BY model
        )
        SELECT m.model, m.requests, m.input_tokens, m.output_tokens,
               (m.input_tokens * p.input_per_1m + m.output_tokens * p.output_per_1m) * p.batch_discount / 1e6 AS cost
        FROM per_model AS m
        LEFT JOIN {SCHEMA}.prices AS p ON starts_with(m.model, p.model)
        QUALIFY row_number() OVER (PARTITION BY m.model ORDER BY length(p.model) DESC NULLS LAST) = 1
        """
    )
    unpriced = tuple(sorted(str(r["model"]) for r in rows if r["cost"] is None))
    return Estimate(
        requests=sum(int(r["requests"]) for r in rows),
        input_tokens=sum(int(r["input_tokens"] or 0) for r in rows),
        output_tokens=sum(int(r["output_tokens"] or 0) for r in rows),
        cost_usd=None if unpriced else float(sum(r["cost"] for r in rows)),
        unpriced_models=unpriced,
    )


def check_limits(job: Job, estimate: Estimate) -> None:
    """Refuse, before anything is written or sent, a run over the job's request or cost limits."""
    spend = "unknown" if estimate.cost_usd is None else f"${estimate.cost_usd:,.4f}"
    if job.max_requests is not None and estimate.requests > job.max_requests:
        raise JobError(
            f"job {job.name}: this run would send {estimate.requests:,} requests (estimated {spend}), over "
            f"max_requests = {job.max_requests:,}; nothing was sent. Raise --max-requests, or narrow the query"
        )
    if job.max_cost_usd is not None and estimate.requests:
        if estimate.cost_usd is None:
            raise JobError(
                f"job {job.name}: max_cost_usd is set but there is no price for model(s) "
                f"{', '.join(estimate.unpriced_models)}; add them to a prices file (--prices FILE or "
                f"${PRICES_ENV}); nothing was sent"
            )
        if estimate.cost_usd > job.max_cost_usd:
            raise JobError(
                f"job {job.name}: this run would send {estimate.requests:,} requests, estimated {spend} "
                f"({estimate.input_tokens:,} input + {estimate.output_tokens:,} output tokens; {ESTIMATE_METHOD}), "
                f"over max_cost_usd = ${job.max_cost_usd:,.4f}; nothing was sent"
            )
