"""The state machine of a run: plan → shard → submit → poll → collect → publish.

Each step reads its input from the store and records its outcome there before the next begins;
side effects at the provider are announced (state `uploading`/`creating`, committed) before they
happen and recorded after, so a run killed anywhere resumes without sending anything twice.
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
from warehouse_batch import bodies, cost, results, retries, shards
from warehouse_batch.batches import Batches
from warehouse_batch.errors import NotFoundError, ValidationError
from warehouse_batch.failpoints import failpoint
from warehouse_batch.jobs import Job
from warehouse_batch.progress import NullReporter, Reporter
from warehouse_batch.providers.openai import OpenAIBatchProvider
from warehouse_batch.store import SCHEMA, Store

@dataclass
class Counts:
    """How a job's rows and requests split up."""

    rows: int = 0
    requests: int = 0
    cached: int = 0
    in_flight: int = 0
    to_submit: int = 0
    shards: int = 0
    est_input_tokens: int = 0  # of the requests to submit; see cost.ESTIMATE_METHOD
    est_output_tokens: int = 0
    est_cost_usd: float | None = None  # None when a model has no price


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
        store: Store,
        provider: OpenAIBatchProvider | None = None,
        *,
        reporter: Reporter | None = None,
        provider_factory: Callable[[], OpenAIBatchProvider] | None = None,
        prices: str | Path | None = None,
        concurrency: int = 4,
    ):
        self.store = store
        self._provider = provider
        self._provider_factory = provider_factory or OpenAIBatchProvider
        self.reporter = reporter or NullReporter()
        self.batches = Batches(store, lambda: self.provider, self.reporter, self._job, concurrency=concurrency)
        cost.load_prices(store, prices)

    @property
    def provider(self) -> OpenAIBatchProvider:
        # Created on first use, so plan/status never need an API key.
        if self._provider is None:
            self._provider = self._provider_factory()
        return self._provider

    # -- plan ------------------------------------------------------------------------------
    def plan(self, job: Job) -> Report:
        """Dry run: compile and validate, count what would be sent. Writes nothing that stays."""
        self.reporter.step("planning rows")
        stage = compiler.compile_job(self.store, job, nonce=None if job.cache else "dry-run")
        try:
            counts = self._stage_counts(stage)
            counts.shards = shards.plan_shards(
                self.store, self._stage_todo_sql(stage), max_lines=job.max_requests_per_shard,
                max_bytes=job.max_bytes_per_shard, max_tokens=job.max_enqueued_tokens,
            )
        finally:
            self.store.execute(f"DROP TABLE IF EXISTS temp.{shards.PLAN}")
            compiler.drop_stage(self.store, job)
        self.reporter.done()
        return Report(job=job.name, counts=counts, dry_run=True)

    # -- run -------------------------------------------------------------------------------
    def run(self, job: Job, *, wait: bool = False, poll_interval: float = 5.0, timeout: float | None = None) -> Report:
        """Plan, shard and submit a job, then (with wait) poll and collect until every batch ends."""
        run_id = _new_run_id()
        self.reporter.step("planning rows")
        # cache: false salts every hash with the run id, so this run's requests match nothing before it.
        stage = compiler.compile_job(self.store, job, nonce=None if job.cache else run_id)
        try:
            counts = self._stage_counts(stage)
            cost.check_limits(job, self._estimate)
            self._check_token_budget(stage)
            self._persist(job, run_id, stage, counts)
        finally:
            compiler.drop_stage(self.store, job)
        failpoint("after_plan")
        self.reporter.info(
            f"{counts.rows:,} rows → {counts.requests:,} distinct requests: {counts.cached:,} already answered, "
            f"{counts.in_flight:,} in flight, {counts.to_submit:,} to send"
        )
        written = self._shard(job, run_id, self._todo_sql(job))
        counts.shards = len(written)
        self.store.execute(
            f"UPDATE {SCHEMA}.runs SET shard_count = ?, status = 'submitted' WHERE run_id = ?", [len(written), run_id]
        )
        self.submit(job.name)
        if not wait:  # with --wait, the collect loop publishes
            results.publish(self.store, job)
        else:
            self.wait(job.name, poll_interval=poll_interval, timeout=timeout, publish=True)
        report = self.job_report(job.name)
        report.run_id = run_id
        report.counts = counts
        self.store.execute(
            f"UPDATE {SCHEMA}.runs SET finished_at = current_timestamp, "
            "status = CASE WHEN ? THEN 'finished' ELSE status END WHERE run_id = ?",
            [report.unfinished == 0, run_id],
        )
        return report

    def _stage_counts(self, stage: compiler.Stage) -> Counts:
        """Split the stage's requests into cached / in flight / to submit, and estimate the latter."""
        cached, in_flight, to_submit = self.store.one(
            f"""
            WITH hashes AS (SELECT DISTINCT __wb_request_hash AS h FROM {stage.table})
            SELECT count_if(res.request_hash IS NOT NULL),
                   count_if(res.request_hash IS NULL AND b.state IS NOT NULL AND b.state <> 'collected'),
                   count_if(res.request_hash IS NULL AND (b.state IS NULL OR b.state = 'collected'))
            FROM hashes
            LEFT JOIN {SCHEMA}.results AS res ON res.request_hash = hashes.h
            LEFT JOIN {SCHEMA}.requests AS req ON req.request_hash = hashes.h
            LEFT JOIN {SCHEMA}.batches AS b ON b.shard_id = req.shard_id
            """
        )
        self._estimate = cost.estimate(self.store, self._stage_todo_sql(stage), stage.job.endpoint)
        return Counts(stage.row_count, stage.request_count, cached, in_flight, to_submit, 0,
                      self._estimate.input_tokens, self._estimate.output_tokens, self._estimate.cost_usd)

    def _stage_todo_sql(self, stage: compiler.Stage) -> str:
        """The stage's distinct requests that have no result and sit in no live shard (before persisting)."""
        endpoint = compiler.sql_literal(stage.job.endpoint)
        return f"""
            SELECT __wb_request_hash AS request_hash, {endpoint} AS endpoint, any_value(__wb_model) AS model,
                   any_value(__wb_line_bytes) AS line_bytes, any_value(__wb_tokens) AS input_tokens,
                   any_value(__wb_max_output) AS max_output,
                   any_value(__wb_tokens) + coalesce(any_value(__wb_max_output), 0) AS tokens
            FROM {stage.table} AS s
            WHERE NOT EXISTS (SELECT 1 FROM {SCHEMA}.results AS x WHERE x.request_hash = s.__wb_request_hash)
              AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.requests AS r JOIN {SCHEMA}.batches AS b ON b.shard_id = r.shard_id
                              WHERE r.request_hash = s.__wb_request_hash AND b.state <> 'collected')
            GROUP BY __wb_request_hash
        """

    def _check_token_budget(self, stage: compiler.Stage) -> None:
        """A request that alone exceeds the enqueued-token budget could never be submitted: refuse it now."""
        budget = stage.job.max_enqueued_tokens
        if budget is None:
            return
        problems = compiler.offenders(
            self.store, stage.table, f"__wb_tokens + coalesce(__wb_max_output, 0) > {int(budget)}",
            f"need more tokens (estimated input + max_tokens) than max_enqueued_tokens = {budget:,}",
        )
        if problems:
            raise ValidationError(problems)

    def _persist(self, job: Job, run_id: str, stage: compiler.Stage, counts: Counts) -> None:
        """Record the job, its run, its rows and its new requests, all in one transaction.

        The stage becomes the job's rows table by a rename; job_rows and requests change only
        where the rows did, so re-running an unchanged job writes almost nothing."""
        rows = results.rows_table(job.name)
        with self.store.transaction():
            self.store.execute(
                f"""
                INSERT INTO {SCHEMA}.jobs (name, target_table, endpoint, definition) VALUES (?, ?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET target_table = excluded.target_table, endpoint = excluded.endpoint,
                    definition = excluded.definition, updated_at = now()
                """,
                [job.name, job.target_table, job.endpoint, json.dumps(job.to_options())],
            )
            self.store.execute(
                f"INSERT INTO {SCHEMA}.runs (run_id, job_name, status, row_count, request_count, cached_count, "
                "in_flight_count, submitted_count) VALUES (?, ?, 'planned', ?, ?, ?, ?, ?)",
                [run_id, job.name, counts.rows, counts.requests, counts.cached, counts.in_flight, counts.to_submit],
            )
            self.store.execute(f"DROP TABLE IF EXISTS {rows}")
            self.store.execute(f"ALTER TABLE {stage.table} RENAME TO {compiler.quote_ident(job.name + '__rows')}")
            self.store.execute(
                f"""DELETE FROM {SCHEMA}.job_rows AS jr WHERE jr.job_name = $job AND NOT EXISTS (
                        SELECT 1 FROM {rows} AS r WHERE r.__wb_cid = jr.custom_id AND r.__wb_request_hash = jr.request_hash)""",
                {"job": job.name},
            )
            self.store.execute(
                f"""INSERT INTO {SCHEMA}.job_rows SELECT $job, r.__wb_cid, r.__wb_request_hash FROM {rows} AS r
                    WHERE NOT EXISTS (SELECT 1 FROM {SCHEMA}.job_rows AS jr WHERE jr.job_name = $job
                                      AND jr.custom_id = r.__wb_cid AND jr.request_hash = r.__wb_request_hash)""",
                {"job": job.name},
            )
            self.store.execute(
                f"""
                INSERT INTO {SCHEMA}.requests (request_hash, endpoint, model, line_bytes, est_input_tokens,
                                               est_output_tokens, first_job)
                SELECT __wb_request_hash, $endpoint, any_value(__wb_model), any_value(__wb_line_bytes),
                       any_value(__wb_tokens), any_value(__wb_max_output), $job
                FROM {rows} AS s
                WHERE NOT EXISTS (SELECT 1 FROM {SCHEMA}.requests AS r WHERE r.request_hash = s.__wb_request_hash)
                GROUP BY __wb_request_hash
                """,
                {"endpoint": job.endpoint, "job": job.name},
            )

    def _todo_sql(self, job: Job) -> str:
        """The job's requests that have no result and sit in no live shard."""
        return f"""
            SELECT r.request_hash, r.endpoint, r.model, r.line_bytes,
                   r.est_input_tokens + coalesce(r.est_output_tokens, 0) AS tokens
            FROM {SCHEMA}.requests AS r
            WHERE r.request_hash IN (SELECT __wb_request_hash FROM {results.rows_table(job.name)})
              AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.results AS x WHERE x.request_hash = r.request_hash)
              AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.batches AS b
                              WHERE b.shard_id = r.shard_id AND b.state <> 'collected')
        """

    def _shard(self, job: Job, run_id: str, todo_sql: str, *, replace_results: bool = False) -> list[shards.ShardFile]:
        """Write shard files for the requests `todo_sql` selects, then record them in one transaction.

        Lines are built again from the job's rows table (bodies are never stored). With
        replace_results (a retry), the requests' previous results are dropped in that same
        transaction, so each request is always either answered or in exactly one live shard."""
        count = shards.plan_shards(
            self.store, todo_sql, max_lines=job.max_requests_per_shard, max_bytes=job.max_bytes_per_shard,
            max_tokens=job.max_enqueued_tokens,
        )
        if count == 0:
            self.store.execute(f"DROP TABLE IF EXISTS temp.{shards.PLAN}")
            return []
        prefix = f"{job.name}-{run_id}-"
        ids = {n: f"{prefix}{n:04d}" for n in range(1, count + 1)}
        rows = results.rows_table(job.name)
        columns = {r[0]: r[1] for r in self.store.execute(f"DESCRIBE {rows}").fetchall() if not r[0].startswith("__wb_")}
        body = bodies.build(job, columns).body
        total = self.store.scalar(f"SELECT count(*) FROM temp.{shards.PLAN}")
        self.reporter.step("writing shards", total)
        try:
            written = shards.write_shards(self.store, self.shard_dir(job.name), ids, rows=rows, body_sql=body,
                                          progress=self.reporter.advance)
            self.reporter.done()
            failpoint("after_shards_written")
            with self.store.transaction():
                if replace_results:
                    self.store.execute(
                        f"DELETE FROM {SCHEMA}.results WHERE request_hash IN (SELECT request_hash FROM temp.{shards.PLAN})"
                    )
                self.store.execute(
                    f"""
                    UPDATE {SCHEMA}.requests AS r
                    SET shard_id = ? || lpad(CAST(p.shard_no AS VARCHAR), 4, '0'), attempts = r.attempts + 1
                    FROM temp.{shards.PLAN} AS p WHERE p.request_hash = r.request_hash
                    """,
                    [prefix],
                )
                tokens = dict(self.store.execute(
                    f"SELECT shard_no, sum(tokens) FROM temp.{shards.PLAN} GROUP BY shard_no").fetchall())
                for f in written:
                    self.store.execute(
                        f"INSERT INTO {SCHEMA}.batches (shard_id, job_name, run_id, endpoint, model, path, line_count, "
                        "byte_count, sha256, est_tokens, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'written')",
                        [f.shard_id, job.name, run_id, f.endpoint, f.model, str(f.path), f.line_count, f.byte_count,
                         f.sha256, tokens.get(f.shard_no)],
                    )
        finally:
            self.store.execute(f"DROP TABLE IF EXISTS temp.{shards.PLAN}")
        failpoint("after_shards_recorded")
        self.reporter.info(f"wrote {len(written)} shard(s) to {self.shard_dir(job.name)}")
        return written

    def shard_dir(self, job_name: str) -> Path:
        return self.store.work_dir / job_name / "shards"

    # -- provider lifecycle ----------------------------------------------------------------
    def submit(self, job_name: str | None = None) -> int:
        """Upload and create batches for shards not yet submitted (resuming announced intents)."""
        return self.batches.submit(job_name)

    def collect(self, job_name: str | None = None, *, always_publish: bool = True) -> int:
        """Poll, download and load every finished batch, submit what is pending, republish the tables.

        Collecting first frees enqueued-token budget for the shards still waiting. Tables are
        rebuilt when answers arrived (or always, by default)."""
        ready = self.batches.poll(job_name)
        self.batches.collect(ready)
        self.batches.submit(job_name)
        if ready or always_publish:
            for name in self._job_names(job_name):
                results.publish(self.store, self._job(name))
        return len(ready)

    def wait(self, job_name: str | None, *, poll_interval: float = 5.0, timeout: float | None = None,
             max_interval: float = 60.0, publish: bool = True) -> None:
        """Collect until no batch of the job is live (or `timeout` seconds pass), backing off between polls.

        Output tables are rebuilt whenever answers arrive, and once at the end if none did."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = poll_interval
        published = False
        while True:
            published |= self.collect(job_name, always_publish=False) > 0
            progress = self.batches.progress(job_name)
            if not progress["live_batches"]:
                break
            eta = f", about {progress['eta_seconds']:,} s left" if progress["eta_seconds"] is not None else ""
            self.reporter.info(
                f"{progress['live_batches']} batch(es) running: {progress['done']:,}/{progress['total']:,} requests done{eta}"
            )
            if deadline is not None and time.monotonic() + interval > deadline:
                break
            time.sleep(interval)
            interval = min(interval * 1.5, max_interval)
        if publish and not published:
            for name in self._job_names(job_name):
                results.publish(self.store, self._job(name))

    # -- retry -----------------------------------------------------------------------------
    def retry(self, job_name: str) -> Report:
        """Send the job's retryable requests again (expired, cancelled, transient failures), in new shards.

        Requests that reached max_attempts, and terminal failures (the provider rejected the request
        itself: fix the job, which changes the request), are left as they are."""
        job = self._job(job_name)
        run_id = _new_run_id()
        retryable = f"""
            FROM {SCHEMA}.requests AS r JOIN {SCHEMA}.results AS res USING (request_hash)
            WHERE r.request_hash IN (SELECT __wb_request_hash FROM {results.rows_table(job.name)})
              AND {retries.RETRYABLE_SQL}
        """
        todo = f"""
            SELECT r.request_hash, r.endpoint, r.model, r.line_bytes,
                   r.est_input_tokens + coalesce(r.est_output_tokens, 0) AS tokens
            {retryable} AND r.attempts < {int(job.max_attempts)}
        """
        exhausted = self.store.scalar(f"SELECT count(*) {retryable} AND r.attempts >= {int(job.max_attempts)}")
        self.store.execute(
            f"INSERT INTO {SCHEMA}.runs (run_id, job_name, status) VALUES (?, ?, 'retry')", [run_id, job.name]
        )
        written = self._shard(job, run_id, todo, replace_results=True)
        sent = sum(f.line_count for f in written)
        self.store.execute(
            f"UPDATE {SCHEMA}.runs SET submitted_count = ?, shard_count = ?, finished_at = now() WHERE run_id = ?",
            [sent, len(written), run_id],
        )
        self.reporter.info(
            f"retrying {sent:,} request(s) in {len(written)} shard(s)"
            + (f"; {exhausted:,} reached max_attempts = {job.max_attempts} and stay as they are" if exhausted else "")
        )
        self.submit(job.name)
        results.publish(self.store, job)
        report = self.job_report(job.name)
        report.run_id = run_id
        return report

    # -- cancel ----------------------------------------------------------------------------
    def cancel(self, job_name: str) -> Report:
        """Cancel the job's live batches; unsubmitted shards are dropped. Finished work is kept."""
        job = self._job(job_name)
        self.batches.cancel(job_name)
        results.publish(self.store, job)
        return self.job_report(job_name)

    # -- reports ---------------------------------------------------------------------------
    def job_report(self, job_name: str) -> Report:
        job = self._job(job_name)
        # As the output table shows them (written by publish), answer-level failures included.
        statuses = {
            row["status"]: int(row["row_count"])
            for row in self.store.rows(
                f"SELECT status, row_count FROM {SCHEMA}.job_counts WHERE job_name = ? ORDER BY status", [job_name]
            )
        }
        batches = self.store.rows(
            f"""SELECT shard_id, batch_id, state, status, line_count, total_count, completed_count, failed_count,
                       CAST(errors AS VARCHAR) AS errors
                FROM {SCHEMA}.batches WHERE job_name = ? ORDER BY created_at, shard_id""",
            [job_name],
        )
        return Report(job=job_name, batches=batches, statuses=statuses, table=job.target_table,
                      progress=self.batches.progress(job_name))

    def status(self, job_name: str | None = None) -> list[Report]:
        return [self.job_report(name) for name in self._job_names(job_name)]

    # -- store helpers ---------------------------------------------------------------------
    def _job(self, name: str) -> Job:
        definition = self.store.scalar(f"SELECT definition FROM {SCHEMA}.jobs WHERE name = ?", [name])
        if definition is None:
            known = [r[0] for r in self.store.execute(f"SELECT name FROM {SCHEMA}.jobs ORDER BY 1").fetchall()]
            raise NotFoundError(
                f"no job named {name!r} in this warehouse (known: {', '.join(known) or 'none yet'}); "
                "run it first with `warehouse-batch run JOB.sql`"
            )
        return Job.from_options(json.loads(definition))

    def _job_names(self, job_name: str | None) -> list[str]:
        if job_name is not None:
            self._job(job_name)
            return [job_name]
        return [r[0] for r in self.store.execute(f"SELECT name FROM {SCHEMA}.jobs ORDER BY name").fetchall()]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
