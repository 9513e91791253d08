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
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from warehouse_batch import results, shards
from warehouse_batch.errors import ProviderError, WarehouseBatchError
from warehouse_batch.failpoints import failpoint
from warehouse_batch.jobs import METADATA_JOB_KEY, METADATA_SHARD_KEY, Job
from warehouse_batch.ledger import Ledger, Shard, ShardState
from warehouse_batch.progress import Reporter
from warehouse_batch.providers.base import TERMINAL_STATUSES, BatchInfo, BatchProvider

T = TypeVar("T")
S = ShardState


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
    ):
        self.ledger = ledger
        self._provider = provider
        self.reporter = reporter
        self._job = job
        self.work_dir = work_dir
        self.concurrency = max(1, concurrency)

    @property
    def provider(self) -> BatchProvider:
        return self._provider()

    def result_dir(self, job_name: str) -> Path:
        return self.work_dir / job_name / "results"

    # -- submit ----------------------------------------------------------------------------
    def submit(self, job_name: str | None = None) -> int:
        """Upload and create a batch for every shard not yet submitted, within each model's token budget."""
        pending = self.ledger.shards(job_name, (S.WRITTEN, S.UPLOADING, S.UPLOADED, S.CREATING))
        if not pending:
            return 0
        self.reporter.step("submitting batches", len(pending))
        self._upload([s for s in pending if s["state"] in (S.WRITTEN, S.UPLOADING)])
        ready = self.ledger.shards(job_name, (S.UPLOADED, S.CREATING))
        created = self._create(self._within_budget(ready))
        deferred = len(ready) - created
        self.reporter.done()
        if deferred:
            self.reporter.info(f"{deferred} shard(s) wait for the enqueued-token budget; `sync` submits them later")
        return created

    def _upload(self, todo: list[Shard]) -> None:
        if not todo:
            return
        # An 'uploading' intent may have reached the provider before a crash: reuse that file.
        intents = {f"{s['shard_id']}.jsonl": s["byte_count"] for s in todo if s["state"] == S.UPLOADING}
        if intents:
            known = self.provider.find_uploads(intents)
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
        provider = self.provider

        def upload(shard: Shard) -> str:
            return provider.upload(Path(shard["path"]), f"{shard['shard_id']}.jsonl")

        for shard, file_id in self._parallel(upload, intact):
            failpoint("after_upload")
            self.ledger.move(shard["shard_id"], S.UPLOADED, file_id=file_id)

    def _within_budget(self, ready: list[Shard]) -> list[Shard]:
        """Shards whose model has room for them under the job's max_enqueued_tokens (intents always go)."""
        enqueued = self.ledger.enqueued_tokens()
        chosen = []
        for shard in ready:
            budget = self._job(shard["job_name"]).max_enqueued_tokens
            used = enqueued.get(shard["model"], 0)
            tokens = int(shard["est_tokens"] or 0)
            if shard["state"] == S.CREATING or budget is None or used == 0 or used + tokens <= budget:
                chosen.append(shard)
                enqueued[shard["model"]] = used + tokens
        return chosen

    def _create(self, todo: list[Shard]) -> int:
        """Create (or adopt) a batch for each shard; returns how many shards now have one."""
        if not todo:
            return 0
        adopted = 0
        intents = [s for s in todo if s["state"] == S.CREATING]
        if intents:  # an announced batch may exist: adopt it rather than create another
            found = self.provider.find_batches({s["shard_id"] for s in intents}, _since(intents))
            for shard in intents:
                if shard["shard_id"] in found:
                    self.record(shard["shard_id"], found[shard["shard_id"]])
                    self.reporter.advance(1)
                    adopted += 1
            todo = [s for s in todo if s["shard_id"] not in found]
        with self.ledger.warehouse.transaction():
            for shard in todo:
                self.ledger.move(shard["shard_id"], S.CREATING)
        provider, since = self.provider, time.time()
        jobs = {name: self._job(name) for name in {s["job_name"] for s in todo}}  # ledger reads stay on this thread

        def create(shard: Shard) -> BatchInfo:
            job = jobs[shard["job_name"]]
            return provider.create(
                input_ref=shard["file_id"],
                endpoint=shard["endpoint"],
                completion_window=job.completion_window,
                metadata={**job.metadata, METADATA_JOB_KEY: job.name, METADATA_SHARD_KEY: shard["shard_id"]},
                since=since,
            )

        for shard, info in self._parallel(create, todo):
            failpoint("after_create")
            self.record(shard["shard_id"], info)
        return adopted + len(todo)

    def record(self, shard_id: str, info: BatchInfo) -> None:
        self.ledger.move(shard_id, S.SUBMITTED, batch_id=info.id)
        self.ledger.update_status(shard_id, info)

    # -- poll and collect ------------------------------------------------------------------
    def poll(self, job_name: str | None = None) -> list[Shard]:
        """Refresh every live batch from the provider; returns the batches now ready to collect."""
        live = self.ledger.shards(job_name, live_only=True)
        provider = self.provider

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
        """Download every ready batch's files (in parallel), then load them all in one transaction."""
        if not ready:
            return
        self.reporter.step("downloading results", len(ready))
        loads = []
        for shard, files in self._parallel(self._download_all, ready):
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
        except duckdb.InvalidInputException as exc:  # a damaged line: discard the files, fetch them again
            for shard in loads:
                for path in shard["files"]:
                    path.unlink(missing_ok=True)
            raise ProviderError(
                f"a downloaded result file could not be read ({str(exc).splitlines()[0]}); it was discarded. "
                "Re-run collect to download it again",
                transient=True,
            ) from None
        self.reporter.done()

    def _download_all(self, shard: Shard) -> list[Path] | None:
        """The batch's result files, checked; fetched again while they look cut short. None: gone.

        Runs on a pool thread, so it touches files and the provider only, never the ledger."""
        info = BatchInfo(id=shard["batch_id"], status=shard["status"], output_file_id=shard["output_file_id"],
                         error_file_id=shard["error_file_id"])
        files: list[Path] = []
        try:
            for _ in range(3):
                files, lines = [], 0
                for kind, ref in self.provider.result_files(info):
                    path, count = self._download(shard, ref, kind)
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

    def _download(self, shard: Shard, ref: str, kind: str, attempts: int = 3) -> tuple[Path, int]:
        dest = self.result_dir(shard["job_name"]) / f"{shard['batch_id']}_{kind}.jsonl"
        last: Exception | None = None
        for _ in range(attempts):
            self.provider.download(ref, dest)
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
        live = self.ledger.shards(job_name, (S.WRITTEN, S.UPLOADING, S.UPLOADED, S.CREATING, S.SUBMITTED))
        intents = [s for s in live if s["state"] == S.CREATING]
        if intents:
            for shard_id, info in self.provider.find_batches({s["shard_id"] for s in intents}, _since(intents)).items():
                self.record(shard_id, info)
            live = self.ledger.shards(job_name, (S.WRITTEN, S.UPLOADING, S.UPLOADED, S.CREATING, S.SUBMITTED))
        provider = self.provider
        running = [s for s in live if s["batch_id"] and s["status"] not in TERMINAL_STATUSES]
        for shard, info in self._parallel(lambda s: provider.cancel(s["batch_id"]), running):
            self.ledger.update_status(shard["shard_id"], info)
        for shard in live:
            if not shard["batch_id"]:  # never reached the provider: the requests end cancelled
                with self.ledger.warehouse.transaction():
                    results.settle(self.ledger, shard, "cancelled")
                    self.ledger.move(shard["shard_id"], S.COLLECTED, status="cancelled")

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
