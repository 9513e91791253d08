"""Shards: JSONL request files that each respect the provider's per-file limits.

Assignment happens in SQL (window functions over line sizes); writing streams Arrow batches of
pre-built lines to disk, hashing as it goes, and renames each file into place only when complete.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from warehouse_batch.failpoints import failpoint
from warehouse_batch.store import SCHEMA, Store

PLAN = "wb_shard_plan"


@dataclass(frozen=True)
class ShardFile:
    shard_id: str
    endpoint: str
    model: str | None
    path: Path
    line_count: int
    byte_count: int
    sha256: str


def plan_shards(store: Store, todo_sql: str, *, max_lines: int, max_bytes: int, max_tokens: int | None = None) -> int:
    """Give every request of `todo_sql` (request_hash, endpoint, model, line_bytes, tokens) a shard and a line.

    Files never mix endpoints or models. Within one (endpoint, model), requests are cut into chunks
    of `max_lines`, and chunks over `max_bytes` are cut again on cumulative size: a slice of
    `max_bytes - largest line` bytes can overshoot by at most one line, so no file exceeds the limit.
    With `max_tokens`, slices are cut once more the same way on estimated tokens, so that every
    shard fits the enqueued-token budget on its own. Returns the number of shards.
    """
    token_slice = "0" if max_tokens is None else (
        "sum(tokens) OVER (PARTITION BY endpoint, model, chunk, slice ORDER BY request_hash "
        f"ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) // greatest({int(max_tokens)} - heaviest, 1)"
    )
    store.execute(f"DROP TABLE IF EXISTS temp.{PLAN}")
    store.execute(
        f"""
        CREATE TEMP TABLE {PLAN} AS
        WITH todo AS ({todo_sql}),
        chunked AS (
            SELECT *, (row_number() OVER (PARTITION BY endpoint, model ORDER BY request_hash) - 1) // {int(max_lines)} AS chunk,
                   max(line_bytes) OVER (PARTITION BY endpoint, model) AS widest
            FROM todo
        ),
        sliced AS (
            SELECT *, sum(line_bytes) OVER (PARTITION BY endpoint, model, chunk ORDER BY request_hash
                                            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
                      // greatest({int(max_bytes)} - widest, 1) AS slice,
                   max(tokens) OVER (PARTITION BY endpoint, model) AS heaviest
            FROM chunked
        ),
        budgeted AS (
            SELECT *, {token_slice} AS tslice FROM sliced
        )
        SELECT request_hash, endpoint, model, line_bytes, tokens,
               dense_rank() OVER (ORDER BY endpoint, model, chunk, slice, tslice) AS shard_no,
               row_number() OVER (PARTITION BY endpoint, model, chunk, slice, tslice ORDER BY request_hash) AS line_no
        FROM budgeted
        """
    )
    return int(store.scalar(f"SELECT coalesce(max(shard_no), 0) FROM {PLAN}"))


def write_shards(store: Store, directory: Path, shard_ids: dict[int, str], progress=None) -> list[ShardFile]:
    """Write the planned shards as `<directory>/<shard_id>.jsonl`, atomically, in one streaming pass.

    The plan table stays; the caller records it and drops it."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.jsonl.tmp"):
        stale.unlink()  # left by a crash mid-write; never referenced by the store
    # A relation (not an executed cursor) streams to Arrow without an extra copy of the rows.
    reader = store.con.sql(
        f"""
        SELECT p.shard_no, p.endpoint, p.model,
               '{{"custom_id":"' || r.request_hash || '","method":"POST","url":' || to_json(r.endpoint)
               || ',"body":' || r.body || '}}' || chr(10) AS line
        FROM {PLAN} AS p JOIN {SCHEMA}.requests AS r USING (request_hash)
        ORDER BY p.shard_no, p.line_no
        """
    ).to_arrow_reader(20_000)
    files: list[ShardFile] = []
    current: _OpenShard | None = None
    for batch in reader:
        shard_nos = batch.column("shard_no").to_pylist()
        lines = batch.column("line").to_pylist()
        endpoints = batch.column("endpoint")
        models = batch.column("model")
        start = 0
        # Split the Arrow batch into runs of equal shard_no, writing each run in one call.
        for i in range(1, len(shard_nos) + 1):
            if i < len(shard_nos) and shard_nos[i] == shard_nos[start]:
                continue
            no = shard_nos[start]
            if current is None or current.shard_no != no:
                if current is not None:
                    files.append(current.finish())
                current = _OpenShard(no, shard_ids[no], directory, endpoints[start].as_py(), models[start].as_py())
            current.write(lines[start:i])
            failpoint("mid_shard_write")
            if progress:
                progress(i - start)
            start = i
    if current is not None:
        files.append(current.finish())
    return files


class _OpenShard:
    def __init__(self, shard_no: int, shard_id: str, directory: Path, endpoint: str, model: str | None):
        self.shard_no = shard_no
        self.shard_id = shard_id
        self.endpoint = endpoint
        self.model = model
        self.path = directory / f"{shard_id}.jsonl"
        self.tmp = directory / f"{shard_id}.jsonl.tmp"
        self.handle = open(self.tmp, "wb")
        self.digest = hashlib.sha256()
        self.lines = 0
        self.bytes = 0

    def write(self, lines: list[str]) -> None:
        data = "".join(lines).encode("utf-8")
        self.handle.write(data)
        self.digest.update(data)
        self.lines += len(lines)
        self.bytes += len(data)

    def finish(self) -> ShardFile:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.tmp, self.path)
        return ShardFile(self.shard_id, self.endpoint, self.model, self.path, self.lines, self.bytes, self.digest.hexdigest())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["ShardFile", "file_sha256", "plan_shards", "write_shards"]
