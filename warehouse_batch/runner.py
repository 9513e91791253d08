"""The one orchestrator: plan → shard → submit → poll → collect → publish, for the CLI, the Python
API, dbt and the demo alike (switches: `submit=False` holds shards, `publish=False` skips tables).

Each step reads its input from the ledger and records its outcome there before the next begins,
so a run killed anywhere resumes without sending anything twice. Jobs are isolated: a step that
fails for one job is recorded on that job (`jobs.last_error`, the report) and the others go on.
While waiting for batches the warehouse is released, so readers are never locked out.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from warehouse_batch import compile as compiler
from warehouse_batch import bodies, cost, estimates, publish, sampling, shards
from warehouse_batch.batches import Batches
from warehouse_batch.estimates import Estimate
from warehouse_batch.errors import ProviderError, StoppedError, ValidationError, WarehouseBatchError, is_interrupt
from warehouse_batch.failpoints import failpoint
from warehouse_batch.jobs import Job
from warehouse_batch.ledger import Ledger
from warehouse_batch.names import rows_table, temp_table
from warehouse_batch.progress import NullReporter, Reporter
from warehouse_batch.providers import BatchProvider, ProviderSettings
from warehouse_batch.warehouses.base import Warehouse


@dataclass
class Counts:
    """How a job's rows and requests split up."""

    rows: int = 0
    requests: int = 0
    cached: int = 0
    in_flight: int = 0
    to_submit: int = 0
    shards: int = 0
    # Estimates of the requests to submit (see estimates.py); costs are None when a model has no price.
    est_input_tokens: int = 0
    input_tokens_method: str = ""  # "exact", or "sample of N, ±x%"
    est_output_tokens_expected: int = 0
    est_output_tokens_upper_bound: int = 0
    output_tokens_method: str = ""  # history of answers, or which prior
    cost_usd_expected: float | None = None
    cost_usd_upper_bound: float | None = None
    est_output_tokens: int = 0  # = est_output_tokens_upper_bound (kept for scripts written before 0.3)
    est_cost_usd: float | None = None  # = cost_usd_upper_bound (kept for scripts written before 0.3)
    sample_size: int | None = None  # run --sample N


@dataclass
class Report:
    """What a command did; `to_dict()` is the `--json` output."""

    job: str | None = None
    run_id: str | None = None
    counts: Counts | None = None
    batches: list[dict[str, Any]] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    table: str | None = None
    dry_run: bool = False
    progress: dict[str, Any] | None = None  # live batches: requests done / total, estimated seconds left
    error: str | None = None  # why the last step of this job failed (other jobs went on)
    warnings: list[str] = field(default_factory=list)  # e.g. an earlier version's requests still in flight
    timed_out: bool = False  # --timeout ran out with batches still running
    sample: dict[str, Any] | None = None  # run --sample: its answers, actual and extrapolated cost
    estimates: list[dict[str, Any]] = field(default_factory=list)  # latest runs: estimate vs actual

    @property
    def unfinished(self) -> int:
        return self.statuses.get("pending", 0)

    @property
    def unsuccessful(self) -> int:
        return sum(n for s, n in self.statuses.items() if s not in ("completed", "pending"))

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "counts"}
        out["counts"] = None if self.counts is None else dict(self.counts.__dict__)
        return json.loads(json.dumps(out, default=str))


