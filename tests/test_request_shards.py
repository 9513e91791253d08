"""Shard membership is append-only (migration 0012): request_shards says, for every time a request
was put in a shard, which shard and which line of its file. The files on disk must agree, line for
line, so a lost work directory can be rebuilt from the warehouse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Warehouse, write_job
from warehouse_batch import shards

WAIT = ("--wait", "--poll-interval", "0.05")


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAREHOUSE_BATCH_BACKOFF", "0")
    monkeypatch.setenv("WAREHOUSE_BATCH_MIN_POLL_INTERVAL", "0")


def _job(warehouse: Warehouse, tmp_path: Path, n: int, **header: object) -> Path:
    warehouse.sql(f"CREATE OR REPLACE TABLE reviews AS SELECT i AS id, 'Review number ' || i || ': ' || "
                  f"repeat('good value and quick delivery ', 6) AS text FROM range({n}) t(i)")
    return write_job(tmp_path / "reviews_job.sql", {"name": "reviews_job", "model": "gpt-4o-mini", **header},
                     "SELECT id AS custom_id, text AS prompt FROM reviews")


def _files_agree_with_request_shards(warehouse: Warehouse, shard_ids: list[str]) -> int:
    """Every line of these shards' files is the request request_shards puts at that line."""
    lines = 0
    for shard_id in shard_ids:
        [(path,)] = warehouse.sql("SELECT path FROM warehouse_batch.batches WHERE shard_id = ?", [shard_id])
        in_file = [json.loads(line)["custom_id"] for line in Path(path).read_text(encoding="utf-8").splitlines()]
        recorded = warehouse.sql("SELECT line_no, request_hash FROM warehouse_batch.request_shards "
                                 "WHERE shard_id = ? ORDER BY line_no", [shard_id])
        assert recorded == list(enumerate(in_file)), shard_id
        lines += len(in_file)
    return lines


@pytest.mark.parametrize("rows_per_pass", [None, 7], ids=["one pass", "passes of 7 rows"])
def test_each_request_is_recorded_at_its_line_of_its_shard(warehouse: Warehouse, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           rows_per_pass: int | None) -> None:
    if rows_per_pass:  # the writer joins the rows table by rowid range, as it does past 1M rows
        monkeypatch.setattr(shards, "rows_per_pass", lambda warehouse: rows_per_pass)
    job = _job(warehouse, tmp_path, 45, max_requests_per_shard=10)
    warehouse.cli("run", str(job), "--keep-input-files", *WAIT)
    assert warehouse.sql("SELECT status, count(*) FROM reviews_job GROUP BY 1") == [("completed", 45)]
    shard_ids = [s for (s,) in warehouse.sql("SELECT shard_id FROM warehouse_batch.batches ORDER BY 1")]
    assert len(shard_ids) == 5
    assert _files_agree_with_request_shards(warehouse, shard_ids) == 45
    # One membership per request, each its first send; the writer's line index was recorded and removed.
    assert warehouse.sql("SELECT count(*), count(DISTINCT request_hash), max(attempt) "
                         "FROM warehouse_batch.request_shards") == [(45, 45, 1)]
    assert not list(Path(warehouse.db).parent.rglob("*.lines.parquet"))


def test_a_split_shard_records_its_requests_at_their_new_lines(warehouse: Warehouse, tmp_path: Path) -> None:
    # ~100 tokens a line by the emulator's count: the quota holds about 10 of the 40 requests at
    # once, so the first shard is refused, the quota learned, and the unsent shard split.
    warehouse.emulator.configure(enqueued_token_limit=1000)
    warehouse.cli("run", str(_job(warehouse, tmp_path, 40)), "--keep-input-files", *WAIT)
    assert warehouse.sql("SELECT status, count(*) FROM reviews_job GROUP BY 1") == [("completed", 40)]
    split = warehouse.sql("SELECT count(*) FROM warehouse_batch.batches WHERE status = 'split'")[0][0]
    assert split >= 1
    children = [s for (s,) in warehouse.sql(
        "SELECT shard_id FROM warehouse_batch.batches WHERE parent_shard_id IS NOT NULL ORDER BY 1")]
    assert _files_agree_with_request_shards(warehouse, children) > 0
    # A split is not a send: every request was sent once, and its current shard is the one that answered.
    assert warehouse.sql("SELECT DISTINCT attempts FROM warehouse_batch.request_attempts") == [(1,)]
    assert warehouse.sql(
        "SELECT count(*) FROM warehouse_batch.request_attempts AS a JOIN warehouse_batch.results AS r "
        "USING (request_hash) WHERE a.shard_id <> r.shard_id") == [(0,)]


def test_only_this_jobs_unrecorded_shard_files_are_removed(tmp_path: Path) -> None:
    """What a stopped run wrote and never recorded goes; a recorded shard, one of its parts, and any
    file no run of this job names (another warehouse may share the work dir) stay."""
    names = {
        "job-run1-0001.jsonl": "recorded",
        "job-run1-0002.jsonl": "unrecorded",
        "job-run1-0001.1.jsonl": "unrecorded",  # a part cut from a shard, never recorded
        "job-run2-0001.1.jsonl": "recorded",
        "job-other-0001.jsonl": "foreign",  # a run this warehouse never had
        "notes.txt": "foreign",
    }
    for name in names:
        (tmp_path / name).write_text("x" * 10)
    freed = shards.remove_unrecorded(tmp_path, ["job-run1-", "job-run2-"], {"job-run1-0001", "job-run2-0001.1"})
    assert freed == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, kind in names.items() if kind != "unrecorded")
    assert shards.remove_unrecorded(tmp_path / "missing", ["job-run1-"], set()) == 0
