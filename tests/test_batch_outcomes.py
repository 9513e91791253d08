"""Batches that fail validation, are cancelled or expire: every row ends in exactly one visible state."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Warehouse

QUERY = "SELECT id AS custom_id, 'question number ' || id AS prompt FROM range(1, 21) t(id)"


def test_batch_failing_validation_shows_its_errors(warehouse: Warehouse) -> None:
    warehouse.emulator.configure(supported_models=("gpt-4o-mini",))
    result = warehouse.cli("run", "--name", "bad_model", "--model", "gpt-nonexistent", "--query", QUERY,
                           "--wait", "--poll-interval", "0.05", expect=5)
    assert "model_not_found" in result.output  # the batch's errors are printed with the status
    rows = warehouse.rows("SELECT status, error_code, error_message FROM bad_model")
    assert len(rows) == 20
    assert {r["status"] for r in rows} == {"failed"}
    assert {r["error_code"] for r in rows} == {"model_not_found"}
    assert all("gpt-nonexistent" in r["error_message"] for r in rows)
    batch = warehouse.rows("SELECT status, state, errors FROM warehouse_batch.batches")[0]
    assert batch["status"] == "failed" and batch["state"] == "collected"
    errors = json.loads(batch["errors"])
    assert len(errors) == 20 and {e["code"] for e in errors} == {"model_not_found"}
    assert sorted(e["line"] for e in errors) == list(range(1, 21))
    status = warehouse.cli_json("status", "bad_model")[0]
    assert status["statuses"] == {"failed": 20}


def test_cancelled_batch_keeps_finished_answers(warehouse: Warehouse) -> None:
    warehouse.emulator.configure(request_time=10.0, time_scale=0.0)  # the clock moves only when told
    warehouse.cli("run", "--name", "stopme", "--model", "gpt-4o-mini", "--query", QUERY)
    warehouse.emulator.advance(65)  # 6 requests done (10 s each)
    report = warehouse.cli_json("cancel", "stopme")
    assert report[0]["batches"][0]["status"] in ("cancelling", "cancelled")
    warehouse.emulator.advance(1)
    warehouse.cli("collect", "stopme", "--wait", "--poll-interval", "0.05", expect=5)
    statuses = dict(warehouse.sql("SELECT status, count(*) FROM stopme GROUP BY ALL"))
    assert statuses == {"completed": 6, "cancelled": 14}
    assert warehouse.sql("SELECT DISTINCT error_code FROM stopme WHERE status = 'cancelled'") == [("batch_cancelled",)]
    assert warehouse.counters()["batches_cancelled"] == 1
    assert warehouse.sql("SELECT status FROM warehouse_batch.batches") == [("cancelled",)]


def test_expired_batch_keeps_partial_results(warehouse: Warehouse) -> None:
    warehouse.emulator.configure(request_time=10.0, time_scale=0.0, completion_window_seconds=105)
    warehouse.cli("run", "--name", "slow", "--model", "gpt-4o-mini", "--query", QUERY)
    warehouse.emulator.advance(50)
    warehouse.cli("collect", "slow")
    assert dict(warehouse.sql("SELECT status, count(*) FROM slow GROUP BY ALL")) == {"pending": 20}
    warehouse.emulator.advance(60)  # past expires_at (105 s): 10 done in the window, 10 never ran
    warehouse.cli("collect", "slow", "--wait", "--poll-interval", "0.05", expect=5)
    statuses = dict(warehouse.sql("SELECT status, count(*) FROM slow GROUP BY ALL"))
    assert statuses == {"completed": 10, "expired": 10}
    assert warehouse.sql("SELECT DISTINCT error_code FROM slow WHERE status = 'expired'") == [("batch_expired",)]
    assert warehouse.sql("SELECT count(*) FROM slow WHERE status = 'completed' AND content IS NOT NULL") == [(10,)]
    assert warehouse.sql("SELECT status FROM warehouse_batch.batches") == [("expired",)]


def test_cancel_before_submission_marks_rows_cancelled(warehouse: Warehouse) -> None:
    warehouse.emulator.inject_fault("create_batch", status=400, times=1)
    warehouse.cli("run", "--name", "never", "--model", "gpt-4o-mini", "--query", QUERY, expect=4)
    assert warehouse.counters()["batches_created"] == 0
    warehouse.cli("cancel", "never")
    assert dict(warehouse.sql("SELECT status, count(*) FROM never GROUP BY ALL")) == {"cancelled": 20}
    assert warehouse.counters()["batches_created"] == 0


def test_a_lost_shard_file_is_recovered_by_retry(warehouse: Warehouse) -> None:
    """A shard file deleted before its upload: sync sends nothing it cannot verify, marks the rows
    with a retryable error that says how to recover, and retry rebuilds the lines from the job's rows."""
    warehouse.emulator.inject_fault("upload_file", status=400, times=1)
    warehouse.cli("run", "--name", "lost", "--model", "gpt-4o-mini", "--query", QUERY, expect=4)
    (path,) = warehouse.sql("SELECT path FROM warehouse_batch.batches")[0]
    Path(path).unlink()
    result = warehouse.cli("sync")
    assert "missing or changed" in " ".join(result.output.split())  # the console wraps long paths
    rows = warehouse.rows("SELECT status, error_code, error_message FROM lost")
    assert {(r["status"], r["error_code"]) for r in rows} == {("failed", "shard_file_missing")}
    assert "warehouse-batch retry lost" in rows[0]["error_message"]
    assert warehouse.counters()["files_uploaded"] == 0
    warehouse.cli("retry", "lost", "--wait", "--poll-interval", "0.05")
    assert dict(warehouse.sql("SELECT status, count(*) FROM lost GROUP BY ALL")) == {"completed": 20}
    counters = warehouse.counters()
    assert counters["batches_created"] == 1 and set(counters["custom_ids_received"].values()) == {1}
