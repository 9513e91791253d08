"""The enqueued-token budget: shards cut to fit it, submitted only while the model has room."""

from __future__ import annotations

from tests.conftest import Warehouse

QUERY = "SELECT id AS custom_id, 'question number ' || id AS prompt FROM range(30) t(id)"


def test_run_larger_than_the_budget_submits_as_batches_finish(warehouse: Warehouse) -> None:
    warehouse.cli("run", "--name", "budgeted", "--model", "gpt-4o-mini", "--param", "max_tokens=10",
                  "--max-enqueued-tokens", "400", "--query", QUERY, "--wait", "--poll-interval", "0.05")
    batches = warehouse.rows("SELECT shard_id, est_tokens, submitted_at, finished_at FROM warehouse_batch.batches ORDER BY submitted_at")
    assert len(batches) > 1
    assert all(b["est_tokens"] <= 400 for b in batches)
    # Never two batches enqueued at once: each was submitted after the previous one finished.
    for previous, following in zip(batches, batches[1:]):
        assert following["submitted_at"] >= previous["finished_at"]
    assert warehouse.sql("SELECT status, count(*) FROM budgeted GROUP BY ALL") == [("completed", 30)]
    assert warehouse.counters()["batches_created"] == len(batches)


def test_without_wait_the_rest_waits_for_sync(warehouse: Warehouse) -> None:
    warehouse.emulator.configure(validation_delay=10, time_scale=0)
    warehouse.cli("run", "--name", "budgeted", "--model", "gpt-4o-mini", "--param", "max_tokens=10",
                  "--max-enqueued-tokens", "400", "--query", QUERY)
    shards = warehouse.sql("SELECT count(*) FROM warehouse_batch.batches")[0][0]
    assert warehouse.counters()["batches_created"] == 1 < shards
    assert warehouse.sql("SELECT count(*) FROM warehouse_batch.batches WHERE state = 'uploaded'") == [(shards - 1,)]
    for _ in range(shards):
        warehouse.emulator.advance(11)
        warehouse.cli("sync")
    assert warehouse.counters()["batches_created"] == shards
    assert warehouse.sql("SELECT status, count(*) FROM budgeted GROUP BY ALL") == [("completed", 30)]


def test_a_request_larger_than_the_budget_is_refused(warehouse: Warehouse) -> None:
    warehouse.sql("CREATE TABLE big AS SELECT * FROM (VALUES (1, 'short'), (2, repeat('long text ', 200))) t(id, txt)")
    result = warehouse.cli("run", "--name", "toobig", "--model", "gpt-4o-mini", "--max-enqueued-tokens", "100",
                           "--query", "SELECT id AS custom_id, txt AS prompt FROM big", expect=3)
    assert "max_enqueued_tokens = 100" in result.output and "custom_id '2'" in result.output
    assert warehouse.counters()["files_uploaded"] == 0
