"""The Python API. Each function is one CLI command (`warehouse-batch <name>`), with the same options.

Every function takes the warehouse as `db` (a DuckDB file path or an open connection) and these
keyword-only settings, the CLI's common flags:

    base_url      API base URL (default $OPENAI_BASE_URL, else OpenAI); the key is $OPENAI_API_KEY
    http_timeout  seconds per API call (default 120)
    work_dir      where shard and result files go (default <db>.warehouse_batch/)
    prices        a JSON price list overriding the shipped one
    lock_timeout  seconds to wait while another process holds the database (default 15)
    memory_limit  DuckDB memory limit (e.g. "2GB"); threads: DuckDB threads
    concurrency   provider calls in flight at once (default 4)
    daily_budget_usd  refuse runs that would take today's spend over this (default
                  $WAREHOUSE_BATCH_DAILY_BUDGET_USD, else the warehouse's setting, see `budget`)
    reporter      progress sink (the CLI passes a rich one; default silent)

A job whose step fails does not stop the others: its report carries `error` (and
`warehouse_batch.jobs.last_error` records it). `wait=True` with a `timeout` that runs out returns
reports whose `timed_out` is set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from warehouse_batch.jobs import Job
from warehouse_batch.progress import Reporter
from warehouse_batch.providers import ProviderSettings
from warehouse_batch.runner import Report, Runner
from warehouse_batch.warehouses import DEFAULT_LOCK_TIMEOUT, Database, open_warehouse

DEFAULT_DB = "warehouse.duckdb"


@contextlib.contextmanager
def open_runner(
    db: Database = DEFAULT_DB,
    *,
    base_url: str | None = None,
    http_timeout: float | None = None,
    work_dir: str | Path | None = None,
    prices: str | Path | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    reporter: Reporter | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
    concurrency: int = 4,
    read_only: bool = False,
    submit: bool = True,
    api_key: str | None = None,
    daily_budget_usd: float | None = None,
) -> Iterator[Runner]:
    """A Runner over an open warehouse, for scripts that chain several steps."""
    provider = ProviderSettings(base_url=base_url, http_timeout=http_timeout, api_key=api_key)
    warehouse = open_warehouse(db, work_dir=work_dir, memory_limit=memory_limit, threads=threads,
                               lock_timeout=lock_timeout, read_only=read_only)
    try:
        yield Runner(warehouse, provider, reporter=reporter, prices=prices, concurrency=concurrency, submit=submit,
                     daily_budget_usd=daily_budget_usd)
    finally:
        warehouse.close()


def load_job(job: Job | str | Path, **overrides: Any) -> Job:
    """A Job from a Job or a path to a `.sql` job file; keyword arguments override its options."""
    if isinstance(job, Job):
        return Job.from_options(job.to_options(), **overrides) if overrides else job
    return Job.from_file(job, **overrides)


def plan(job: Job | str | Path, db: Database = DEFAULT_DB, **settings: Any) -> Report:
    """Dry run: validate the rows; count requests, cache hits, shards, tokens and cost. Sends nothing."""
    overrides, settings = _split(settings)
    with open_runner(db, **settings) as runner:
        return runner.plan(load_job(job, **overrides))


def run(job: Job | str | Path, db: Database = DEFAULT_DB, *, wait: bool = False, poll_interval: float = 5.0,
        timeout: float | None = None, sample: int | None = None, seed: int = 0, **settings: Any) -> Report:
    """Compile, shard and submit a job; with wait=True also poll and collect until every batch ends.

    sample=N sends only a seeded sample of N requests (stratified by model), waits for it and
    reports its answers, actual and extrapolated cost (`report.sample`); the next run reuses them.
    Job options (model=..., params=..., max_cost_usd=...) may be given as keyword arguments too."""
    overrides, settings = _split(settings)
    with open_runner(db, **settings) as runner:
        return runner.run(load_job(job, **overrides), wait=wait, poll_interval=poll_interval, timeout=timeout,
                          sample=sample, seed=seed)


def collect(job_name: str, db: Database = DEFAULT_DB, *, wait: bool = False, poll_interval: float = 5.0,
            timeout: float | None = None, **settings: Any) -> Report:
    """Poll the job's batches, load finished ones and republish its output table."""
    with open_runner(db, **settings) as runner:
        if wait:
            return runner.wait(job_name, poll_interval=poll_interval, timeout=timeout)[0]
        runner.collect(job_name)
        return runner.job_report(job_name)


def sync(db: Database = DEFAULT_DB, *, wait: bool = False, retry: bool = False, poll_interval: float = 5.0,
         timeout: float | None = None, **settings: Any) -> list[Report]:
    """Advance every job: submit unsent shards, collect finished batches, (retry,) republish.

    Each job is handled on its own: one job's failure is in its report and the others go on."""
    with open_runner(db, **settings) as runner:
        runner.collect(None)
        if retry:
            runner.retry_jobs()
        if wait:
            return runner.wait(None, poll_interval=poll_interval, timeout=timeout)
        return runner.status()


def retry(job_name: str, db: Database = DEFAULT_DB, *, wait: bool = False, poll_interval: float = 5.0,
          timeout: float | None = None, **settings: Any) -> Report:
    """Send the job's expired, cancelled and transiently failed requests again (up to max_attempts)."""
    with open_runner(db, **settings) as runner:
        runner.collect(job_name)
        report = runner.retry(job_name)
        if wait:
            return runner.wait(job_name, poll_interval=poll_interval, timeout=timeout)[0]
        return report


def status(db: Database = DEFAULT_DB, job_name: str | None = None, **settings: Any) -> list[Report]:
    """Rows by status and batches of every job (or one). Opens the warehouse read-only; no provider calls."""
    settings.setdefault("read_only", True)
    with open_runner(db, **settings) as runner:
        return runner.status(job_name)


def budget(db: Database = DEFAULT_DB, usd: float | None = None, *, clear: bool = False,
           **settings: Any) -> dict[str, Any]:
    """The warehouse's daily budget and today's spend; `usd` stores a new budget (read by every client,
    dbt included), `clear=True` removes it. Explicit settings still win (daily_budget_usd=, the env)."""
    from warehouse_batch import cost

    settings.setdefault("read_only", usd is None and not clear)
    with open_runner(db, **settings) as runner:
        if clear or usd is not None:
            amount = None if clear else cost.budget_value(usd, "the budget")
            runner.ledger.set_setting(cost.BUDGET_SETTING, None if amount is None else repr(amount))
        limit = cost.daily_budget(runner.ledger, runner.daily_budget_usd)
        actual, in_flight = runner.ledger.spend_today()
    return {"daily_budget_usd": None if limit is None else limit.usd, "source": None if limit is None else limit.source,
            "spent_today_usd": actual, "in_flight_usd": in_flight,
            "remaining_usd": None if limit is None else limit.usd - actual - in_flight}


def cancel(job_name: str, db: Database = DEFAULT_DB, **settings: Any) -> Report:
    """Cancel the job's live batches. Answers already finished are kept (and paid for)."""
    with open_runner(db, **settings) as runner:
        return runner.cancel(job_name)


_SETTINGS = {"base_url", "http_timeout", "work_dir", "prices", "lock_timeout", "reporter", "memory_limit", "threads",
             "concurrency", "read_only", "submit", "api_key", "daily_budget_usd"}


def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(job option overrides, runner settings)."""
    settings = {k: v for k, v in kwargs.items() if k in _SETTINGS}
    overrides = {k: v for k, v in kwargs.items() if k not in _SETTINGS}
    return overrides, settings
