"""The provider side of shards: submit, poll, collect and cancel their batches.

Each side effect is announced in the store (state `uploading` / `creating`, committed) before it
happens and recorded after, so a process killed anywhere resumes by reconciling the announced
intents with the provider (a file by its name, a batch by its metadata tag) instead of repeating
them. Provider calls for many batches run on a bounded thread pool; every store write stays on the
calling thread, because a DuckDB connection is not shared across threads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from warehouse_batch import results, shards
from warehouse_batch.errors import ProviderError, WarehouseBatchError
from warehouse_batch.failpoints import failpoint
from warehouse_batch.jobs import METADATA_JOB_KEY, METADATA_SHARD_KEY, Job
from warehouse_batch.progress import Reporter
from warehouse_batch.providers.openai import TERMINAL_STATUSES, BatchInfo, OpenAIBatchProvider
from warehouse_batch.store import SCHEMA, Store

T = TypeVar("T")
Item = dict[str, Any]
_TERMINAL_SQL = "(" + ", ".join(f"'{s}'" for s in TERMINAL_STATUSES) + ")"


class Batches:
    """Moves shards through written → uploading → uploaded → creating → submitted → collected."""

    def __init__(
        self,
        store: Store,
        provider: Callable[[], OpenAIBatchProvider],
        reporter: Reporter,
        job: Callable[[str], Job],
        *,
        concurrency: int = 4,
    ):
        self.store = store
        self._provider = provider
        self.reporter = reporter
        self._job = job
        self.concurrency = max(1, concurrency)

    @property
    def provider(self) -> OpenAIBatchProvider:
        return self._provider()

    def result_dir(self, job_name: str) -> Path:
        return self.store.work_dir / job_name / "results"

    # -- submit ----------------------------------------------------------------------------
    def submit(self, job_name: str | None = None) -> int:
        """Upload and create a batch for every shard not yet submitted, within each model's token budget."""
        pending = self.rows(job_name, "state IN ('written', 'uploading', 'uploaded', 'creating')")
        if not pending:
            return 0
        self.reporter.step("submitting batches", len(pending))
        self._upload([s for s in pending if s["state"] in ("written", "uploading")])
        ready = self.rows(job_name, "state IN ('uploaded', 'creating')")
        created = self._create(self._within_budget(ready))
        deferred = len(ready) - created
        self.reporter.done()
        if deferred:
            self.reporter.info(f"{deferred} shard(s) wait for the enqueued-token budget; `sync` submits them later")
        return created

    def _upload(self, todo: list[Item]) -> None:
        if not todo:
            return
        # An 'uploading' intent may have reached the provider before a crash: reuse that file.
        if any(s["state"] == "uploading" for s in todo):
            known = self.provider.find_files({f"{s['shard_id']}.jsonl": s["byte_count"] for s in todo if s["state"] == "uploading"})
            for shard in todo:
                file_id = known.get(f"{shard['shard_id']}.jsonl")
                if file_id:
                    self.set(shard["shard_id"], state="uploaded", file_id=file_id)
                    self.reporter.advance(1)
            todo = [s for s in todo if not known.get(f"{s['shard_id']}.jsonl")]
        for shard in todo:
            path = Path(shard["path"])
            if not path.exists() or shards.file_sha256(path) != shard["sha256"]:
                raise ProviderError(
                    f"shard file {path} is missing or changed since it was written, so it cannot be uploaded; "
                    f"`warehouse-batch cancel {shard['job_name']}` marks its requests cancelled, then "
                    f"`warehouse-batch retry {shard['job_name']}` writes and sends them again"
                )
        with self.store.transaction():
            for shard in todo:
                self.set(shard["shard_id"], state="uploading", intent_at=_now())
        provider = self.provider

        def upload(shard: Item) -> str:
            return provider.upload(Path(shard["path"]), f"{shard['shard_id']}.jsonl")

        for shard, file_id in self._parallel(upload, todo):
            failpoint("after_upload")
            self.set(shard["shard_id"], state="uploaded", file_id=file_id)

    def _within_budget(self, ready: list[Item]) -> list[Item]:
        """Shards whose model has room for them under the job's max_enqueued_tokens (intents always go)."""
        enqueued: dict[str, int] = {
            row["model"]: int(row["tokens"] or 0)
            for row in self.store.rows(
                f"SELECT model, sum(est_tokens) AS tokens FROM {SCHEMA}.batches "
                f"WHERE state = 'submitted' AND coalesce(status, '') NOT IN {_TERMINAL_SQL} GROUP BY model"
            )
        }
        chosen = []
        for shard in ready:
            budget = self._job(shard["job_name"]).max_enqueued_tokens
            used = enqueued.get(shard["model"], 0)
            tokens = int(shard["est_tokens"] or 0)
            if shard["state"] == "creating" or budget is None or used == 0 or used + tokens <= budget:
                chosen.append(shard)
                enqueued[shard["model"]] = used + tokens
        return chosen

    def _create(self, todo: list[Item]) -> int:
        """Create (or adopt) a batch for each shard; returns how many shards now have one."""
        if not todo:
            return 0
        adopted = 0
        intents = [s for s in todo if s["state"] == "creating"]
        if intents:  # an announced batch may exist: adopt it rather than create another
            oldest = min((s["intent_at"] for s in intents if s["intent_at"]), default=None)
            since = oldest.timestamp() if oldest else time.time() - 86400
            found = self.provider.find_batches({s["shard_id"] for s in intents}, since)
            for shard in intents:
                if shard["shard_id"] in found:
                    self.record(shard["shard_id"], found[shard["shard_id"]])
                    self.reporter.advance(1)
                    adopted += 1
            todo = [s for s in todo if s["shard_id"] not in found]
        with self.store.transaction():
            for shard in todo:
                self.set(shard["shard_id"], state="creating", intent_at=_now())
        provider, since = self.provider, time.time()
        jobs = {name: self._job(name) for name in {s["job_name"] for s in todo}}  # store reads stay on this thread

        def create(shard: Item) -> BatchInfo:
            job = jobs[shard["job_name"]]
            return provider.create_batch(
                file_id=shard["file_id"],
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
        self.set(shard_id, state="submitted", batch_id=info.id, submitted_at=_now())
        self.update_status(shard_id, info)

    # -- poll and collect ------------------------------------------------------------------
    def poll(self, job_name: str | None = None) -> list[Item]:
        """Refresh every live batch from the provider; returns the batches now ready to collect."""
        live = self.rows(job_name, f"state = 'submitted' AND coalesce(status, '') NOT IN {_TERMINAL_SQL}")
        provider = self.provider
        for shard, info in self._parallel(lambda s: provider.retrieve(s["batch_id"]), live):
            self.update_status(shard["shard_id"], info)
            failpoint("mid_poll")
        return self.rows(job_name, f"state = 'submitted' AND status IN {_TERMINAL_SQL}")

    def collect(self, ready: list[Item]) -> None:
        """Download every ready batch's files (in parallel), then load them all in one transaction."""
        if not ready:
            return
        self.reporter.step("downloading results", len(ready))
        loads = []
        for shard, files in self._parallel(self._download_all, ready):
            loads.append({**shard, "files": files, "errors": json.loads(shard["errors"]) if shard["errors"] else []})
            self.reporter.advance(1)
        self.reporter.done()
        failpoint("after_download")
        self.reporter.step("loading results")
        try:
            with self.store.transaction():
                results.load_batches(self.store, loads)
                failpoint("mid_load")
                for shard in loads:
                    self.set(shard["shard_id"], state="collected", collected_at=_now())
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

    def _download_all(self, shard: Item) -> list[Path]:
        """The batch's output and error files, checked; fetched again while they look cut short.

        Runs on a pool thread, so it touches files and the provider only, never the store."""
        files: list[Path] = []
        for _ in range(3):
            files, lines = [], 0
            for kind in ("output", "error"):
                file_id = shard[f"{kind}_file_id"]
                if file_id:
                    path, count = self._download(shard, file_id, kind)
                    files.append(path)
                    lines += count
            # A completed batch has a line per request; fewer means a download cut at a line boundary.
            if shard["status"] != "completed" or not shard["total_count"] or lines >= shard["total_count"]:
                break
        return files

    def _download(self, shard: Item, file_id: str, kind: str, attempts: int = 3) -> tuple[Path, int]:
        dest = self.result_dir(shard["job_name"]) / f"{shard['batch_id']}_{kind}.jsonl"
        last: Exception | None = None
        for _ in range(attempts):
            self.provider.download(file_id, dest)
            try:
                return dest, check_download(dest)
            except ValueError as exc:
                last = exc
                dest.unlink(missing_ok=True)
        raise ProviderError(
            f"the {kind} file {file_id} of batch {shard['batch_id']} arrived damaged {attempts} times ({last}); "
            "re-run collect to try again",
            transient=True,
        )

    # -- cancel ----------------------------------------------------------------------------
    def cancel(self, job_name: str) -> None:
        """Cancel live batches; shards never submitted end with their requests cancelled."""
        live = self.rows(job_name, "state <> 'collected'")
        intents = [s for s in live if s["state"] == "creating"]
        if intents:
            oldest = min((s["intent_at"] for s in intents if s["intent_at"]), default=None)
            found = self.provider.find_batches({s["shard_id"] for s in intents}, oldest.timestamp() if oldest else time.time() - 86400)
            for shard_id, info in found.items():
                self.record(shard_id, info)
            live = self.rows(job_name, "state <> 'collected'")
        provider = self.provider
        running = [s for s in live if s["batch_id"] and s["status"] not in TERMINAL_STATUSES]
        for shard, info in self._parallel(lambda s: provider.cancel(s["batch_id"]), running):
            self.update_status(shard["shard_id"], info)
        for shard in live:
            if not shard["batch_id"]:  # never reached the provider: the requests end cancelled
                with self.store.transaction():
                    results.load_batches(self.store, [{**shard, "status": "cancelled", "files": [], "errors": []}])
                    self.set(shard["shard_id"], state="collected", status="cancelled", collected_at=_now())

    # -- progress --------------------------------------------------------------------------
    def progress(self, job_name: str | None) -> dict[str, Any]:
        """Requests done / total across live batches, and an estimated time left from the rate so far."""
        row = self.store.one(
            f"""SELECT count(*), coalesce(sum(coalesce(completed_count, 0) + coalesce(failed_count, 0)), 0),
                       coalesce(sum(coalesce(total_count, line_count)), 0),
                       epoch(now()) - epoch(min(submitted_at))
                FROM {SCHEMA}.batches WHERE state <> 'collected'""" + (" AND job_name = ?" if job_name else ""),
            [job_name] if job_name else None,
        )
        live, done, total, elapsed = row
        eta = None
        if done and total > done and elapsed:
            eta = round(elapsed / done * (total - done))
        return {"live_batches": live, "done": int(done), "total": int(total), "eta_seconds": eta}

    # -- store helpers ---------------------------------------------------------------------
    def rows(self, job_name: str | None, where: str) -> list[Item]:
        sql = f"SELECT * FROM {SCHEMA}.batches WHERE {where}"
        params: list[Any] = []
        if job_name is not None:
            sql += " AND job_name = ?"
            params.append(job_name)
        return self.store.rows(sql + " ORDER BY shard_id", params)

    def set(self, shard_id: str, **values: Any) -> None:
        assignments = ", ".join(f"{k} = ?" for k in values)
        self.store.execute(f"UPDATE {SCHEMA}.batches SET {assignments} WHERE shard_id = ?", [*values.values(), shard_id])

    def update_status(self, shard_id: str, info: BatchInfo) -> None:
        self.set(
            shard_id,
            status=info.status,
            total_count=info.total,
            completed_count=info.completed,
            failed_count=info.failed,
            errors=json.dumps(info.errors) if info.errors else None,
            output_file_id=info.output_file_id,
            error_file_id=info.error_file_id,
            input_tokens=info.input_tokens,
            output_tokens=info.output_tokens,
            polled_at=_now(),
            finished_at=_now() if info.terminal else None,
        )

    def _parallel(self, fn: Callable[[Item], T], items: Iterable[Item]) -> Iterable[tuple[Item, T]]:
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


def _now() -> datetime:
    return datetime.now(timezone.utc)
