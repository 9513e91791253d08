"""The provider side of shards: submit, poll, collect and cancel their batches.

Each side effect is announced in the ledger (state `uploading` / `creating`, committed) before it
happens and recorded after, so a process killed anywhere resumes by reconciling the announced
intents with the provider (a file by its name, a batch by its metadata tag) instead of repeating
them. Provider calls for many batches run on a bounded thread pool; every ledger write stays on the
calling thread, because a DuckDB connection is not shared across threads.

Something the provider no longer has (a batch or result file answering 404, e.g. an output file
deleted 30 days after completion) and a shard file lost from disk are not blockers: the requests
concerned get a retryable error code on their rows (`batch_not_found`, `output_file_gone`,
`shard_file_missing`), their shard is closed, and `retry` sends them again.

Provider trouble is scheduling (`retries.provider_trouble` / `create_refusal`): a batch refused for
the enqueued-token quota (failed with `token_limit_exceeded`, or HTTP 400 at create), a spurious
"Cannot find file" and a batch that failed before running anything put the shard back in line
(`Ledger.defer`) with a back-off, never touching its requests' attempts. A quota a refusal states
is remembered per provider and model; shards larger than it are split before they are sent again.
Once a batch is loaded its input file is deleted, at the provider and from the work dir (job option
`delete_input_files`).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from warehouse_batch import results, retries, shards
from warehouse_batch.errors import ProviderError, WarehouseBatchError
from warehouse_batch.failpoints import failpoint
from warehouse_batch.jobs import METADATA_JOB_KEY, METADATA_SHARD_KEY, Job
from warehouse_batch.ledger import UNSENT, Ledger, Shard, ShardState
from warehouse_batch.progress import Reporter
from warehouse_batch.providers.base import TERMINAL_STATUSES, BatchInfo, BatchProvider

T = TypeVar("T")
S = ShardState
#: Seconds before a deferred shard is sent again (doubling per deferral, up to MAX_BACKOFF);
#: $WAREHOUSE_BATCH_BACKOFF changes it (tests and the demo set 0).
DEFAULT_BACKOFF = 30.0
MAX_BACKOFF = 900.0
#: Resends of a shard for transient trouble (not quota) before its requests are settled as failed.
MAX_TRANSIENT_RESENDS = 8


class Batches:
    """Moves shards through written → uploading → uploaded → creating → submitted → collected."""

    def __init__(
        self,
        ledger: Ledger,
        provider: Callable[[], BatchProvider],
        reporter: Reporter,
        job: Callable[[str], Job],
        *,
        work_dir: Path,
        concurrency: int = 4,
        backoff: float | None = None,
    ):
        self.ledger = ledger
        #: The provider of a name (a job's `provider` option), created once by the caller's factory.
        self._provider = provider
        self.reporter = reporter
        self._job = job
        self.work_dir = work_dir
        self.concurrency = max(1, concurrency)
        self.backoff = backoff if backoff is not None else float(os.environ.get("WAREHOUSE_BATCH_BACKOFF",
                                                                                   DEFAULT_BACKOFF))

    def provider_for(self, job_name: str) -> BatchProvider:
        return self._provider(self._job(job_name).provider)

    def min_poll_interval(self, job_names: Iterable[str]) -> float:
        """The longest interval the providers of these jobs ask for between status checks."""
        return max((self.provider_for(n).min_poll_interval for n in job_names), default=0.0)

    def _per_job(self, job_name: str | None, states: Iterable[ShardState] | None = None, **kw: Any) -> list[str]:
        """Job names to handle one by one (each job may have its own provider)."""
        if job_name is not None:
            return [job_name]
        return sorted({s["job_name"] for s in self.ledger.shards(None, states, **kw)})

    def result_dir(self, job_name: str) -> Path:
        return self.work_dir / job_name / "results"

    def shard_dir(self, job_name: str) -> Path:
        return self.work_dir / job_name / "shards"

    # -- submit ----------------------------------------------------------------------------
    def submit(self, job_name: str | None = None) -> int:
        """Upload and create a batch for every shard not yet submitted whose back-off is over, within
        each model's token budget and quota."""
        if job_name is None:
            return sum(self.submit(name) for name in self._per_job(None, UNSENT))
        job, provider = self._job(job_name), self.provider_for(job_name)
        pending = self.ledger.shards(job_name, UNSENT)
        if not pending:
            return 0
        if self._split_oversized(job, provider, _due(pending)):
            pending = self.ledger.shards(job_name, UNSENT)
        due = _due(pending)
        self.reporter.step("submitting batches", len(due))
        self._upload(job, provider, [s for s in due if s["state"] in (S.WRITTEN, S.UPLOADING)])
        ready = _due(self.ledger.shards(job_name, (S.UPLOADED, S.CREATING)))
        created = self._create(job, provider, self._within_budget(job, provider, ready))
        waiting = len(self.ledger.shards(job_name, UNSENT))
        self.reporter.done()
        if waiting:
            self.reporter.info(f"{waiting} shard(s) wait for the enqueued-token budget or a back-off; "
                               "`sync` (or `run --wait`) sends them as capacity frees")
        return created

    def _upload(self, job: Job, provider: BatchProvider, todo: list[Shard]) -> None:
        if not todo:
            return
        # An 'uploading' intent may have reached the provider before a crash: reuse that file.
        intents = {f"{s['shard_id']}.jsonl": s["byte_count"] for s in todo if s["state"] == S.UPLOADING}
        if intents:
            known = provider.find_uploads(intents)
            for shard in todo:
                file_id = known.get(f"{shard['shard_id']}.jsonl")
                if file_id:
                    self.ledger.move(shard["shard_id"], S.UPLOADED, file_id=file_id)
                    self.reporter.advance(1)
            todo = [s for s in todo if not known.get(f"{s['shard_id']}.jsonl")]
        intact = []
        for shard in todo:
            path = Path(shard["path"])
            if path.exists() and shards.file_sha256(path) == shard["sha256"]:
                intact.append(shard)
                continue
            # Never sent (no file at the provider): its requests fail retryably and `retry` rewrites them.
            with self.ledger.warehouse.transaction():
                self.ledger.settle_unanswered(
                    shard, "failed", "shard_file_missing",
                    f"the shard file {path} was missing or changed before it was uploaded, so this request was "
                    f"never sent; `warehouse-batch retry {shard['job_name']}` writes and sends it again",
                )
                self.ledger.move(shard["shard_id"], S.COLLECTED, status="cancelled")
            self.reporter.info(f"shard file {path} is missing or changed; its requests are marked for retry")
        with self.ledger.warehouse.transaction():
            for shard in intact:
                self.ledger.move(shard["shard_id"], S.UPLOADING)

        def upload(shard: Shard) -> str:
            return provider.upload(Path(shard["path"]), f"{shard['shard_id']}.jsonl",
                                   expires_after=job.input_expires_after)

        for shard, file_id in self._parallel(upload, intact):
            failpoint("after_upload")
            self.ledger.move(shard["shard_id"], S.UPLOADED, file_id=file_id)

    def token_cap(self, job: Job, model: str | None, provider: BatchProvider | None = None) -> int | None:
        """Enqueued tokens one model may hold: the smallest of max_enqueued_tokens, the configured
        quota and the quota learned from the provider's refusals (None: no limit known)."""
        learned = None
        if provider is not None and model is not None:
            learned = self.ledger.quotas(provider.location).get(model)
        caps = [c for c in (job.max_enqueued_tokens, job.enqueued_token_quota, learned) if c]
        return min(caps) if caps else None

    def shard_token_cap(self, job: Job) -> int | None:
        """The token cap shards of a new run are cut to (learned quotas count when a provider is at hand)."""
        try:
            provider = self.provider_for(job.name) if job.name in self.ledger.job_names() else None
        except WarehouseBatchError:
            provider = None  # no key yet (plan): the configured caps still shape shards
        return self.token_cap(job, job.model, provider)

    def _within_budget(self, job: Job, provider: BatchProvider, ready: list[Shard]) -> list[Shard]:
        """Shards whose model has room for them under the token cap (intents always go)."""
        enqueued = self.ledger.enqueued_tokens()
        chosen = []
        for shard in ready:
            budget = self.token_cap(job, shard["model"], provider)
            used = enqueued.get(shard["model"], 0)
            tokens = int(shard["est_tokens"] or 0)
            if shard["state"] == S.CREATING or budget is None or used == 0 or used + tokens <= budget:
                chosen.append(shard)
                enqueued[shard["model"]] = used + tokens
        return chosen

    def _create(self, job: Job, provider: BatchProvider, todo: list[Shard]) -> int:
        """Create (or adopt) a batch for each shard; returns how many shards now have one."""
        if not todo:
            return 0
        adopted = 0
        intents = [s for s in todo if s["state"] == S.CREATING]
        if intents:  # an announced batch may exist: adopt it rather than create another
            found = provider.find_batches({s["shard_id"] for s in intents}, _since(intents))
            for shard in intents:
                if shard["shard_id"] in found:
                    self.record(shard["shard_id"], found[shard["shard_id"]])
                    self.reporter.advance(1)
                    adopted += 1
            todo = [s for s in todo if s["shard_id"] not in found]
        with self.ledger.warehouse.transaction():
            for shard in todo:
                self.ledger.move(shard["shard_id"], S.CREATING)
        since = time.time()

        def create(shard: Shard) -> BatchInfo | ProviderError:
            try:
                return provider.create(
                    input_ref=shard["file_id"],
                    endpoint=shard["endpoint"],
                    completion_window=job.completion_window,
                    metadata={**job.metadata, METADATA_JOB_KEY: job.name, METADATA_SHARD_KEY: shard["shard_id"]},
                    since=since,
                    output_expires_after=job.output_expires_after,
                )
            except ProviderError as exc:  # handled per shard below, so one refusal never stops the others
                return exc

        created, failure = 0, None
        for shard, info in self._parallel(create, todo):
            if isinstance(info, ProviderError):
                failure = self._refused(job, provider, shard, info) or failure
                continue
            failpoint("after_create")
            self.record(shard["shard_id"], info)
            created += 1
        if failure is not None:
            raise failure
        return adopted + created

    def _refused(self, job: Job, provider: BatchProvider, shard: Shard, exc: ProviderError) -> ProviderError | None:
        """A create that failed: quota and spurious refusals defer the shard; returns what is left to raise."""
        kind = retries.create_refusal(exc.status_code, exc.code, exc.detail)
        if kind is None:
            return exc
        if kind == retries.TRANSIENT:
            # Ambiguous (a 5xx after the provider's own retries): the batch may exist, so the shard stays an
            # intent, reconciled by its tag before the next create.
            if (shard["deferrals"] or 0) >= MAX_TRANSIENT_RESENDS:
                return exc  # counted, so a provider that keeps failing is reported in the end
            self.ledger.defer(shard["shard_id"], S.CREATING, reason=kind,
                              delay=_backoff(self.backoff, shard["deferrals"]))
            self.reporter.info(f"shard {shard['shard_id']}: {exc}; trying again later")
            return None
        self._defer(job, provider, shard, kind, exc.detail)
        return None

    def _defer(self, job: Job, provider: BatchProvider, shard: Shard, kind: str, message: str | None) -> None:
        """Put a shard back in line after provider trouble (its batch, if any, ran nothing)."""
        to = S.UPLOADED
        if kind == retries.QUOTA:
            self._learn_quota(job, provider, shard, message)
        elif kind == retries.FILE_MISSING and shard["file_id"] and not provider.file_exists(shard["file_id"]):
            to = S.WRITTEN  # really gone (expired, deleted): upload the shard again
        self.ledger.defer(shard["shard_id"], to, reason=kind, delay=_backoff(self.backoff, shard["deferrals"]))
        what = {retries.QUOTA: "the enqueued-token quota is full", retries.FILE_MISSING: "the provider could not "
                "find its input file", retries.TRANSIENT: "its batch failed before running anything"}[kind]
        self.reporter.info(f"shard {shard['shard_id']}: {what}; it is sent again automatically")

    def _learn_quota(self, job: Job, provider: BatchProvider, shard: Shard, message: str | None) -> None:
        """Remember the model's quota: the one the refusal states, or (refused with nothing else of the
        model enqueued) half this shard, so that the next attempts fit."""
        if job.enqueued_token_quota is not None or not shard["model"]:
            return  # configured: the user's number stands
        tokens = int(shard["est_tokens"] or 0)
        alone = self.ledger.enqueued_tokens().get(shard["model"], 0) == 0
        stated = retries.learned_limit(message)
        if stated is not None and (not alone or stated < tokens):
            self.ledger.learn_quota(provider.location, shard["model"], stated)
        elif alone and tokens > 1:  # our estimate undercounts what the provider counts: halve
            self.ledger.learn_quota(provider.location, shard["model"], tokens // 2)

    def _split_oversized(self, job: Job, provider: BatchProvider, due: list[Shard]) -> bool:
        """Split unsent shards that hold more tokens than the model's cap into shards that fit; a
        single request over the cap can never be sent and fails (raise the quota, or shorten it)."""
        changed = False
        for shard in due:
            if shard["state"] not in (S.WRITTEN, S.UPLOADED):
                continue
            cap = self.token_cap(job, shard["model"], provider)
            if cap is None or int(shard["est_tokens"] or 0) <= cap:
                continue
            tokens = self.ledger.request_tokens(shard["shard_id"])
            if len(tokens) <= 1:
                with self.ledger.warehouse.transaction():
                    self.ledger.settle_unanswered(
                        shard, "failed", "over_token_quota",
                        f"this request alone needs about {shard['est_tokens']:,} enqueued tokens, more than the "
                        f"model's quota ({cap:,}); raise the quota (or enqueued_token_quota), or shorten the request")
                    self.ledger.move(shard["shard_id"], S.COLLECTED, status="failed")
                changed = True
                continue
            children, assignment = shards.split_shard(Path(shard["path"]), shard["shard_id"], tokens, cap,
                                                      endpoint=shard["endpoint"], model=shard["model"])
            self.ledger.split(shard, children, assignment)
            self.reporter.info(f"shard {shard['shard_id']} holds more than the {cap:,}-token quota of "
                               f"{shard['model']}: split into {len(children)}")
            changed = True
        return changed

    def record(self, shard_id: str, info: BatchInfo) -> None:
        self.ledger.move(shard_id, S.SUBMITTED, batch_id=info.id)
        self.ledger.update_status(shard_id, info)

    # -- poll and collect ------------------------------------------------------------------
    def poll(self, job_name: str | None = None) -> list[Shard]:
        """Refresh every live batch from the provider (no more often than it asks); returns the
        batches now ready to collect."""
        if job_name is None:
            return [s for name in self._per_job(None, live_only=True) for s in self.poll(name)]
        submitted = self.ledger.shards(job_name, live_only=True)
        if not submitted:  # nothing at the provider: no client, so collecting never needs an API key
            return self.ledger.shards(job_name, ready_only=True)
        provider = self.provider_for(job_name)
        floor = datetime.now(timezone.utc).timestamp() - provider.min_poll_interval
        live = [s for s in submitted
                if provider.min_poll_interval <= 0 or s["polled_at"] is None or s["polled_at"].timestamp() <= floor]

        def retrieve(shard: Shard) -> BatchInfo | None:
            try:
                return provider.retrieve(shard["batch_id"])
            except ProviderError as exc:
                if exc.gone:
                    return None
                raise

        for shard, info in self._parallel(retrieve, live):
            if info is None:
                self._gone(shard, "batch_not_found",
                           f"the provider no longer knows batch {shard['batch_id']}; `warehouse-batch retry "
                           f"{shard['job_name']}` sends these requests again")
            else:
                self.ledger.update_status(shard["shard_id"], info)
            failpoint("mid_poll")
        return self.ledger.shards(job_name, ready_only=True)

    def _gone(self, shard: Shard, code: str, message: str) -> None:
        with self.ledger.warehouse.transaction():
            self.ledger.settle_unanswered(shard, "failed", code, message)
            self.ledger.move(shard["shard_id"], S.COLLECTED)
        self.reporter.info(message)

    def collect(self, ready: list[Shard]) -> None:
        """Download every ready batch's files (in parallel), then load them all in one transaction.
        Batches that failed for the provider's reasons go back in line instead."""
        ready = self._reschedule(ready)
        if not ready:
            return
        self.reporter.step("downloading results", len(ready))
        loads = []
        providers = {name: self.provider_for(name) for name in {s["job_name"] for s in ready}}

        def download_all(shard: Shard) -> list[Path] | None:
            return self._download_all(providers[shard["job_name"]], shard)

        for shard, files in self._parallel(download_all, ready):
            if files is None:  # a result file is gone at the provider
                self._gone(shard, "output_file_gone",
                           f"the result files of batch {shard['batch_id']} are gone at the provider (they are deleted "
                           f"some time after the batch ends); `warehouse-batch retry {shard['job_name']}` sends the "
                           "requests that had no answer yet again")
                continue
            loads.append({**shard, "files": files, "errors": json.loads(shard["errors"]) if shard["errors"] else []})
            self.reporter.advance(1)
        self.reporter.done()
        if not loads:
            return
        failpoint("after_download")
        self.reporter.step("loading results")
        try:
            with self.ledger.warehouse.transaction():
                results.load(self.ledger, loads)
                failpoint("mid_load")
                for shard in loads:
                    self.ledger.move(shard["shard_id"], S.COLLECTED)
            self.reporter.done()
        except duckdb.InvalidInputException as exc:  # a damaged line: discard the files, fetch them again
            for shard in loads:
                for path in shard["files"]:
                    path.unlink(missing_ok=True)
            raise ProviderError(
                f"a downloaded result file could not be read ({str(exc).splitlines()[0]}); it was discarded. "
                "Re-run collect to download it again",
                transient=True,
            ) from None
        for name in providers:
            self.delete_inputs(name)

    def _reschedule(self, ready: list[Shard]) -> list[Shard]:
        """Defer the failed batches that ran nothing for the provider's reasons; the rest is collected."""
        keep = []
        for shard in ready:
            errors = json.loads(shard["errors"]) if shard["errors"] else []
            kind = retries.provider_trouble(errors, shard["completed_count"]) if shard["status"] == "failed" else None
            if kind is None or (kind != retries.QUOTA and (shard["deferrals"] or 0) >= MAX_TRANSIENT_RESENDS):
                keep.append(shard)
                continue
            job = self._job(shard["job_name"])
            message = "; ".join(str(e.get("message") or "") for e in errors)
            self._defer(job, self.provider_for(job.name), shard, kind, message)
        return keep

    def delete_inputs(self, job_name: str) -> None:
        """Delete the input files of the job's collected batches, the shard file in the work dir and
        the uploaded copy, unless the job keeps them (`delete_input_files`). Best effort: an uploaded
        file left behind expires by itself (`input_expires_after`); a local one goes at the next
        collect or cancel."""
        job = self._job(job_name)
        if not job.delete_input_files:
            return
        shards.remove_sent(self.shard_dir(job_name), self.ledger.collected_shards(job_name))
        todo = self.ledger.input_files_to_delete(job_name)
        if not todo:
            return
        provider = self.provider_for(job_name)
        try:
            for shard, _ in self._parallel(lambda s: provider.delete_file(s["file_id"]), todo):
                self.ledger.input_deleted(shard["shard_id"])
        except ProviderError as exc:
            self.reporter.info(f"could not delete an input file of job {job_name} ({exc}); it expires by itself")

    def _download_all(self, provider: BatchProvider, shard: Shard) -> list[Path] | None:
        """The batch's result files, checked; fetched again while they look cut short. None: gone.

        Runs on a pool thread, so it touches files and the provider only, never the ledger."""
        info = BatchInfo(id=shard["batch_id"], status=shard["status"], output_file_id=shard["output_file_id"],
                         error_file_id=shard["error_file_id"])
        files: list[Path] = []
        try:
            for _ in range(3):
                files, lines = [], 0
                for kind, ref in provider.result_files(info):
                    path, count = self._download(provider, shard, ref, kind)
                    files.append(path)
                    lines += count
                # A completed batch has a line per request; fewer means a download cut at a line boundary.
                if shard["status"] != "completed" or not shard["total_count"] or lines >= shard["total_count"]:
                    break
        except ProviderError as exc:
            if exc.gone:
                return None
            raise
        return files

    def _download(self, provider: BatchProvider, shard: Shard, ref: str, kind: str,
                  attempts: int = 3) -> tuple[Path, int]:
        dest = self.result_dir(shard["job_name"]) / f"{shard['batch_id']}_{kind}.jsonl"
        last: Exception | None = None
        for _ in range(attempts):
            provider.download(ref, dest)
            try:
                return dest, check_download(dest)
            except ValueError as exc:
                last = exc
                dest.unlink(missing_ok=True)
        raise ProviderError(
            f"the {kind} file {ref} of batch {shard['batch_id']} arrived damaged {attempts} times ({last}); "
            "re-run collect to try again",
            transient=True,
        )

    # -- cancel ----------------------------------------------------------------------------
    def cancel(self, job_name: str) -> None:
        """Cancel live batches; shards never submitted end with their requests cancelled."""
        provider = self.provider_for(job_name)
        live = self.ledger.shards(job_name, (S.WRITTEN, S.UPLOADING, S.UPLOADED, S.CREATING, S.SUBMITTED))
        intents = [s for s in live if s["state"] == S.CREATING]
        if intents:
            for shard_id, info in provider.find_batches({s["shard_id"] for s in intents}, _since(intents)).items():
                self.record(shard_id, info)
            live = self.ledger.shards(job_name, (S.WRITTEN, S.UPLOADING, S.UPLOADED, S.CREATING, S.SUBMITTED))
        running = [s for s in live if s["batch_id"] and s["status"] not in TERMINAL_STATUSES]
        for shard, info in self._parallel(lambda s: provider.cancel(s["batch_id"]), running):
            self.ledger.update_status(shard["shard_id"], info)
        for shard in live:
            if not shard["batch_id"]:  # never reached the provider: the requests end cancelled
                with self.ledger.warehouse.transaction():
                    results.settle(self.ledger, shard, "cancelled")
                    self.ledger.move(shard["shard_id"], S.COLLECTED, status="cancelled")
        if live:
            self.delete_inputs(job_name)

    # -- helpers ---------------------------------------------------------------------------
    def _parallel(self, fn: Callable[[Shard], T], items: Iterable[Shard]) -> Iterable[tuple[Shard, T]]:
        """Run `fn` over items on the pool; yield (item, result) on this thread as each finishes.

        Every success is yielded (and so recorded) before the first failure is raised."""
        items = list(items)
        if len(items) <= 1 or self.concurrency == 1:
            for item in items:
                yield item, fn(item)
            return
        failure: BaseException | None = None
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items)), thread_name_prefix="wb-provider") as pool:
            futures = {pool.submit(fn, item): item for item in items}
            for future in as_completed(futures):
                try:
                    value = future.result()
                except WarehouseBatchError as exc:
                    failure = failure or exc
                    continue
                yield futures[future], value
        if failure is not None:
            raise failure


def _backoff(base: float, deferrals: int | None) -> float:
    return min(base * 2 ** min(int(deferrals or 0), 10), MAX_BACKOFF)


def _due(shards_: list[Shard]) -> list[Shard]:
    """Shards whose back-off is over."""
    now = datetime.now(timezone.utc)
    return [s for s in shards_ if s.get("not_before") is None or s["not_before"] <= now]


def _since(intents: list[Shard]) -> float:
    oldest = min((s["intent_at"] for s in intents if s["intent_at"]), default=None)
    return oldest.timestamp() if oldest else time.time() - 86400


def check_download(path: Path) -> int:
    """Line count of a downloaded JSONL file; ValueError if its last line is cut off.

    A line that is not JSON is caught by the load itself (which then discards the files)."""
    lines = 0
    last = b"\n"
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    if last != b"\n":
        raise ValueError(f"{path.name} does not end with a newline (truncated download)")
    return lines
