"""The worker's loop: pick up definitions, run them, poll with back-off, collect on webhooks.

One step holds the warehouse: read the definitions (recording new versions), cancel and pause what
the rows ask, run each new version through the Runner, collect and retry the worker's jobs, and
take the snapshot the HTTP side serves. Between steps the warehouse is released (DuckDB lets one
process hold the file), and the loop sleeps until the next poll or definitions check is due, a
webhook names a batch, or SIGTERM arrives. Every job is handled on its own: its failure is written
to its definition row and the others go on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from warehouse_batch import definitions as defs
from warehouse_batch.definitions import Definers, Definition, Policy
from warehouse_batch.errors import JobError, StoppedError, WarehouseBatchError, WarehouseBusyError, is_interrupt
from warehouse_batch.names import SCHEMA
from warehouse_batch.runner import Runner
from warehouse_batch.worker import snapshot
from warehouse_batch.worker.snapshot import Snapshot, Stats

log = logging.getLogger("warehouse_batch.worker")

#: Event ids remembered to refuse replays (a delivery sent again is acknowledged and ignored).
SEEN_EVENTS = 10_000


@dataclass
class Timing:
    """How often the loop looks: definitions every `check_interval` seconds; the provider after
    `poll_interval`, backing off ×1.5 up to `max_poll_interval` while nothing finishes."""

    check_interval: float = 5.0
    poll_interval: float = 5.0
    max_poll_interval: float = 60.0


class Worker:
    """Runs the jobs defined in one warehouse's job_definitions table."""

    def __init__(self, runner: Runner, definers: Definers, policy: Policy, timing: Timing | None = None):
        self.runner = runner
        self.warehouse = runner.warehouse
        self.definers = definers
        self.policy = policy
        self.timing = timing or Timing()
        self.stats = Stats()
        self.snapshot = Snapshot()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._batches: queue.SimpleQueue[str] = queue.SimpleQueue()  # batch ids named by webhooks
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_lock = threading.Lock()
        self._stepping = False
        self._interval = self.timing.poll_interval
        self._next_poll = 0.0

    # -- signals from other threads ----------------------------------------------------------
    def stop(self) -> None:
        """Finish (or interrupt) the current step, then return from `run_forever`."""
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def stepping(self) -> bool:
        return self._stepping

    def batch_ended(self, batch_id: str, event_id: str) -> bool:
        """A verified webhook named a batch: collect it now. False for an event seen before (a replay)."""
        with self._seen_lock:
            if event_id in self._seen:
                return False
            self._seen[event_id] = None
            while len(self._seen) > SEEN_EVENTS:
                self._seen.popitem(last=False)
        self._batches.put(batch_id)
        self._wake.set()
        return True

    # -- the loop ----------------------------------------------------------------------------
    def run_forever(self) -> None:
        next_check = 0.0
        while not self.stopping:
            now = time.monotonic()
            webhook = not self._batches.empty()
            if now >= next_check or now >= self._next_poll or webhook:
                try:
                    self._stepping = True
                    self.step(poll=now >= self._next_poll)
                    self.stats.last_step_error = None
                except WarehouseBatchError as exc:  # the warehouse itself (busy, gone): try again later
                    self.stats.last_step_error = str(exc)
                    log.warning("step failed: %s", exc)
                except BaseException as exc:
                    if is_interrupt(exc) and self.stopping:
                        break
                    raise
                finally:
                    self._stepping = False
                    self.stats.last_step_at = time.time()
                next_check = time.monotonic() + self.timing.check_interval
            if self.stopping:
                break
            self._sleep(max(0.0, min(next_check, self._next_poll) - time.monotonic()))

    def _sleep(self, pause: float) -> None:
        """Wait with the warehouse released (analysts, BI tools and the CLI get in meanwhile). If
        someone holds it past the lock timeout when we want it back, wait and try again."""
        while True:
            try:
                with self.warehouse.released():
                    self._wake.wait(pause)
                    self._wake.clear()
                return
            except WarehouseBusyError as exc:
                self.stats.last_step_error = str(exc)
                log.warning("%s", exc)
                if self.stopping:
                    return
                pause = self.timing.check_interval

    def step(self, *, poll: bool) -> None:
        """One pass over the definitions and the worker's jobs (see the module docstring)."""
        changes = defs.sync(self.warehouse, self.definers)
        for name in changes.deleted:
            self._isolated(name, lambda n=name: self._cancel(n, deleted=True))
        started = False
        for d in changes.definitions:
            if self.stopping:
                return
            if d.cancel_requested:
                if d.state != defs.CANCELLED:
                    self._isolated(d.name, lambda d=d: self._cancel(d.name))
            elif not d.enabled:
                if d.state != defs.PAUSED:
                    defs.record(self.warehouse, d.name, defs.PAUSED, None)
            elif d.needs_run:
                started |= self._isolated(d.name, lambda d=d: self._run(d))
        collected = self._collect_webhooks()
        if poll or started or collected:
            current = defs.read(self.warehouse, self.definers)  # with what this step recorded
            self._poll(self._active(current), found=started or collected)
        self.snapshot = snapshot.take(self.warehouse)

    def _active(self, definitions: list[Definition]) -> list[Definition]:
        """Definitions whose jobs are collected: run at least once, neither paused nor cancelled
        (a refused new version still collects what its earlier version paid for)."""
        return [d for d in definitions if d.enabled and not d.cancel_requested and d.ran_version is not None]

    def _isolated(self, name: str, action: Callable[[], object]) -> bool:
        """Run one job's action; whatever it raises is written to that job's row, never further."""
        try:
            return bool(action())
        except BaseException as exc:
            if is_interrupt(exc):
                raise
            log.exception("job %s: unexpected error", name)
            defs.record(self.warehouse, name, defs.FAILED, f"unexpected error: {type(exc).__name__}: {exc}")
            return False

    # -- one definition ----------------------------------------------------------------------
    def _run(self, d: Definition) -> bool:
        """Validate and start a run of the definition's current version. Refusals go into its row."""
        try:
            job = defs.to_job(d)
            if defs.run_from_a_job_file(self.warehouse, d.name):
                raise JobError(f"a job named {d.name} was already run from a job file or the API in this warehouse; "
                               "choose another name for the definition")
            self.definers.check(d, job)
        except JobError as exc:
            defs.record(self.warehouse, d.name, defs.REFUSED, str(exc), ran=d)
            log.info("job %s v%s refused: %s", d.name, d.version, exc)
            return False
        self.runner.guard = defs.budget_guard(self.warehouse, self.policy, d.defined_by)
        try:
            with self.definers.run_as(d.defined_by):
                self.runner.run(job, wait=False)
        except StoppedError:  # SIGTERM during the run: what it recorded resumes on the next start
            raise
        except JobError as exc:  # bad rows, a budget, a limit: nothing was recorded or sent
            defs.record(self.warehouse, d.name, defs.REFUSED, str(exc), ran=d)
            log.info("job %s v%s refused: %s", d.name, d.version, exc)
            return False
        except WarehouseBatchError as exc:
            # Transient (the provider is down): the rows and shards are recorded; polling sends them later.
            state = defs.RUNNING if exc.transient else defs.FAILED
            defs.record(self.warehouse, d.name, state, str(exc), ran=d, started=True)
            self.stats.provider_errors += 1
            return exc.transient
        finally:
            self.runner.guard = None
        defs.record(self.warehouse, d.name, defs.RUNNING, None, ran=d, started=True)
        log.info("job %s v%s started", d.name, d.version)
        return True

    def _cancel(self, name: str, *, deleted: bool = False) -> bool:
        if name in self.runner.ledger.job_names():
            self.runner.cancel(name)
        if not deleted:
            defs.record(self.warehouse, name, defs.CANCELLED, None)
        log.info("job %s cancelled%s", name, " (its definition was deleted)" if deleted else "")
        return False

    # -- the provider ------------------------------------------------------------------------
    def _collect_webhooks(self) -> bool:
        """Collect the jobs whose batches webhooks named since the last step."""
        jobs: set[str] = set()
        while not self._batches.empty():
            batch_id = self._batches.get()
            name = self.warehouse.scalar(f"SELECT job_name FROM {SCHEMA}.batches WHERE batch_id = ?", [batch_id])
            if name is None:
                log.info("webhook for batch %s, which is not in this warehouse: ignored", batch_id)
                continue
            jobs.add(name)
        if not jobs:
            return False
        return self._collect(jobs) > 0

    def _poll(self, active: list[Definition], *, found: bool) -> None:
        """Collect every active job, retry what is retryable, and schedule the next poll."""
        names = {d.name for d in active} & set(self.runner.ledger.job_names())
        collected = self._collect(names) if names else 0
        live = self.runner.ledger.live_job_names()
        for d in active:
            if d.name not in names or d.name in self.runner.failures or d.name in live \
                    or self.runner.ledger.deferred(d.name):
                continue
            job = self.runner.ledger.job(d.name)
            if self.runner.ledger.count(self.runner.ledger.retryable_sql(job, exhausted=False)):
                if self._isolated(d.name, lambda n=d.name: self.runner.retry(n)):
                    defs.record(self.warehouse, d.name, defs.RUNNING, None)
            elif d.state == defs.RUNNING:
                defs.record(self.warehouse, d.name, defs.DONE, self.runner.ledger.job_error(d.name))
        # Back off while nothing finishes; start again from the shortest interval when something does.
        self._interval = self.timing.poll_interval if (collected or found) else \
            min(self._interval * 1.5, self.timing.max_poll_interval)
        self._next_poll = time.monotonic() + self._interval

    def _collect(self, names: set[str]) -> int:
        collected = self.runner.collect(jobs=names)
        failed = {n: e for n, e in self.runner.failures.items() if n in names}
        self.stats.provider_errors += sum(1 for e in failed.values() if e.transient)
        if not any(e.transient for e in failed.values()):
            self.stats.last_successful_poll = time.time()
        for name in names:
            error = failed.get(name)
            if error is not None:
                defs.record(self.warehouse, name, defs.RUNNING if error.transient else defs.FAILED, str(error))
        return collected
