"""What the loader keeps from a provider's output file: only its own shard's requests, each once,
and how the load statement is planned so that it fits DuckDB's memory limit at any size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import Warehouse, write_job
from warehouse_batch import publish, results
from warehouse_batch.jobs import Job
from warehouse_batch.ledger import Ledger
from warehouse_batch.warehouses import open_warehouse
from warehouse_batch.warehouses.duckdb import DuckDBWarehouse


def _line(custom_id: str, status_code: int = 200, content: str = "Positive") -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
    } if status_code == 200 else {"error": {"message": "server error", "type": "server_error", "code": None}}
    return {"id": f"batch_req_{custom_id[:8]}", "custom_id": custom_id,
            "response": {"status_code": status_code, "request_id": "req_1", "body": body}, "error": None}


@pytest.mark.duckdb_only  # drives the ledger through DuckDB's own API, as the golden tests do
def test_a_file_answers_only_its_own_shards_requests_each_once(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.sql("CREATE TABLE q AS SELECT i AS id, 'question ' || i AS text FROM range(6) t(i)")
    job_path = write_job(tmp_path / "two.sql", {"name": "two", "model": "gpt-4o-mini", "max_requests_per_shard": 3},
                         "SELECT id AS custom_id, text AS prompt FROM q")
    warehouse.cli("run", str(job_path))  # two shards in flight; the file below stands in for the first's output
    with open_warehouse(warehouse.db) as store:
        shards = store.execute("SELECT shard_id, request_hash FROM warehouse_batch.request_shards "
                               "ORDER BY shard_id, request_hash").fetchall()
        first = shards[0][0]
        own = [h for s, h in shards if s == first]
        other = [h for s, h in shards if s != first]
        assert len(own) == len(other) == 3
        lines = [
            _line(own[0], status_code=500),  # the provider repeats a request: the completed answer wins
            _line(own[0]),
            _line(own[1]),
            _line(own[2], content="Negative"),
            _line(other[0]),  # another shard's request: answered by its own batch, never by this one
            _line("f" * 64),  # a custom_id the job never sent
        ]
        output = tmp_path / "output.jsonl"
        output.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        with store.transaction():
            results.load(Ledger(store), [{"shard_id": first, "batch_id": "batch_first", "status": "completed",
                                          "files": [output], "errors": []}])
        publish.publish(store, Ledger(store), Job.from_file(job_path))

    stored = warehouse.sql("SELECT request_hash, status, content, shard_id FROM warehouse_batch.results ORDER BY content")
    assert sorted(r[0] for r in stored) == sorted(own)
    assert {(r[1], r[3]) for r in stored} == {("completed", first)}
    assert [r[2] for r in stored] == ["Negative", "Positive", "Positive"]
    by_hash = dict(warehouse.sql("SELECT request_hash, status FROM two"))
    assert [by_hash[h] for h in own] == ["completed"] * 3
    assert [by_hash[h] for h in other] == ["pending"] * 3


def _joins(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan] if plan.get("name") == "HASH_JOIN" else []
    return found + [j for child in plan.get("children", []) for j in _joins(child)]


def _reads(plan: dict[str, Any]) -> set[str]:
    """Names of what a plan subtree scans: tables, and READ_JSON."""
    extra = plan.get("extra_info") or {}
    own = {str(extra.get("Table", "")).rsplit(".", 1)[-1], str(extra.get("Function", ""))} - {""}
    return own | {name for child in plan.get("children", []) for name in _reads(child)}


@pytest.mark.parametrize("as_written", [True, False], ids=["as written", "DuckDB's own choice"])
def test_the_key_check_builds_on_the_shards_requests_not_on_the_answer_lines(tmp_path: Path, as_written: bool) -> None:
    """At scale only: DuckDB estimates a read_json scan at a few dozen rows, so left alone it builds the
    key check's hash table on every answer line (a 50,000-line file ran out of a 128MB limit)."""
    output = tmp_path / "out.jsonl"
    output.write_text(json.dumps(_line("a" * 64)) + "\n", encoding="utf-8")
    sources = json.dumps([{"file": str(output), "batch_id": "b", "shard_id": "s"}])
    with DuckDBWarehouse(tmp_path / "w.duckdb") as store:
        store.execute("INSERT INTO warehouse_batch.request_shards (request_hash, shard_id, attempt) "
                      "SELECT sha256(i::VARCHAR), 's', 1 FROM range(100000) t(i)")
        explain = "EXPLAIN (FORMAT json) " + results.load_sql("/v1/chat/completions")
        if as_written:
            with store.joins_as_written():
                plan = json.loads(store.execute(explain, {"files": [str(output)], "sources": sources}).fetchone()[1])
        else:
            plan = json.loads(store.execute(explain, {"files": [str(output)], "sources": sources}).fetchone()[1])
    check = next(j for j in _joins(plan[0]) if "request_key" in json.dumps(j.get("extra_info")))
    probe, build = check["children"]
    if as_written:
        assert "READ_JSON" in _reads(probe) and "READ_JSON" not in _reads(build)
        assert "request_shards" in _reads(build)
    else:  # what the setting is for: if DuckDB stops doing this, the setting can go
        assert "READ_JSON" in _reads(build)


def test_planning_as_written_restores_the_setting_even_after_a_failed_statement(tmp_path: Path) -> None:
    with DuckDBWarehouse(tmp_path / "w.duckdb") as store:
        store.execute("SET disabled_optimizers = 'compressed_materialization'")
        with store.joins_as_written():
            assert set(store.scalar("SELECT current_setting('disabled_optimizers')").split(",")) == \
                {"compressed_materialization", "build_side_probe_side"}
        assert store.scalar("SELECT current_setting('disabled_optimizers')") == "compressed_materialization"
        with pytest.raises(duckdb.Error), store.transaction(), store.joins_as_written():
            store.execute("SELECT CAST('x' AS INTEGER)")  # aborts the transaction, which refuses SET
        assert store.scalar("SELECT current_setting('disabled_optimizers')") == "compressed_materialization"
