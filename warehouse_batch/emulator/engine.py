"""Batch state machine (§3) on the emulated clock, plus the stores it drives.

Batches advance lazily: every API call first runs `_tick()`, which replays all
state changes that became due up to the current emulated time, earliest event
first (so the enqueued-token quota sees the batches that were running then).
All answers are precomputed once per batch (execution.py), so a tick only does
arithmetic, except when a batch reaches a terminal state and its files are joined.

Background preparation. `POST /batches` only records the batch (status
`validating`) and queues its input for one worker thread, which parses,
validates and answers the batches in creation order, outside the lock, then
installs `rec.prep`. A non-terminal batch whose `prep` is still None is
"pending". The state machine is unchanged in meaning because events keep their
clock times (`validate_due` etc.) and are still applied strictly in time order;
only *when* they are applied changes:

* a waiting tick (batch calls, advance, configure) that reaches a due event of a
  pending batch waits on `_ready` (releasing the lock, bounded by WAIT_LIMIT)
  until the worker installs it, then carries on. So with all delays 0 the first
  retrieve after create still sees `completed`; with a validation_delay not yet
  passed nothing waits, and a poll answers `validating` at once.
* a non-waiting tick (file calls) stops at the first due event of a pending
  batch; later events stay queued for the next tick, so the order is kept.
  This keeps uploading the next file from waiting on the previous batch.

Counters of received requests are added by the worker (for accepted batches
only, as before); `counters()` waits for queued work so a snapshot taken after
a create sees them. After a restart, non-terminal batches are queued again.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from . import ids
from .clock import Clock
from .webhooks import WebhookSender
from .config import EmulatorConfig
from .counters import Counters
from .errors import APIError, not_found
from .execution import Prepared, cannot_find, missing_file, prepare
from .faults import FaultRegistry, picked
from .files import FileStore, Spool
from .flavors import canonical_endpoint, flavor
from .validation import Input, batch_error, enqueued_tokens

TERMINAL = frozenset({"failed", "completed", "expired", "cancelled"})
BATCH_FILE_TTL = 30 * 86400  # batch input files expire after 30 days by default (§1.1)
WAIT_LIMIT = 120.0  # real seconds a call waits for queued batch preparation before answering anyway


@dataclass
class BatchRecord:
    data: dict[str, Any]  # the API object, kept current
    seq: int
    created: float  # emulated time, sub-second precision
    validate_due: float
    expires: float
    output_ttl: int | None = None  # output_expires_after.seconds
    started: float | None = None
    request_time: float = 0.0  # fixed when the batch starts running
    due: float | None = None  # end of finalizing / cancelling
    stop_k: int | None = None  # requests finished when cancelling began
    # Set once the batch holds enqueued-token quota (accepted); counted until it is terminal.
    quota_model: str | None = None
    quota_tokens: int = 0
    always_error_file: bool = False  # Azure: a 0-byte error file even when nothing failed
    prep: Prepared | None = field(default=None, repr=False)

    @property
    def status(self) -> str:
        return str(self.data["status"])

    def done_at(self, t: float) -> int:
        """Requests finished by emulated time t (they run one after another)."""
        assert self.prep is not None and self.started is not None
        n = self.prep.n
        if self.request_time <= 0:
            return n
        return max(0, min(n, math.floor((t - self.started) / self.request_time + 1e-9)))

    def next_event(self) -> float | None:
        s = self.status
        if s == "validating":
            return min(self.validate_due, self.expires)
        if s == "in_progress":
            assert self.prep is not None and self.started is not None
            return min(self.started + self.prep.n * self.request_time, self.expires)
        if s in ("finalizing", "cancelling"):
            return self.due
        return None

    def persistable(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "prep"}


class Engine:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self._ready = threading.Condition(self.lock)  # notified when the worker installs a prep
        # Work queue: (generation, record, input (bytes or a private hard link) or None if missing,
        # config, count counters?)
        self._queue: deque[tuple[int, BatchRecord, Input | None, EmulatorConfig, bool]] = deque()
        self._gen = 0  # bumped by reset(); stale work is dropped
        self._busy = 0  # queued + running items of the current generation
        self._worker: threading.Thread | None = None
        self.counters = Counters()
        # Per input file: batch creations so far and whether the last one was a spurious miss.
        self._file_attempts: dict[str, tuple[int, bool]] = {}
        self.faults = FaultRegistry()
        self._state_dir = Path(config.state_dir) if config.state_dir else None
        self._open_stores()
        self.webhooks = WebhookSender(self)
        self.webhooks.ensure_running()

    # ------------------------------------------------------------ setup / persistence

    def _open_stores(self) -> None:
        start = None
        if self._state_dir:
            (self._state_dir / "batches").mkdir(parents=True, exist_ok=True)
            clock_file = self._state_dir / "clock.json"
            if clock_file.exists():
                # Never let the emulated clock run backwards across a restart.
                import time
                start = max(time.time(), float(json.loads(clock_file.read_text())["now"]))
        self.clock = Clock(self.config.time_scale, start)
        self.files = FileStore(self.config.state_dir)
        self.batches: dict[str, BatchRecord] = {}
        self._seq = 0
        if self._state_dir:
            self._load_batches()

    def _load_batches(self) -> None:
        assert self._state_dir
        for path in sorted((self._state_dir / "batches").glob("*.json")):
            rec = BatchRecord(**json.loads(path.read_text()))
            self._seq = max(self._seq, rec.seq)
            self.batches[rec.data["id"]] = rec
            if rec.status not in TERMINAL:
                # Answers are deterministic, so recomputing them from the input file
                # restores the batch exactly as it was (counters are not persisted).
                self._enqueue(rec, self._input(rec.data["input_file_id"]), self.config, count=False)

    def _save(self, rec: BatchRecord) -> None:
        if not self._state_dir:
            return
        path = self._state_dir / "batches" / f"{rec.data['id']}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec.persistable()))
        os.replace(tmp, path)
        (self._state_dir / "clock.json").write_text(json.dumps({"now": self.clock.now()}))

    def reset(self) -> None:
        with self.lock:
            self._gen += 1  # work already running finishes but is not installed
            self._queue.clear()
            self._busy = 0
            self._ready.notify_all()
            self.files.clear()
            if self._state_dir:
                shutil.rmtree(self._state_dir / "batches", ignore_errors=True)
                (self._state_dir / "clock.json").unlink(missing_ok=True)
            self.counters.reset()
            self.faults.clear()
            self._file_attempts.clear()
            self.files.close()  # the precomputed results and queued inputs go with it
            self._open_stores()

    def close(self) -> None:
        """Stop sending webhooks and remove the files only this process needs (its temporary
        directory without state_dir; state_dir's files stay for the next start)."""
        self.webhooks.stop()
        with self.lock:
            self._gen += 1  # a preparation still running is not installed
            self._queue.clear()
            self._busy = 0
            self._ready.notify_all()
            self.files.close()

    def configure(self, **fields: Any) -> EmulatorConfig:
        with self.lock:
            if "state_dir" in fields and fields["state_dir"] != self.config.state_dir:
                raise ValueError("state_dir cannot be changed on a running emulator")
            self._tick(wait=True)  # events due under the old settings happen under them
            self.config = self.config.updated(**fields)
            if "time_scale" in fields:
                self.clock.set_scale(self.config.time_scale)
        self.webhooks.ensure_running()
        return self.config

    def advance(self, seconds: float) -> float:
        with self.lock:
            self.clock.advance(seconds)
            self._tick(wait=True)
            return self.clock.now()

    def now(self) -> int:
        return int(self.clock.now())

    # ------------------------------------------------------------ files

    def upload(self, filename: str, purpose: str, data: bytes | Spool, expires_after: int | None) -> dict[str, Any]:
        """Store an upload (bytes, or a Spool it was received into: the store takes its file over)."""
        try:
            with self.lock:
                self._tick()
                now = self.now()
                if purpose == "batch":
                    self._check_file_cap(expires_after is not None)
                ttl = expires_after if expires_after is not None else (BATCH_FILE_TTL if purpose == "batch" else None)
                rec = self.files.add(filename, purpose, data, now, now + ttl if ttl else None,
                                     explicit_expiry=expires_after is not None)
                self.counters.add("files_uploaded")
                self.counters.add("bytes_uploaded", rec.bytes)
                return rec.to_api()
        finally:
            if isinstance(data, Spool):
                data.discard()  # refused: its file goes (accepted: the store has moved it already)

    def _check_file_cap(self, explicit_expiry: bool) -> None:
        """Azure caps input batch files per resource: 500, or 10,000 counting those with expiry."""
        rules = flavor(self.config.flavor)
        cap = rules.file_cap_with_expiry if explicit_expiry else rules.file_cap
        if cap is None:
            return
        held = self.files.count("batch", None if explicit_expiry else False)
        if held >= cap:
            hint = "" if explicit_expiry else " or upload with expires_after (then up to 10,000 files count)"
            raise APIError(400, f"This resource already holds {held} input files with purpose 'batch', the maximum "
                                f"is {cap}. Delete files you no longer need{hint}.",
                           param="file", code="quota_exceeded")

    def get_file(self, file_id: str) -> dict[str, Any]:
        with self.lock:
            self._tick()
            return self.files.get(file_id, self.now()).to_api()

    def file_content(self, file_id: str) -> bytes:
        with self.lock:
            self._tick()
            rec = self.files.get(file_id, self.now())
            return self.files.content(rec)

    def open_file(self, file_id: str) -> tuple[BinaryIO, int]:
        """(reader, size) of a file's bytes, for streaming them out; the caller closes the reader."""
        with self.lock:
            self._tick()
            rec = self.files.get(file_id, self.now())
            return self.files.open(rec), rec.bytes

    def delete_file(self, file_id: str) -> dict[str, Any]:
        with self.lock:
            self._tick()
            self.files.delete(file_id, self.now())
            return {"id": file_id, "object": "file", "deleted": True}

    def list_files(self, purpose: str | None, order: str, after: str | None, limit: int) -> dict[str, Any]:
        with self.lock:
            self._tick()
            recs, more = self.files.list(self.now(), purpose, order, after, limit)
            return _page([r.to_api() for r in recs], more)

    # ------------------------------------------------------------ batches

    def _input(self, file_id: str) -> Input | None:
        """The batch input file as it is now (its bytes, or a hard link the worker reads and removes,
        so a later delete does not change the batch), or None when it is missing/expired/not
        purpose=batch."""
        now = self.now()
        if not self.files.exists(file_id, now):
            return None
        rec = self.files.get(file_id, now)
        return self.files.snapshot(rec) if rec.purpose == "batch" else None

    # ------------------------------------------------------------ background preparation

    def _enqueue(self, rec: BatchRecord, content: Input | None, config: EmulatorConfig, count: bool) -> None:
        with self.lock:
            self._queue.append((self._gen, rec, content, config, count))
            self._busy += 1
            if self._worker is None:
                # One worker at a time; it exits when the queue is empty (no idle threads).
                self._worker = threading.Thread(target=self._work, name="emulator-prepare", daemon=True)
                self._worker.start()

    def _work(self) -> None:
        while True:
            with self.lock:
                if not self._queue:
                    self._worker = None
                    return
                gen, rec, content, config, count = self._queue.popleft()
                work_dir = self.files.work_dir()
            # Outside the lock: the heavy step; other calls proceed meanwhile.
            try:
                if content is None:
                    prep = missing_file(rec.data["input_file_id"])
                else:
                    endpoint = canonical_endpoint(rec.data["endpoint"], config.flavor)
                    prep = prepare(content, endpoint, rec.data["id"], config, work_dir)
            except Exception as exc:  # noqa: BLE001 - never leave a batch pending forever
                prep = Prepared(errors=[batch_error("server_error", f"The emulator could not prepare this batch: {exc}")])
            finally:
                if isinstance(content, Path):
                    content.unlink(missing_ok=True)  # the private link of _input()
            del content
            with self.lock:
                if gen != self._gen:
                    prep.discard()
                    continue  # reset() since: forget it
                rec.prep = prep
                if count:
                    self.counters.received(prep.received_ids)
                    self.counters.add("requests_received", prep.received_lines - len(prep.received_ids))
                prep.received_ids = []  # only needed for the counters
                self._busy -= 1
                self._ready.notify_all()

    def _wait_until(self, done: Any, deadline: float) -> bool:
        """With the lock held: wait (releasing it) until done() or the deadline; returns done()."""
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._ready.wait(left)
        return True

    def _settled(self, rec: BatchRecord) -> bool:
        """Prepared, or no longer this engine's batch (reset() meanwhile)."""
        return rec.prep is not None or rec.status in TERMINAL or self.batches.get(rec.data["id"]) is not rec

    def counter_snapshot(self) -> dict[str, Any]:
        """Counters once queued batches are prepared, so requests_received & co. include them."""
        with self.lock:
            self._wait_until(lambda: self._busy == 0, time.monotonic() + WAIT_LIMIT)
            return self.counters.snapshot()

    # ------------------------------------------------------------ batches

    def create_batch(self, input_file_id: str, endpoint: str, completion_window: str,
                     metadata: dict[str, str] | None, output_ttl: int | None) -> dict[str, Any]:
        self.counters.add("batch_create_calls")
        batch_id = ids.batch_id()
        with self.lock:
            config = self.config
            # The input as it is now (an in-memory reference, or one file read with state_dir);
            # a missing file fails the batch later, like the real API.
            content = self._input(input_file_id)
            if content is not None and self._spurious_miss(input_file_id, config):
                if isinstance(content, Path):
                    content.unlink()
                if config.file_not_found_style == "sync":
                    raise APIError(400, cannot_find(input_file_id), param="input_file_id", code="invalid_request")
                content = None  # the batch then fails asynchronously, as for a file that is really gone
        quota: tuple[str | None, int] | None = None
        if content is not None and config.enqueued_token_limit is not None and config.token_limit_style == "fail-fast":
            quota = enqueued_tokens(content)  # outside the lock: parses the whole file
        with self.lock:
            if quota is not None and quota[0] is not None:
                self._check_quota_now(quota[0], quota[1])
            created = self.clock.now()
            rules = flavor(config.flavor)
            self._seq += 1
            c = int(created)
            data: dict[str, Any] = {
                "id": batch_id, "object": "batch", "endpoint": endpoint, "model": None, "errors": None,
                "input_file_id": input_file_id, "completion_window": completion_window, "status": "validating",
                "output_file_id": None, "error_file_id": None, "created_at": c, "in_progress_at": None,
                "expires_at": c + config.completion_window_seconds, "finalizing_at": None, "completed_at": None,
                "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "usage": None, "metadata": metadata,
            }
            rec = BatchRecord(data=data, seq=self._seq, created=created,
                              validate_due=created + config.validation_delay,
                              # Azure shows expires_at but never expires a job.
                              expires=float(c + config.completion_window_seconds) if rules.batches_expire else math.inf,
                              output_ttl=output_ttl or config.output_retention,
                              always_error_file=rules.always_error_file)
            if quota is not None and quota[0] is not None:
                rec.quota_model, rec.quota_tokens = quota  # fail-fast: counted from create on
            self.batches[batch_id] = rec
            self.counters.add("batches_created")
            self._save(rec)
            self._enqueue(rec, content, config, count=True)
            # Snapshot before any tick: the create answer is always `validating` (§2).
            return _snap(data)

    def _spurious_miss(self, file_id: str, config: Any) -> bool:
        """Production sometimes cannot find a file that exists (right after uploads); a retry
        passes, so an attempt right after a miss never misses."""
        attempt, missed_last = self._file_attempts.get(file_id, (0, False))
        miss = not missed_last and picked(config.file_not_found_rate, config.seed, file_id, attempt)
        self._file_attempts[file_id] = (attempt + 1, miss)
        return miss

    def _enqueued(self, model: str, exclude: BatchRecord | None = None) -> int:
        """Tokens of accepted, non-terminal batches for `model` (quota is held until terminal)."""
        return sum(r.quota_tokens for r in self.batches.values()
                   if r is not exclude and r.quota_model == model and r.status not in TERMINAL)

    def _check_quota_now(self, model: str, tokens: int) -> None:
        """Fail-fast regions: the create call itself is refused."""
        limit = self.config.enqueued_token_limit
        if limit is not None and self._enqueued(model) + tokens > limit:
            raise APIError(400, f"token_limit_exceeded: {_quota_message(model, limit)}", code="token_limit_exceeded")

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        with self.lock:
            self._tick(wait=True)
            return _snap(self._batch(batch_id).data)

    def _batch(self, batch_id: str) -> BatchRecord:
        rec = self.batches.get(batch_id)
        if rec is None:
            raise not_found("Batch", batch_id)
        return rec

    def list_batches(self, after: str | None, limit: int) -> dict[str, Any]:
        with self.lock:
            self._tick(wait=True)
            recs = sorted(self.batches.values(), key=lambda r: (r.created, r.seq), reverse=True)
            if after:
                idx = next((i for i, r in enumerate(recs) if r.data["id"] == after), None)
                recs = recs[idx + 1:] if idx is not None else []
            return _page([_snap(r.data) for r in recs[:limit]], len(recs) > limit)

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        with self.lock:
            self._tick(wait=True)
            rec = self._batch(batch_id)
            if rec.status in ("cancelling", "cancelled"):
                return _snap(rec.data)  # idempotent (§7)
            if rec.status in TERMINAL:
                raise APIError(409, f"Cannot cancel a batch with status '{rec.status}'.",
                               headers={"x-should-retry": "false"})
            now = self.clock.now()
            if rec.status == "validating":
                rec.stop_k = 0
            else:
                rec.stop_k = rec.done_at(now)
                assert rec.prep is not None
                rec.data["request_counts"] = rec.prep.counts(rec.stop_k)
            rec.data["status"] = "cancelling"
            rec.data["cancelling_at"] = int(now)
            rec.due = now + self.config.cancel_delay
            self.counters.add("batches_cancelled")
            self._save(rec)
            return _snap(rec.data)

    # ------------------------------------------------------------ the state machine

    def _tick(self, wait: bool = False) -> None:
        """Apply every event due by now, earliest first; then refresh running counts.

        An event of a batch still being prepared (prep None) is applied once the worker
        has installed it: with `wait`, the tick waits for that (bounded); without, it
        stops there so no later event overtakes it (see the module docstring).
        """
        now = self.clock.now()
        self.files.purge(int(now))
        deadline = time.monotonic() + WAIT_LIMIT
        while True:
            due = [(t, r.seq, r) for r in self.batches.values()
                   if r.status not in TERMINAL and (t := r.next_event()) is not None and t <= now]
            if not due:
                break
            t, _, rec = min(due, key=lambda x: (x[0], x[1]))
            if rec.prep is None:
                if wait and self._wait_until(lambda r=rec: self._settled(r), deadline):
                    continue  # the lock was released meanwhile: look again
                break
            self._apply(rec, t)
            self._save(rec)
        for rec in self.batches.values():
            if rec.status == "in_progress" and rec.prep is not None:
                rec.data["request_counts"] = rec.prep.counts(rec.done_at(now))

    def _apply(self, rec: BatchRecord, t: float) -> None:
        s, d, prep = rec.status, rec.data, rec.prep
        assert prep is not None
        if s == "validating":
            if rec.expires <= rec.validate_due:
                self._finish(rec, "expired", t, 0)
            elif prep.errors:
                self._fail(rec, t, prep.errors)
            elif self._over_quota(rec):
                # Nothing ran and nothing is billed: resubmitting later is the fix.
                self._fail(rec, t, [batch_error("token_limit_exceeded",
                                                _quota_message(prep.model, self.config.enqueued_token_limit))])
            else:
                if rec.quota_model is None and prep.model is not None:
                    rec.quota_model, rec.quota_tokens = prep.model, prep.tokens
                d.update(status="in_progress", in_progress_at=int(t), model=prep.model,
                         request_counts=prep.counts(0))
                rec.started = t
                rec.request_time = self.config.request_time
        elif s == "in_progress":
            assert rec.started is not None
            done_t = rec.started + prep.n * rec.request_time
            if rec.expires < done_t and t >= rec.expires:
                self._finish(rec, "expired", t, rec.done_at(rec.expires))
            else:
                d.update(status="finalizing", finalizing_at=int(t), request_counts=prep.counts(prep.n))
                rec.due = t + self.config.finalize_delay
        elif s == "finalizing":
            self._finish(rec, "completed", t, prep.n)
        elif s == "cancelling":
            self._finish(rec, "cancelled", t, rec.stop_k or 0)

    def _over_quota(self, rec: BatchRecord) -> bool:
        limit = self.config.enqueued_token_limit
        assert rec.prep is not None
        if limit is None or rec.quota_model is not None or rec.prep.model is None:
            return False  # no limit, or already accepted at create (fail-fast)
        return self._enqueued(rec.prep.model, exclude=rec) + rec.prep.tokens > limit

    def _fail(self, rec: BatchRecord, t: float, errors: list[dict[str, Any]]) -> None:
        rec.data.update(status="failed", failed_at=int(t), errors={"object": "list", "data": errors})
        if rec.prep is not None:
            rec.prep.discard()
        rec.prep = None  # nothing more to serve

    def _finish(self, rec: BatchRecord, status: str, t: float, k: int) -> None:
        """Terminal state with results: write the files once (streaming), then drop the precomputed lines."""
        prep = rec.prep
        assert prep is not None
        d = rec.data
        ts = int(t)
        if prep.errors:  # e.g. cancelled or expired while an invalid file was validating
            d.update(status=status, **{f"{status}_at": ts})
            prep.discard()
            rec.prep = None
            return
        unrun = "batch_expired" if status == "expired" else "batch_cancelled"
        out, err = prep.result_files(k, unrun, self.files.work_dir())
        bid = d["id"]
        expires = ts + rec.output_ttl if rec.output_ttl else None
        out_id = self.files.add(f"{bid}_output.jsonl", "batch_output", out, ts, expires).id if out else None
        err_id = (self.files.add(f"{bid}_error.jsonl", "batch_output", err or b"", ts, expires).id
                  if err or rec.always_error_file else None)
        counts = prep.counts(k)
        if status != "completed":
            # Unrun requests count as failed once the batch has stopped.
            counts = {"total": prep.n, "completed": counts["completed"], "failed": prep.n - counts["completed"]}
        d.update(status=status, output_file_id=out_id, error_file_id=err_id, request_counts=counts,
                 usage=prep.usage(k), model=prep.model or d.get("model"), **{f"{status}_at": ts})
        prep.discard()
        rec.prep = None


def _quota_message(model: str | None, limit: int | None) -> str:
    return (f"Enqueued token limit reached for {model} in organization org-emulator. Limit: {limit or 0:,} "
            "enqueued tokens. Please try again once some in_progress batches have been completed.")


def _page(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    page: dict[str, Any] = {"object": "list", "data": items, "has_more": has_more}
    if items:  # §9/§15: omit first_id/last_id when the page is empty
        page["first_id"] = items[0]["id"]
        page["last_id"] = items[-1]["id"]
    return page


def _snap(data: dict[str, Any]) -> dict[str, Any]:
    """A deep copy, so a response is never serialised while a tick mutates it."""
    return json.loads(json.dumps(data))
