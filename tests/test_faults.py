"""Faults injected by the emulator are survived: retryable ones are retried, nothing is paid twice."""

from __future__ import annotations

from typing import Any

import pytest
from openai import OpenAI

from tests.conftest import API_KEY, Warehouse

QUERY = "SELECT id AS custom_id, 'question ' || id AS prompt FROM range(30) t(id)"
RUN = ("run", "--name", "faulty", "--model", "gpt-4o-mini", "--query", QUERY, "--max-requests-per-shard", "10",
       "--wait", "--poll-interval", "0.05")

# fault → what the emulator must have seen
FAULTS: dict[str, dict[str, Any]] = {
    "429 with Retry-After on create": {"op": "create_batch", "status": 429, "times": 2, "retry_after": 0.2},
    "500 on upload": {"op": "upload_file", "status": 500, "times": 2},
    "503 on create": {"op": "create_batch", "status": 503, "times": 2},
    "dropped connection on create": {"op": "create_batch", "drop": True, "times": 1},
    "dropped connections on retrieve": {"op": "retrieve_batch", "drop": True, "times": 3},
    "429 on retrieve": {"op": "retrieve_batch", "status": 429, "times": 2, "retry_after": 0.1},
    "500 on download": {"op": "download_file", "status": 500, "times": 2},
    "truncated download": {"op": "download_file", "truncate": True, "times": 1},
    "slow create past the client timeout": {"op": "create_batch", "delay": 2.5, "times": 1},
    "slow retrieve past the client timeout": {"op": "retrieve_batch", "delay": 2.5, "times": 1},
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_is_survived_without_paying_twice(warehouse: Warehouse, name: str) -> None:
    warehouse.emulator.inject_fault(**FAULTS[name])
    warehouse.cli(*RUN, "--http-timeout", "1")
    counters = warehouse.counters()
    assert counters["faults_injected"] >= 1
    assert counters["batches_created"] == 3, counters
    assert set(counters["custom_ids_received"].values()) == {1}
    assert warehouse.sql("SELECT status, count(*) FROM faulty GROUP BY ALL") == [("completed", 30)]


def test_truncated_download_is_fetched_again(warehouse: Warehouse) -> None:
    warehouse.emulator.inject_fault(op="download_file", truncate=True, times=2)
    warehouse.cli(*RUN)
    assert warehouse.counters()["calls"]["GET /v1/files/{file_id}/content"] == 3 + 2
    assert warehouse.sql("SELECT count(*) FROM faulty WHERE status = 'completed' AND content IS NOT NULL") == [(30,)]


def test_persistent_outage_exits_4_and_a_rerun_finishes(warehouse: Warehouse) -> None:
    warehouse.emulator.configure(validation_delay=5, time_scale=0)
    warehouse.cli(*RUN[:-3])  # submit only
    warehouse.emulator.inject_fault(op="retrieve_batch", status=500, times=50)
    result = warehouse.cli("collect", "faulty", expect=4)
    assert "re-run" in result.output
    warehouse.emulator.engine.faults.clear()
    warehouse.emulator.advance(10)
    warehouse.cli("collect", "faulty", "--wait", "--poll-interval", "0.05")
    assert warehouse.sql("SELECT status, count(*) FROM faulty GROUP BY ALL") == [("completed", 30)]
    assert warehouse.counters()["batches_created"] == 3


def test_batch_cancelled_by_someone_else(warehouse: Warehouse) -> None:
    warehouse.emulator.configure(request_time=10, time_scale=0)
    warehouse.cli(*RUN[:-3])
    warehouse.emulator.advance(35)  # 3 of the 10 requests of the first batch done
    client = OpenAI(api_key=API_KEY, base_url=warehouse.emulator.base_url)
    first = warehouse.sql("SELECT batch_id FROM warehouse_batch.batches ORDER BY shard_id LIMIT 1")[0][0]
    client.batches.cancel(first)
    warehouse.emulator.advance(1000)
    warehouse.cli("collect", "faulty", "--wait", "--poll-interval", "0.05", expect=5)
    statuses = dict(warehouse.sql("SELECT status, count(*) FROM faulty GROUP BY ALL"))
    assert statuses == {"completed": 23, "cancelled": 7}


def test_download_garbled_in_the_middle_is_discarded_and_fetched_again(warehouse: Warehouse) -> None:
    """Same size, same line count, final newline intact: only the load notices, rolls back, discards
    the files and exits 4; the next collect downloads them again and loads every answer once."""
    warehouse.emulator.configure(validation_delay=5, time_scale=0)
    warehouse.cli(*RUN[:-3])
    warehouse.emulator.advance(10)
    warehouse.emulator.inject_fault(op="download_file", corrupt=True, times=1)
    result = warehouse.cli("collect", "faulty", expect=4)
    assert "could not be read" in result.output and "download it again" in result.output
    assert warehouse.sql("SELECT count(*) FROM warehouse_batch.results") == [(0,)]  # nothing half-loaded
    assert warehouse.sql("SELECT count(*) FROM warehouse_batch.batches WHERE state = 'collected'") == [(0,)]
    warehouse.cli("collect", "faulty", "--wait", "--poll-interval", "0.05")
    assert warehouse.sql("SELECT status, count(*) FROM faulty GROUP BY ALL") == [("completed", 30)]
    assert warehouse.counters()["batches_created"] == 3
