"""The Python API. Each function is one CLI command (`warehouse-batch <name>`), with the same options."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from warehouse_batch.jobs import Job
from warehouse_batch.progress import Reporter
from warehouse_batch.providers.openai import OpenAIBatchProvider
from warehouse_batch.runner import Report, Runner
from warehouse_batch.store import Store

DEFAULT_DB = "warehouse.duckdb"


@contextlib.contextmanager
def _runner(
    db: str | Path | duckdb.DuckDBPyConnection,
    *,
    base_url: str | None = None,
    work_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
    http_timeout: float | None = None,
) -> Iterator[Runner]:
    def provider() -> OpenAIBatchProvider:
        return OpenAIBatchProvider(base_url=base_url, **({"timeout": http_timeout} if http_timeout else {}))

    with Store(db, work_dir=work_dir, memory_limit=memory_limit, threads=threads) as store:
        yield Runner(store, reporter=reporter, provider_factory=provider)


def load_job(job: Job | str | Path, **overrides: Any) -> Job:
    """A Job from a Job, a path to a `.sql` job file, or (with query=...) options alone."""
    if isinstance(job, Job):
        return Job.from_options(job.to_options(), **overrides) if overrides else job
    return Job.from_file(job, **overrides)


def plan(job: Job | str | Path, db: str | Path | duckdb.DuckDBPyConnection = DEFAULT_DB, *, reporter: Reporter | None = None,
         work_dir: str | Path | None = None, **overrides: Any) -> Report:
    """Dry run: validate the rows and count requests, cache hits and shards. Sends and writes nothing."""
    with _runner(db, work_dir=work_dir, reporter=reporter) as runner:
        return runner.plan(load_job(job, **overrides))


def run(job: Job | str | Path, db: str | Path | duckdb.DuckDBPyConnection = DEFAULT_DB, *, base_url: str | None = None, http_timeout: float | None = None, wait: bool = False,
        poll_interval: float = 5.0, timeout: float | None = None, reporter: Reporter | None = None,
        work_dir: str | Path | None = None, **overrides: Any) -> Report:
    """Compile, shard and submit a job; with wait=True also poll and collect until every batch ends."""
    with _runner(db, base_url=base_url, work_dir=work_dir, reporter=reporter, http_timeout=http_timeout) as runner:
        return runner.run(load_job(job, **overrides), wait=wait, poll_interval=poll_interval, timeout=timeout)


def collect(job_name: str, db: str | Path | duckdb.DuckDBPyConnection = DEFAULT_DB, *, base_url: str | None = None, http_timeout: float | None = None, wait: bool = False,
            poll_interval: float = 5.0, timeout: float | None = None, reporter: Reporter | None = None,
            work_dir: str | Path | None = None) -> Report:
    """Poll the job's batches, load finished ones and republish its output table."""
    with _runner(db, base_url=base_url, work_dir=work_dir, reporter=reporter, http_timeout=http_timeout) as runner:
        if wait:
            runner.wait(job_name, poll_interval=poll_interval, timeout=timeout)
        else:
            runner.collect(job_name)
        return runner.job_report(job_name)


def sync(db: str | Path | duckdb.DuckDBPyConnection = DEFAULT_DB, *, base_url: str | None = None, http_timeout: float | None = None, wait: bool = False,
         poll_interval: float = 5.0, timeout: float | None = None, reporter: Reporter | None = None,
         work_dir: str | Path | None = None) -> list[Report]:
    """Advance every job of the warehouse: submit unsent shards, collect finished batches, republish."""
    with _runner(db, base_url=base_url, work_dir=work_dir, reporter=reporter, http_timeout=http_timeout) as runner:
        if wait:
            runner.wait(None, poll_interval=poll_interval, timeout=timeout)
        else:
            runner.collect(None)
        return runner.status()


def status(db: str | Path | duckdb.DuckDBPyConnection = DEFAULT_DB, job_name: str | None = None, *, work_dir: str | Path | None = None) -> list[Report]:
    """Rows by status and batches of every job (or one). Reads the warehouse only; no provider calls."""
    with _runner(db, work_dir=work_dir) as runner:
        return runner.status(job_name)


def cancel(job_name: str, db: str | Path | duckdb.DuckDBPyConnection = DEFAULT_DB, *, base_url: str | None = None, http_timeout: float | None = None,
           reporter: Reporter | None = None, work_dir: str | Path | None = None) -> Report:
    """Cancel the job's live batches. Answers already finished are kept (and paid for)."""
    with _runner(db, base_url=base_url, work_dir=work_dir, reporter=reporter, http_timeout=http_timeout) as runner:
        return runner.cancel(job_name)