class Runner:
    """Drives jobs in one warehouse against one provider."""

    def __init__(
        self,
        warehouse: Warehouse,
        provider: BatchProvider | ProviderSettings | None = None,
        *,
        reporter: Reporter | None = None,
        prices: str | Path | None = None,
        concurrency: int = 4,
        submit: bool = True,
        daily_budget_usd: float | cost.DailyBudget | None = None,
    ):
        self.warehouse = warehouse
        self.ledger = Ledger(warehouse)
        if isinstance(provider, ProviderSettings) or provider is None:
            self._provider: BatchProvider | None = None
            self._provider_settings = provider or ProviderSettings()
        else:
            self._provider, self._provider_settings = provider, ProviderSettings()
        self._providers: dict[str, BatchProvider] = {}  # per job `provider` option, made on first use
        self.reporter = reporter or NullReporter()
        #: False: shards are written and recorded but not sent (dbt's `submit: false`, CI builds).
        self.submit_enabled = submit
        #: Overrides $WAREHOUSE_BATCH_DAILY_BUDGET_USD and the warehouse's setting (cost.daily_budget).
        self.daily_budget_usd = daily_budget_usd
        self.batches = Batches(self.ledger, self.provider_named, self.reporter, self.ledger.job,
                               work_dir=warehouse.work_dir, concurrency=concurrency)
        if not warehouse.read_only:
            cost.load_prices(warehouse, prices)
            self.ledger.alias_prices()
        #: Per job: the error of its last failed step in this process (see `collect`).
        self.failures: dict[str, WarehouseBatchError] = {}
        #: An extra spending rule checked with the cost limits, before anything is recorded or sent
        #: (the worker's per-definer budget); raises JobError to refuse the run.
        self.guard: Callable[[Job, Estimate], None] | None = None

    @property
    def provider(self) -> BatchProvider:
        return self.provider_named(None)

    def provider_named(self, name: str | None) -> BatchProvider:
        """The provider a job names (None: the settings' own); created on first use, so plan/status
        never need an API key. A provider object given to the Runner serves every job."""
        if self._provider is not None:
            return self._provider
        name = name or self._provider_settings.name
        if name not in self._providers:
            self._providers[name] = self._provider_settings.named(name).make()
        return self._providers[name]

    # -- plan ------------------------------------------------------------------------------
    def plan(self, job: Job) -> Report:
        """Dry run: compile and validate, count what would be sent. Writes nothing that stays."""
        publish.check_target(self.warehouse, self.ledger, job)
        self.ledger.alias_prices([job])
        self.reporter.step("planning rows")
        stage = compiler.compile_job(self.warehouse, job, nonce=None if job.cache else "dry-run")
        try:
            self._check_request_limits(stage)
            counts, _ = self._stage_counts(stage)
            with temp_table(self.warehouse, shards.PLAN):
                counts.shards = shards.plan_job(
                    self.warehouse, job, self.ledger.stage_todo_sql(stage.table, job.endpoint), rows=stage.table,
                    columns=stage.columns, max_tokens=self.batches.shard_token_cap(job),
                )
        finally:
            compiler.drop_stage(self.warehouse, job)
        self.reporter.done()
        return Report(job=job.name, counts=counts, dry_run=True)

    # -- run -------------------------------------------------------------------------------
    def run(self, job: Job, *, wait: bool = False, poll_interval: float = 5.0, timeout: float | None = None,
            publish_table: bool = True, sample: int | None = None, seed: int = 0) -> Report:
        """Plan, shard and submit a job, then (with wait) poll and collect until every batch ends.

        With `sample`, only a seeded sample of that many requests (stratified by model) is sent and
        waited for; the report's `sample` shows their answers, actual and extrapolated cost, and the
        other rows stay pending until the next run, which reuses the sample's answers.

        Interrupted (SIGINT/SIGTERM) after its rows are recorded, it still publishes the output table
        with the rows in flight `pending`, then raises StoppedError; the same command resumes."""
        if sample is not None:
            sampling.check(job, sample)
            wait = True
        publish.check_target(self.warehouse, self.ledger, job)
        # cache: false salts every hash with the run id, so the run matches nothing before it; resuming
        # an unfinished uncached run re-uses its salt, so what it already sent is not sent again.
        run_id = (None if job.cache else self.ledger.open_uncached_run(job.name)) or _new_run_id()
        self.ledger.alias_prices([job])
        self.reporter.step("planning rows")
        stage = compiler.reuse_rows(self.warehouse, job, self.ledger.rows_fingerprint(job.name)) \
            or compiler.compile_job(self.warehouse, job, nonce=None if job.cache else run_id)
        try:
            self._check_request_limits(stage)
            counts, estimate = self._stage_counts(stage)
            if sample is not None:
                full = counts
                models = sampling.pick(self.warehouse, self.ledger.stage_todo_sql(stage.table, job.endpoint),
                                       sample, seed)
                counts, estimate = self._stage_counts(stage, only=sampling.restrict)
                counts.sample_size = sample
            cost.check_limits(job, estimate)
            cost.check_daily_budget(self.ledger, job, estimate, cost.daily_budget(self.ledger, self.daily_budget_usd))
            if self.guard is not None:
                self.guard(job, estimate)
            warnings = self._stale_requests_warning(job, stage)
            self._check_token_budget(stage)
            if counts.to_submit and self.submit_enabled:
                self.provider_named(job.provider)  # a missing key or bad URL is reported before any shard is written
            fingerprint = stage.fingerprint or stage.digest or compiler.rows_fingerprint(
                self.warehouse, job, stage.columns, f"{stage.table} AS q", None if job.cache else run_id)
            self.ledger.begin_run(job, run_id, stage.table, counts.__dict__, fingerprint=fingerprint,
                                  reuse_rows=stage.reused)
            self._succeeded(job.name)  # a new run supersedes the last one's error
        finally:
            compiler.drop_stage(self.warehouse, job)
        failpoint("after_plan")
        self.reporter.info(
            f"{counts.rows:,} rows → {counts.requests:,} distinct requests: {counts.cached:,} already answered, "
            f"{counts.in_flight:,} in flight, {counts.to_submit:,} to send"
        )
        report: Report | None = None
        try:
            todo = self.ledger.todo_sql(job)
            # Nothing to send (an unchanged re-run): the counts above already proved it, with the
            # same predicate as todo_sql, in this same writer; skip planning an empty set of shards.
            written = self._shard(job, run_id, todo if sample is None else sampling.restrict(todo)) \
                if counts.to_submit else []
            counts.shards = len(written)
            self.ledger.run_submitted(run_id, len(written))
            try:
                self.submit(job.name)
            except ProviderError as exc:
                if not (wait and exc.transient):
                    raise
                self._failed(job.name, exc)  # the wait below keeps trying
            if publish_table:  # readers see the table, rows in flight `pending`, while we wait
                self.publish(job)
            if wait:
                report = self.wait(job.name, poll_interval=poll_interval, timeout=timeout, publish_tables=publish_table)[0]
        except WarehouseBatchError as exc:
            self._failed(job.name, exc)
            if publish_table:  # the rows exist: show them (pending) even though a step failed
                self._publish_quietly(job)
            raise
        except BaseException as exc:
            if not is_interrupt(exc):
                raise
            if publish_table:
                self._publish_quietly(job)
            raise StoppedError(
                f"stopped; job {job.name}'s rows are recorded and its table shows what is in flight as pending. "
                f"Run the same command again (or `warehouse-batch collect {job.name}`) to continue"
            ) from None
        # The wait ended with this job's report: building it twice cost seconds at 1M rows.
        final = report if report is not None else self.job_report(job.name)
        final.run_id, final.counts, final.warnings = run_id, counts, warnings
        final.timed_out = bool(report and report.timed_out)
        self.ledger.run_finished(run_id, finished=final.unfinished == 0)
        if sample is not None:
            final.sample = sampling.summary(self.warehouse, self.ledger, job, run_id, models, full)
        return final

    def _stale_requests_warning(self, job: Job, stage: compiler.Stage) -> list[str]:
        """A changed job leaves its old requests in flight (and paid for): say so, with the way out."""
        stale = self.ledger.stale_in_flight(job.name, stage.table)
        if not stale:
            return []
        message = (
            f"{stale:,} request(s) of an earlier version of job {job.name} are still in live batches and will be "
            f"paid for although no row asks for them any more; `warehouse-batch cancel {job.name}` stops them "
            "(cancel also stops this run's new batches: run again afterwards)"
        )
        self.reporter.info(f"warning: {message}")
        return [message]

    def _publish_quietly(self, job: Job) -> None:
        """Publish on the way out of an interrupted run; a second failure must not hide the first."""
        try:
            self.publish(job)
        except (Exception, KeyboardInterrupt):  # best effort on the way out; the next command publishes
            pass

    def _stage_counts(self, stage: compiler.Stage, only: Callable[[str], str] | None = None,
                      ) -> tuple[Counts, Estimate]:
        """Split the stage's requests into cached / in flight / to submit, and estimate the latter
        (`only` narrows them, e.g. to a sample)."""
        cached, in_flight, to_submit = self.ledger.stage_counts(stage.table)
        todo = self.ledger.stage_todo_sql(stage.table, stage.job.endpoint)
        e = estimates.estimate_stage(self.warehouse, stage.table, todo if only is None else only(todo), stage.job,
                                     stage.columns)
        counts = Counts(
            rows=stage.row_count, requests=stage.request_count, cached=cached, in_flight=in_flight,
            to_submit=to_submit if only is None else e.requests, est_input_tokens=e.input_tokens,
            input_tokens_method=e.input_method, est_output_tokens_expected=e.output_expected,
            est_output_tokens_upper_bound=e.output_upper_bound, output_tokens_method=e.output_method,
            cost_usd_expected=e.cost_usd_expected, cost_usd_upper_bound=e.cost_usd_upper_bound,
            est_output_tokens=e.output_upper_bound, est_cost_usd=e.cost_usd_upper_bound,
        )
        return counts, e

    def _check_token_budget(self, stage: compiler.Stage) -> None:
        """A request that alone exceeds the enqueued-token budget could never be submitted: refuse it now."""
        budget = stage.job.max_enqueued_tokens
        if budget is None:
            return
        problems = compiler.offenders(
            self.warehouse, stage.table, f"__wb_tokens + coalesce(__wb_max_output, 0) > {int(budget)}",
            f"need more tokens (estimated input + max_tokens) than max_enqueued_tokens = {budget:,}",
        )
        if problems:
            raise ValidationError(problems)

    def _check_request_limits(self, stage: compiler.Stage) -> None:
        problems = shards.check_request_limits(self.warehouse, stage.job, stage.table, stage.columns)
        if problems:
            raise ValidationError(problems)

    def _shard(self, job: Job, run_id: str, todo_sql: str, *, replace_results: bool = False) -> list[shards.ShardFile]:
        """Write shard files for the requests `todo_sql` selects, then record them in one transaction.

        Lines are built again from the job's rows table (bodies are never stored)."""
        with temp_table(self.warehouse, shards.PLAN) as plan:
            rows = rows_table(job.name)
            columns = {r[0]: r[1] for r in self.warehouse.execute(f"DESCRIBE {rows}").fetchall()
                       if not r[0].startswith("__wb_")}
            count = shards.plan_job(self.warehouse, job, todo_sql, rows=rows, columns=columns,
                                    max_tokens=self.batches.shard_token_cap(job))
            if count == 0:
                return []
            prefix = f"{job.name}-{run_id}-"
            ids = {n: f"{prefix}{n:04d}" for n in range(1, count + 1)}
            body = bodies.build(job, columns).body
            total = self.warehouse.scalar(f"SELECT count(*) FROM {plan.name}")
            self.reporter.step("writing shards", total)
            runs, recorded = self.ledger.recorded_shards(job.name)
            freed = shards.remove_unrecorded(self.shard_dir(job.name), [f"{job.name}-{r}-" for r in runs], recorded)
            if freed:
                self.reporter.info(f"removed {freed / 1e6:,.1f} MB of shard files that a stopped run wrote "
                                   "but never recorded")
            index = self.shard_dir(job.name) / f"{prefix}lines.parquet"
            written = shards.write_shards(self.warehouse, self.shard_dir(job.name), ids, rows=rows, body_sql=body,
                                          lines_index=index, progress=self.reporter.advance)
            self.reporter.done()
            failpoint("after_shards_written")
            self.ledger.record_shards(job, run_id, written, plan.name, index, replace_results=replace_results)
            index.unlink(missing_ok=True)  # recorded in request_shards
        failpoint("after_shards_recorded")
        self.reporter.info(f"wrote {len(written)} shard(s) to {self.shard_dir(job.name)}")
        return written

    def shard_dir(self, job_name: str) -> Path:
        return self.batches.shard_dir(job_name)

    # -- provider lifecycle ----------------------------------------------------------------
    def submit(self, job_name: str | None = None) -> int:
        """Upload and create batches for shards not yet submitted (resuming announced intents)."""
        return self.batches.submit(job_name) if self.submit_enabled else 0

    def collect(self, job_name: str | None = None, *, always_publish: bool = True, publish_tables: bool = True,
                jobs: set[str] | None = None) -> int:
        """For each job (one, the given set, or all): poll, download and load its finished batches,
        submit what is pending, republish its table. Returns how many batches were collected.

        Collecting first frees enqueued-token budget for the shards still waiting. A job whose step
        fails is recorded as failed (its error in `failures`, `jobs.last_error`) and the others go on."""
        names = sorted(jobs) if jobs is not None else self._job_names(job_name)
        collected = 0
        for name in names:
            try:
                ready = self.batches.poll(name)
                self.batches.collect(ready)
                self.submit(name)
                if publish_tables and (ready or always_publish):
                    self.publish(self.ledger.job(name))
                collected += len(ready)
                self._succeeded(name)
            except WarehouseBatchError as exc:
                self._failed(name, exc)
        return collected

    def _succeeded(self, name: str) -> None:
        self.failures.pop(name, None)
        if self.ledger.job_error(name) is not None:
            self.ledger.set_job_error(name, None)

    def _failed(self, name: str, exc: WarehouseBatchError) -> None:
        self.failures[name] = exc
        self.reporter.info(f"job {name}: {exc}")
        try:
            self.ledger.set_job_error(name, str(exc))
        except WarehouseBatchError:
            pass

    def publish(self, job: Job) -> str:
        return publish.publish(self.warehouse, self.ledger, job)

    def wait(self, job_name: str | None, *, poll_interval: float = 5.0, timeout: float | None = None,
             max_interval: float = 60.0, publish_tables: bool = True) -> list[Report]:
        """Collect until no batch of the job(s) is live (or `timeout` seconds pass), backing off
        between polls with the warehouse released. A provider that is unreachable for a while is
        retried (with back-off) until the timeout; tables are rebuilt whenever answers arrive, and
        once at the end. Returns the reports; `timed_out` is set when time ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = poll_interval
        timed_out = False
        while True:
            names = self._job_names(job_name)
            self.collect(job_name, always_publish=False, publish_tables=publish_tables)
            # Shards deferred by provider trouble (quota, a spurious failure) are still to come.
            with_batches = self.ledger.live_job_names()
            live = {n for n in names if n in with_batches or (self.submit_enabled and self.ledger.deferred(n))}
            failed = {n: e for n, e in self.failures.items() if n in names}
            outage = {n for n, e in failed.items() if e.transient}
            # A job that fails for a reason of its own stops being waited for; an outage is waited out.
            if not (live - set(failed)) | outage:
                break
            if outage:
                self.reporter.info(f"trying again in {interval:.0f} s: {next(iter(failed.values()))}")
            progress = self.ledger.progress(job_name)
            if progress["live_batches"]:
                eta = f", about {progress['eta_seconds']:,} s left" if progress["eta_seconds"] is not None else ""
                self.reporter.info(f"{progress['live_batches']} batch(es) running: "
                                   f"{progress['done']:,}/{progress['total']:,} requests done{eta}")
            if deadline is not None and time.monotonic() + interval > deadline:
                timed_out = True
                break
            # At least as long as the providers ask between status checks (Azure: 60 s).
            interval = max(interval, self.batches.min_poll_interval(live or names))
            with self.warehouse.released():  # readers and other writers get in while we sleep
                time.sleep(interval)
            interval = min(interval * 1.5, max_interval)
        if publish_tables:
            for name in self._job_names(job_name):
                try:
                    self.publish(self.ledger.job(name))
                except WarehouseBatchError as exc:
                    self._failed(name, exc)
        reports = self.status(job_name)
        for report in reports:
            report.timed_out = timed_out and bool(report.progress and report.progress["live_batches"])
        return reports

    def collect_related(self, job_name: str, *, publish_tables: bool = False) -> set[str]:
        """Collect the batches of every job holding requests this job's rows need (itself, a renamed
        model's old job, another job that asked the same question first). Returns those jobs."""
        related = self.ledger.related_jobs(job_name)
        self.collect(jobs=related, publish_tables=publish_tables)
        return related

    # -- retry -----------------------------------------------------------------------------
    def retry_jobs(self, names: list[str] | None = None) -> None:
        """`retry` each job (default: every job that did not just fail), each on its own."""
        for name in names if names is not None else self.ledger.job_names():
            if name in self.failures:
                continue
            try:
                self.retry(name)
            except WarehouseBatchError as exc:
                self._failed(name, exc)

    def retry(self, job_name: str) -> Report:
        """Send the job's retryable requests again (expired, cancelled, transient failures), in new shards.

        Requests that reached max_attempts, and terminal failures (the provider rejected the request
        itself: fix the job, which changes the request), are left as they are."""
        job = self.ledger.job(job_name)
        run_id = _new_run_id()
        exhausted = self.ledger.count(self.ledger.retryable_sql(job, exhausted=True))
        self.ledger.begin_retry(run_id, job.name)
        written = self._shard(job, run_id, self.ledger.retryable_sql(job, exhausted=False), replace_results=True)
        sent = sum(f.line_count for f in written)
        self.ledger.retry_done(run_id, sent, len(written))
        self.reporter.info(
            f"retrying {sent:,} request(s) in {len(written)} shard(s)"
            + (f"; {exhausted:,} reached max_attempts = {job.max_attempts} and stay as they are" if exhausted else "")
        )
        self.submit(job.name)
        self.publish(job)
        self._succeeded(job.name)
        report = self.job_report(job.name)
        report.run_id = run_id
        return report

    # -- cancel ----------------------------------------------------------------------------
    def cancel(self, job_name: str) -> Report:
        """Cancel the job's live batches; unsubmitted shards are dropped. Finished work is kept."""
        job = self.ledger.job(job_name)
        self.batches.cancel(job_name)
        self.publish(job)
        self._succeeded(job_name)
        return self.job_report(job_name)

    # -- reports ---------------------------------------------------------------------------
    def job_report(self, job_name: str) -> Report:
        job = self.ledger.job(job_name)
        failure = self.failures.get(job_name)
        return Report(job=job_name, batches=self.ledger.batches_of(job_name), statuses=self.ledger.statuses(job_name),
                      table=job.target_table, progress=self.ledger.progress(job_name),
                      error=str(failure) if failure else self.ledger.job_error(job_name),
                      estimates=self.ledger.estimate_vs_actual(job_name))

    def status(self, job_name: str | None = None) -> list[Report]:
        return [self.job_report(name) for name in self._job_names(job_name)]

    def _job_names(self, job_name: str | None) -> list[str]:
        if job_name is not None:
            self.ledger.job(job_name)  # NotFoundError names the known jobs
            return [job_name]
        return self.ledger.job_names()


def _new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


__all__ = ["Counts", "Report", "Runner"]
