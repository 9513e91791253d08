"""A step may narrow DuckDB for itself (the shard writer: one thread, part of the memory limit);
the warehouse's own settings must come back exactly as the user gave them, however often it runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from warehouse_batch.warehouses import DuckDBWarehouse


def _settings(warehouse: DuckDBWarehouse) -> tuple[str, str]:
    return (warehouse.scalar("SELECT current_setting('memory_limit')"),
            warehouse.scalar("SELECT current_setting('threads')"))


def test_a_narrowed_step_gives_back_threads_and_memory_limit(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb", memory_limit="300MB", threads=2)
    try:
        before = _settings(warehouse)
        assert before == ("286.1 MiB", 2)
        for _ in range(3):  # restoring DuckDB's rounded display of the limit would shrink it a little each time
            with warehouse.single_threaded(memory_share=0.5):
                assert _settings(warehouse) == ("143.0 MiB", 1)
            assert _settings(warehouse) == before
    finally:
        warehouse.close()


def test_a_step_that_fails_inside_a_transaction_gives_them_back_after_the_rollback(tmp_path: Path) -> None:
    """A failing statement aborts DuckDB's transaction, which then refuses even SET: the failure is
    what the caller sees, and the settings return with the rollback."""
    import duckdb
    import pytest

    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb", memory_limit="300MB", threads=2)
    try:
        before = _settings(warehouse)
        with pytest.raises(duckdb.Error, match="the step failed"):
            with warehouse.transaction(), warehouse.single_threaded(memory_share=0.5):
                warehouse.execute("SELECT error('the step failed')")
        assert _settings(warehouse) == before
    finally:
        warehouse.close()


def test_a_connection_we_were_handed_keeps_its_settings(tmp_path: Path) -> None:
    import duckdb

    con = duckdb.connect(str(tmp_path / "theirs.duckdb"))
    con.execute("SET threads = 2")
    warehouse = DuckDBWarehouse(con, work_dir=tmp_path / "work")
    before = _settings(warehouse)
    with warehouse.single_threaded(memory_share=0.5):
        assert _settings(warehouse) == before
    con.close()


def _sized_at(tmp_path: Path, limit: str | None, size: Callable[[DuckDBWarehouse], int], share: float = 1.0) -> int:
    """What `size` gives on a warehouse opened with this memory limit, inside a step given `share` of it."""
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb", memory_limit=limit)
    try:
        with warehouse.single_threaded(memory_share=share):
            return size(warehouse)
    finally:
        warehouse.close()


def test_the_shard_writer_passes_are_sized_by_its_share_of_the_limit(tmp_path: Path) -> None:
    """1M rows of the rows table per pass at the default 256MB limit; half of that at 128MB, where
    passes of 1M rows ran out of memory."""
    from warehouse_batch import shards

    for limit, rows in [(None, 1_000_000), ("128MB", 500_000), ("1GB", 3_906_250)]:
        got = _sized_at(tmp_path, limit, shards.rows_per_pass, shards.STREAM_MEMORY_SHARE)
        assert abs(got - rows) / rows < 0.01, (limit, got)


def test_publish_parts_are_sized_by_the_limit(tmp_path: Path) -> None:
    """A million rows per publish statement at the default 256MB limit (one part for 1M rows); half
    of that at 128MB, where parts of 1M rows ran out of memory."""
    from warehouse_batch import publish

    for limit, rows in [(None, 1_049_005), ("128MB", 524_288), ("1GB", 4_098_046)]:
        got = _sized_at(tmp_path, limit, publish.part_rows)
        assert abs(got - rows) / rows < 0.01, (limit, got)
