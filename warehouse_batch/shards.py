"""Shards: JSONL request files that each respect the provider's per-file limits.

Assignment happens in SQL (window functions over line sizes); writing streams Arrow batches of
pre-built lines to disk, hashing as it goes, and renames each file into place only when complete.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from warehouse_batch import arrow_pool
from warehouse_batch.errors import DiskFullError
from warehouse_batch.failpoints import failpoint
from warehouse_batch.names import temp_table
from warehouse_batch.quoting import sql_literal
from warehouse_batch.warehouses.base import Warehouse
from warehouse_batch.warehouses.duckdb import rows_within_limit

PLAN = "wb_shard_plan"
#: Temp table: the row of the rows table that builds each planned request, and its shard.
PICKED = "wb_shard_rows"
#: Bytes of request lines per Arrow batch streamed to the shard files: with DuckDB's own memory limit,
#: this (plus its copy sorted by shard, and the pending line index) is what writing shards holds,
#: whatever the job's size.
BATCH_BYTES = 8 << 20
#: DuckDB memory per row of a pass: the shard writer joins the rows table in passes of rowid ranges
#: (DuckDB skips the row groups outside one), as many rows as its share of the limit holds at this
#: many bytes each (1M rows at the default limit). In one pass over a 10M-row job the join's hash
#: table did not fit: DuckDB spilled every row's text (4 GB) to disk and back. A pass's (rowid,
#: shard) table takes about 28 bytes a row; the rest of the share is for the scans, so that passes
#: of 1M rows at a 128MB limit (48 MB) ran out of memory, and half of that fits.
PASS_ROW_BYTES = 96
#: The part of DuckDB's memory limit the shard writer's query gets; Python holds the rest (Arrow
#: batches, the line index, the files). In passes the query needs little; the rest of the share only
#: caches temp-table blocks. At 10M rows, replayed: ¾ peaked at 633 MB, ½ at 575 MB and ⅜ at 563 MB,
#: in the same time (benchmarks/RESULTS.md, 2026-12-03).
STREAM_MEMORY_SHARE = 0.375
#: The part of it that planning and picking shards get, on one thread. By then `run` holds about
#: 240 MB outside DuckDB (Python, the tokenizer), and these statements go past the limit by what
#: DuckDB does not count: at 10M rows, planning on two threads at the whole 256 MB peaked 352 MB
#: above the process's base and ran out of memory at ¾ of it; one thread at ¾ peaks 259 MB above,
#: in 1.6× the time (benchmarks/RESULTS.md, 2026-12-03).
PLAN_MEMORY_SHARE = 0.75
#: Where a request's line is in its shard: `offset` characters into our line (after `{"custom_id":"`).
_HASH_AT, _HASH_LEN = 14, 64


@dataclass(frozen=True)
class ShardFile:
    shard_no: int
    shard_id: str
    endpoint: str
    model: str | None
    path: Path
    line_count: int
    byte_count: int
    sha256: str
    tokens: int | None = None  # estimated enqueued tokens (set when a shard is split)


def plan_shards(warehouse: Warehouse, todo_sql: str, *, max_lines: int, max_bytes: int, max_tokens: int | None = None,
                max_inputs: int | None = None, inputs_sql: str | None = None) -> int:
    """Give every request of `todo_sql` (request_hash, endpoint, model, line_bytes, tokens) a shard and a line.

    Files never mix endpoints or models. Within one (endpoint, model), requests are cut into chunks
    of `max_lines`, and chunks over `max_bytes` are cut again on cumulative size: a slice of
    `max_bytes - largest line` bytes can overshoot by at most one line, so no file exceeds the limit.
    With `max_tokens`, slices are cut once more the same way on estimated tokens, so that every
    shard fits the enqueued-token budget on its own; with `max_inputs` (embeddings: inputs across
    all requests of a batch) once more on the input counts `inputs_sql` gives (request_hash, inputs).
    Returns the number of shards.
    """
    token_slice = "0" if max_tokens is None else (
        "sum(tokens) OVER (PARTITION BY endpoint, model, chunk, slice ORDER BY request_hash "
        f"ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) // greatest({int(max_tokens)} - heaviest, 1)"
    )
    cut_inputs = max_inputs is not None and inputs_sql is not None
    input_slice = "0" if not cut_inputs else (
        "sum(inputs) OVER (PARTITION BY endpoint, model, chunk, slice, tslice ORDER BY request_hash "
        f"ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) // greatest({int(max_inputs or 0)} - most_inputs, 1)"
    )
    with_inputs = (f"SELECT t.*, coalesce(i.inputs, 1) AS inputs FROM ({todo_sql}) AS t "
                   f"LEFT JOIN ({inputs_sql}) AS i USING (request_hash)") if cut_inputs else \
        f"SELECT *, 1 AS inputs FROM ({todo_sql})"
    warehouse.execute(f"DROP TABLE IF EXISTS temp.{PLAN}")
    with warehouse.single_threaded(memory_share=PLAN_MEMORY_SHARE):
        warehouse.execute(
            f"""
            CREATE TEMP TABLE {PLAN} AS
            WITH todo AS ({with_inputs}),
            chunked AS (
                SELECT *, (row_number() OVER (PARTITION BY endpoint, model ORDER BY request_hash) - 1) // {int(max_lines)} AS chunk,
                       max(line_bytes) OVER (PARTITION BY endpoint, model) AS widest
                FROM todo
            ),
            sliced AS (
                SELECT *, sum(line_bytes) OVER (PARTITION BY endpoint, model, chunk ORDER BY request_hash
                                                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
                          // greatest({int(max_bytes)} - widest, 1) AS slice,
                       max(tokens) OVER (PARTITION BY endpoint, model) AS heaviest,
                       max(inputs) OVER (PARTITION BY endpoint, model) AS most_inputs
                FROM chunked
            ),
            budgeted AS (
                SELECT *, {token_slice} AS tslice FROM sliced
            ),
            counted AS (
                SELECT *, {input_slice} AS islice FROM budgeted
            )
            SELECT request_hash, endpoint, model, line_bytes, tokens,
                   dense_rank() OVER (ORDER BY endpoint, model, chunk, slice, tslice, islice) AS shard_no
            FROM counted
            """
        )
    return int(warehouse.scalar(f"SELECT coalesce(max(shard_no), 0) FROM {PLAN}"))


def input_count_sql(input_column: str | None, column_type: str | None) -> str:
    """SQL counting the inputs of one request (embeddings take a text or a list of texts / token
    lists) from a row aliased `q`: its `input` column, or `input` inside a `body` column."""
    if input_column == "body":
        value = "json(q.body)->'input'"
        return (f"CASE WHEN json_type({value}) = 'ARRAY' AND json_type({value}->0) IN ('VARCHAR', 'ARRAY') "
                f"THEN json_array_length({value}) ELSE 1 END")
    if input_column is None or column_type is None:
        return "1"
    column = f"q.{input_column}"
    kind = column_type.upper()
    if kind.endswith("[][]") or kind in ("VARCHAR[]", "TEXT[]", "STRING[]"):
        return f"coalesce(len({column}), 1)"
    if kind == "JSON":
        return (f"CASE WHEN json_type({column}) = 'ARRAY' AND json_type({column}->0) IN ('VARCHAR', 'ARRAY') "
                f"THEN json_array_length({column}) ELSE 1 END")
    return "1"


def check_request_limits(warehouse: Warehouse, job: Any, table: str, columns: dict[str, str]) -> list[str]:
    """Rows whose request breaks a per-request limit of the endpoint (embeddings: 2,048 inputs),
    named by custom_id, so they are refused before anything is uploaded."""
    from warehouse_batch import compile as compiler
    from warehouse_batch import endpoints

    endpoint = endpoints.get(job.endpoint)
    if endpoint.max_inputs_per_request is None:
        return []
    column = next((c for c in (*endpoint.inputs, "body") if c in columns), None)
    count = input_count_sql(column, columns.get(column or ""))
    return compiler.offenders(
        warehouse, f"{table} AS q", f"{count} > {endpoint.max_inputs_per_request}",
        f"have more than {endpoint.max_inputs_per_request:,} inputs in one {job.endpoint} request (the API's limit); "
        "split their input lists into several rows",
    )


def plan_job(warehouse: Warehouse, job: Any, todo_sql: str, *, rows: str, columns: dict[str, str],
             max_tokens: int | None) -> int:
    """`plan_shards` with every limit of the job's endpoint and provider (rows: the table holding the
    job's query rows with `__wb_request_hash`; columns: its column types)."""
    from warehouse_batch import endpoints
    from warehouse_batch.providers import max_requests_per_file

    endpoint = endpoints.get(job.endpoint)
    inputs_sql = None
    if endpoint.max_inputs_per_batch is not None:
        column = next((c for c in (*endpoint.inputs, "body") if c in columns), None)
        inputs_sql = (f"SELECT __wb_request_hash AS request_hash, max({input_count_sql(column, columns.get(column or ''))}) "
                      f"AS inputs FROM {rows} AS q GROUP BY 1")
    return plan_shards(warehouse, todo_sql, max_lines=max_requests_per_file(job), max_bytes=job.max_bytes_per_shard,
                       max_tokens=max_tokens, max_inputs=endpoint.max_inputs_per_batch, inputs_sql=inputs_sql)


def write_shards(
    warehouse: Warehouse,
    directory: Path,
    shard_ids: dict[int, str],
    *,
    rows: str,
    body_sql: str,
    lines_index: Path,
    progress: Callable[[int], None] | None = None,
) -> list[ShardFile]:
    """Write the planned shards as `<directory>/<shard_id>.jsonl`, atomically, in one streaming pass,
    and `lines_index`: a Parquet file of (request_hash, shard_id, line_no) for every line written,
    which `Ledger.record_shards` appends to request_shards.

    Each line's body is built again, in SQL, from one row of `rows` (the job's rows table, aliased
    `q`) that asks for that request. Lines come unordered and go to their shard's file as raw
    Arrow bytes: no sort, no Python strings. Order inside a file carries no meaning (answers map
    by custom_id; a validation error's line number is looked up in the file itself). Lines stream
    in Arrow batches of about BATCH_BYTES, in passes over `rows` sized by `rows_per_pass`, so memory
    does not grow with the job.
    The plan table stays; the caller records it and drops it."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in [*directory.glob("*.jsonl.tmp"), *directory.glob("*-lines.parquet")]:
        stale.unlink()  # left by a crash mid-write or before cleanup; never referenced by the ledger
    plan = {no: (endpoint, model) for no, endpoint, model in warehouse.execute(
        f"SELECT DISTINCT shard_no, endpoint, model FROM {PLAN}").fetchall()}
    mean_line = warehouse.scalar(f"SELECT coalesce(avg(line_bytes), 1) FROM {PLAN}")
    with temp_table(warehouse, PICKED) as picked:
        with warehouse.single_threaded(memory_share=PLAN_MEMORY_SHARE):
            # First, in DuckDB alone: which row of `rows` (its rowid) builds each planned request, and
            # its shard. The joins on 64-character hashes then spill (¾ of the limit took no longer
            # than all of it at 10M rows), and the streaming query below joins on a number, against
            # a table of two numbers.
            warehouse.execute(f"""
                CREATE TEMP TABLE {picked.name} AS
                SELECT min(q.rowid) AS row_id, any_value(p.shard_no)::INTEGER AS shard_no
                FROM {PLAN} AS p JOIN {rows} AS q ON q.__wb_request_hash = p.request_hash
                GROUP BY p.request_hash""")
        with warehouse.single_threaded(memory_share=STREAM_MEMORY_SHARE):
            # One DuckDB thread (a join then holds one set of hash partitions, not one per thread) and
            # part of its memory limit: the rest is for Python's side (Arrow batches, the line index).
            try:
                return _write_lines(warehouse, directory, shard_ids, plan, mean_line, picked=picked.name, rows=rows,
                                    body_sql=body_sql, lines_index=lines_index, progress=progress)
            finally:
                arrow_pool.release_unused()


def rows_per_pass(warehouse: Warehouse) -> int:
    """Rows of the rows table per pass of the shard writer, from DuckDB's memory limit right now."""
    return rows_within_limit(warehouse, PASS_ROW_BYTES)


def _write_lines(warehouse: Warehouse, directory: Path, shard_ids: dict[int, str],
                 plan: dict[int, tuple[str, str | None]], mean_line: float, *, picked: str, rows: str,
                 body_sql: str, lines_index: Path, progress: Callable[[int], None] | None) -> list[ShardFile]:
    urls = ", ".join(f"({no}, {sql_literal(json.dumps(endpoint))})" for no, (endpoint, _) in plan.items())
    [(first, last)] = warehouse.execute(f"SELECT min(row_id), max(row_id) FROM {picked}").fetchall()
    step = rows_per_pass(warehouse)
    batch_rows = max(1024, int(BATCH_BYTES // max(float(mean_line), 1.0)))
    open_shards: dict[int, _OpenShard] = {}
    index = _LineIndex(lines_index)
    reader: pa.RecordBatchReader | None = None
    try:
        for low in range(first, last + 1, step) if first is not None else ():
            high = low + step - 1
            # A relation (not an executed cursor) streams to Arrow without an extra copy of the rows.
            reader = warehouse.engine.sql(
                f"""
                SELECT s.shard_no,
                       '{{"custom_id":"' || q.__wb_request_hash || '","method":"POST","url":' || u.url
                       || ',"body":' || {body_sql} || '}}' || chr(10) AS line
                FROM {picked} AS s JOIN {rows} AS q ON q.rowid = s.row_id
                     JOIN (VALUES {urls}) AS u(shard_no, url) ON u.shard_no = s.shard_no
                WHERE s.row_id BETWEEN {low} AND {high} AND q.rowid BETWEEN {low} AND {high}
                """
            ).to_arrow_reader(batch_rows)
            for batch in reader:
                for no, selected in _by_shard(batch.column("shard_no"), batch.column("line"), single=len(plan) == 1):
                    shard = open_shards.get(no)
                    if shard is None:
                        shard = open_shards[no] = _OpenShard(no, shard_ids[no], directory, *plan[no])
                    index.add(_line_index(selected, shard.shard_id, shard.lines))
                    shard.write(selected)
                    failpoint("mid_shard_write")
                if progress:
                    progress(len(batch))
        index.close()
        return [open_shards[no].finish() for no in sorted(open_shards)]
    except BaseException as exc:
        if reader is not None:
            reader.close()  # an open result would refuse every later query on this connection
        index.discard()
        lines_index.unlink(missing_ok=True)
        # Nothing of this call is recorded yet: remove every file it made (finished ones too, they
        # would never be sent), so a re-run writes them afresh and a full disk gets its space back.
        for shard in open_shards.values():
            shard.discard()
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            needed = int(warehouse.scalar(f"SELECT coalesce(sum(line_bytes), 0) FROM {PLAN}"))
            raise DiskFullError(
                f"No space left on device writing shards to {directory} (about {_mb(needed)} MB needed, "
                f"{_mb(shutil.disk_usage(directory).free)} MB free) — free space or pass --work-dir on a larger "
                "disk, then run the same command again (no shard was recorded, nothing was sent)"
            ) from None
        raise


_INDEX_SCHEMA = pa.schema([("request_hash", pa.string()), ("shard_id", pa.string()), ("line_no", pa.int64())])
#: Index rows per Parquet row group. Lines come unordered, so every batch holds a piece of nearly
#: every shard: one row group per piece meant batches × shards of them (100,000 at 10M requests), and
#: the writer keeps each one's metadata until it closes (≈ 600 MB there).
INDEX_GROUP_ROWS = 256 * 1024


def _by_shard(numbers: pa.Array, lines: pa.Array, *, single: bool) -> list[tuple[int, pa.Array]]:
    """The lines of one batch, grouped by shard number: one sort per batch (filtering once per shard
    scanned the batch as many times as there are shards)."""
    if len(numbers) == 0:
        return []
    if single:
        return [(numbers[0].as_py(), lines)]
    order = pc.sort_indices(numbers)
    numbers, lines = numbers.take(order), lines.take(order)
    groups, start = [], 0
    for run in pc.value_counts(numbers):  # in order of first appearance: the sorted order
        count = run["counts"].as_py()
        groups.append((run["values"].as_py(), lines.slice(start, count)))
        start += count
    return groups


class _LineIndex:
    """The Parquet line index, written in row groups of INDEX_GROUP_ROWS."""

    def __init__(self, path: Path):
        self._writer = pq.ParquetWriter(path, _INDEX_SCHEMA)
        self._pending: list[pa.Table] = []
        self._rows = 0

    def add(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._rows += len(table)
        if self._rows >= INDEX_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.concat_tables(self._pending), row_group_size=max(self._rows, 1))
        self._pending, self._rows = [], 0

    def close(self) -> None:
        try:
            self._flush()
        finally:
            self._writer.close()

    def discard(self) -> None:
        """Close after a failure (the caller deletes the file): a full disk must not hide the failure."""
        self._pending = []
        with contextlib.suppress(OSError):
            self._writer.close()


def _line_index(lines: pa.Array | pa.ChunkedArray, shard_id: str, first: int) -> pa.Table:
    """(request_hash, shard_id, line_no) of lines about to be appended to a shard that holds `first` lines."""
    hashes = pc.utf8_slice_codeunits(lines, _HASH_AT, _HASH_AT + _HASH_LEN)
    ones = pa.repeat(pa.scalar(1, pa.int64()), len(lines))
    return pa.table([hashes, pa.repeat(pa.scalar(shard_id, pa.string()), len(lines)),
                     pc.add(pc.cumulative_sum(ones), first - 1)], schema=_INDEX_SCHEMA)


#: Our shard lines start with the custom_id (the request hash), so a line maps back to its request
#: without parsing it (splitting a shard, naming the request of a validation error's line).
LINE_CUSTOM_ID = re.compile(rb'^\{"custom_id":"([0-9a-f]{64})"')


def remove_unrecorded(directory: Path, prefixes: Iterable[str], recorded: set[str]) -> int:
    """Delete the shard files in `directory` whose name starts with one of `prefixes` (one per run
    of the job) but that the ledger never recorded; returns the bytes freed. A process stopped
    between writing a run's shards and recording them, or between cutting a shard in parts and
    recording the parts, leaves such files, and the next run writes new ones under its own run id
    (8.6 GB at 10M rows). A file no run of this job names is left alone: another warehouse may
    share the work dir."""
    prefixes = tuple(prefixes)
    return _remove_shard_files(directory, lambda shard_id: shard_id.startswith(prefixes) and shard_id not in recorded)


def remove_sent(directory: Path, collected: set[str]) -> int:
    """Delete the shard files in `directory` of shards that are collected; returns the bytes freed.
    Nothing reads a collected shard's file again (a retry writes its unanswered requests to new
    shards), and a 10M-row job's shard files take 8.6 GB."""
    return _remove_shard_files(directory, collected.__contains__)


def _remove_shard_files(directory: Path, doomed: Callable[[str], bool]) -> int:
    """Delete the shard files in `directory` whose shard id `doomed` names; returns the bytes freed."""
    freed = 0
    for path in directory.glob("*.jsonl") if directory.is_dir() else ():
        if doomed(path.name.removesuffix(".jsonl")):
            freed += path.stat().st_size
            path.unlink(missing_ok=True)
    return freed


def split_shard(path: Path, shard_id: str, tokens: dict[str, int], cap: int, *, endpoint: str,
                model: str | None) -> tuple[list[ShardFile], dict[str, tuple[str, int]]]:
    """Cut a shard file into files of at most `cap` estimated tokens each (a line heavier than the
    cap gets a file of its own), streaming line by line. Returns the files (`<shard_id>.<n>`) and
    which file and line (0-based) each request (custom_id) went to. Files are written atomically;
    nothing is recorded."""
    children: list[ShardFile] = []
    assignment: dict[str, tuple[str, int]] = {}
    current: _SplitFile | None = None
    with open(path, "rb") as handle:
        for line in handle:
            match = LINE_CUSTOM_ID.match(line)
            if match is None:
                continue
            custom_id = match.group(1).decode()
            weight = tokens.get(custom_id, 0)
            if current is not None and current.lines and current.tokens + weight > cap:
                children.append(current.finish())
                current = None
            if current is None:
                number = len(children) + 1
                current = _SplitFile(number, f"{shard_id}.{number}", path.parent, endpoint, model)
            assignment[custom_id] = (current.shard_id, current.lines)
            current.add(line, weight)
    if current is not None:
        children.append(current.finish())
    return children, assignment


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f}"


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
        self.tokens: int | None = None

    def write(self, lines: pa.Array | pa.ChunkedArray) -> None:
        """Append lines (each ending in a newline) straight from their Arrow data buffers."""
        chunks = lines.chunks if isinstance(lines, pa.ChunkedArray) else [lines]
        for chunk in chunks:
            self._append(_string_bytes(chunk), len(chunk))

    def _append(self, data: bytes | memoryview, lines: int) -> None:
        self.handle.write(data)
        self.digest.update(data)
        self.lines += lines
        self.bytes += len(data)

    def finish(self) -> ShardFile:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.tmp, self.path)
        return ShardFile(self.shard_no, self.shard_id, self.endpoint, self.model, self.path, self.lines, self.bytes,
                         self.digest.hexdigest(), self.tokens)

    def discard(self) -> None:
        """Close without keeping anything: the handle (its unflushed buffer may not fit on a full
        disk either), the temp file and a file already renamed into place."""
        try:
            self.handle.close()
        except OSError:
            pass
        self.tmp.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)


class _SplitFile(_OpenShard):
    """A file of a split shard: whole lines copied from the parent, with their estimated tokens."""

    def __init__(self, number: int, shard_id: str, directory: Path, endpoint: str, model: str | None):
        super().__init__(number, shard_id, directory, endpoint, model)
        self.tokens = 0

    def add(self, line: bytes, weight: int) -> None:
        self._append(line, 1)
        self.tokens += weight


def _string_bytes(array: pa.Array) -> memoryview | bytes:
    """The concatenated values of a string array, without building Python strings."""
    if array.null_count:
        raise ValueError("a request line is NULL; this is a bug in building request bodies")
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        _, offsets, data = array.buffers()
        width = "i" if pa.types.is_string(array.type) else "q"
        positions = memoryview(offsets).cast(width)
        start, end = positions[array.offset], positions[array.offset + len(array)]
        return memoryview(data)[start:end]
    return "".join(array.to_pylist()).encode("utf-8")  # other layouts (e.g. string_view): the slow road


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["ShardFile", "file_sha256", "input_count_sql", "plan_job", "plan_shards", "split_shard", "write_shards"]
