"""Prices, and the guards that refuse a run over its limits or over the warehouse's daily budget.

The estimates the guards compare are made in `estimates.py` (exact input tokens, expected and
upper-bound output); actual spend comes from each answer's `usage` (the `result_costs` view).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from warehouse_batch.errors import ConfigError, JobError
from warehouse_batch.estimates import Estimate
from warehouse_batch.jobs import Job
from warehouse_batch.ledger import Ledger
from warehouse_batch.names import SCHEMA
from warehouse_batch.warehouses.base import Warehouse

PRICES_ENV = "WAREHOUSE_BATCH_PRICES"
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


BUDGET_ENV = "WAREHOUSE_BATCH_DAILY_BUDGET_USD"
BUDGET_SETTING = "daily_budget_usd"


def usd(value: float | None) -> str:
    """A cost for people: cents of small jobs stay visible."""
    if value is None:
        return "unknown (no price for the model)"
    return f"${value:,.4f}" if value >= 0.01 or value == 0 else f"${value:.6f}"


def _spend(estimate: Estimate) -> str:
    """Both figures of an estimate, for messages."""
    if estimate.cost_usd_expected is None or estimate.cost_usd_upper_bound is None:
        return f"unknown (no price for {', '.join(estimate.unpriced_models)})"
    return f"{usd(estimate.cost_usd_expected)} expected, {usd(estimate.cost_usd_upper_bound)} upper bound"


def check_limits(job: Job, estimate: Estimate) -> None:
    """Refuse, before anything is written or sent, a run over the job's request or cost limits.

    max_cost_usd compares the figure the job's `cost_guard` names: the expected cost (default) or the
    upper bound (every request answering up to its max_tokens)."""
    if job.max_requests is not None and estimate.requests > job.max_requests:
        raise JobError(
            f"job {job.name}: this run would send {estimate.requests:,} requests (estimated {_spend(estimate)}), over "
            f"max_requests = {job.max_requests:,}; nothing was sent. Raise --max-requests, or narrow the query"
        )
    if job.max_cost_usd is not None and estimate.requests:
        _require_prices(job, estimate, "max_cost_usd")
        figure = estimate.cost(job.cost_guard)
        if figure is not None and figure > job.max_cost_usd:
            raise JobError(
                f"job {job.name}: this run would send {estimate.requests:,} requests, estimated {_spend(estimate)} "
                f"({estimate.input_tokens:,} input tokens, {estimate.input_method}; {estimate.output_expected:,} output "
                f"tokens expected, {estimate.output_upper_bound:,} at most). The {job.cost_guard.replace('_', ' ')} "
                f"cost is over max_cost_usd = {usd(job.max_cost_usd)} (cost_guard: {job.cost_guard}); nothing was "
                f"sent. Raise --max-cost-usd, narrow the query, or measure it with `run --sample N` first"
            )


def _require_prices(job: Job, estimate: Estimate, limit: str) -> None:
    if estimate.cost_usd_expected is None:
        raise JobError(
            f"job {job.name}: {limit} is set but there is no price for model(s) "
            f"{', '.join(estimate.unpriced_models)}; add them to a prices file (--prices FILE or "
            f"${PRICES_ENV}); nothing was sent"
        )


@dataclass(frozen=True)
class DailyBudget:
    """A warehouse's spending limit per UTC day, and where it was set."""

    usd: float
    source: str  # --daily-budget-usd, $WAREHOUSE_BATCH_DAILY_BUDGET_USD, or the warehouse setting


def daily_budget(ledger: Ledger, explicit: float | DailyBudget | None = None) -> DailyBudget | None:
    """The budget that applies: the flag (or Python argument, or a DailyBudget naming its own source,
    e.g. dbt's plugin setting), else the environment, else the one stored in the warehouse
    (`warehouse-batch budget AMOUNT`), so dbt and every client share it."""
    if isinstance(explicit, DailyBudget):
        return explicit
    if explicit is not None:
        return DailyBudget(budget_value(explicit, "--daily-budget-usd"), "--daily-budget-usd")
    if os.environ.get(BUDGET_ENV, "").strip():
        return DailyBudget(budget_value(os.environ[BUDGET_ENV], f"${BUDGET_ENV}"), f"${BUDGET_ENV}")
    stored = ledger.setting(BUDGET_SETTING)
    if stored is None:
        return None
    return DailyBudget(budget_value(stored, "the warehouse setting daily_budget_usd"),
                       "the warehouse setting (warehouse-batch budget)")


def budget_value(value: object, where: str) -> float:
    try:
        amount = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        amount = math.nan
    if not math.isfinite(amount) or amount < 0:
        raise ConfigError(f"{where} must be a number of US dollars ≥ 0, got {value!r}")
    return amount


def check_daily_budget(ledger: Ledger, job: Job, estimate: Estimate, budget: DailyBudget | None) -> None:
    """Refuse a run whose cost (the cost_guard figure) plus today's spend would exceed the daily budget.

    Today's spend is what answers received today (UTC) cost, plus the expected cost of requests
    still in flight (sent, or written and waiting to be sent), across every job of the warehouse."""
    if budget is None or not estimate.requests:
        return
    _require_prices(job, estimate, "a daily budget")
    figure = estimate.cost(job.cost_guard) or 0.0
    actual, in_flight = ledger.spend_today()
    if actual + in_flight + figure > budget.usd:
        raise JobError(
            f"job {job.name}: the daily budget of {usd(budget.usd)} (from {budget.source}) would be exceeded: today "
            f"(UTC) {usd(actual)} was spent and {usd(in_flight)} is in flight, and this run's "
            f"{job.cost_guard.replace('_', ' ')} cost is {usd(figure)} (estimated {_spend(estimate)}), "
            f"{usd(actual + in_flight + figure)} in all; nothing was "
            "sent. Wait for tomorrow, narrow the query, or raise the budget (--daily-budget-usd, "
            f"${BUDGET_ENV}, or `warehouse-batch budget AMOUNT`)"
        )
