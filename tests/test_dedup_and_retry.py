"""Nobody pays twice: dedup within a run, across runs and across jobs; retries; cost guards; locks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from tests.conftest import API_KEY, Warehouse, write_job
import pytest

pytestmark = pytest.mark.both_warehouses


def _job(tmp_path: Path, name: str = "faq", **header: object) -> Path:
    return write_job(tmp_path / f"{name}.sql", {"name": name, "model": "gpt-4o-mini", **header},
                     "SELECT id AS custom_id, question AS prompt FROM questions")


def _questions(warehouse: Warehouse, n: int = 40) -> None:
    # 40 rows, 20 distinct questions: every question is asked twice.
    warehouse.sql(f"CREATE OR REPLACE TABLE questions AS SELECT i AS id, 'question ' || (i % 20) AS question FROM range({n}) t(i)")


def test_identical_rows_share_one_request(warehouse: Warehouse, tmp_path: Path) -> None:
    _questions(warehouse)
    report = warehouse.cli_json("run", str(_job(tmp_path)), "--wait", "--poll-interval", "0.05")[0]
    assert report["counts"]["rows"] == 40 and report["counts"]["requests"] == 20
    assert warehouse.counters()["requests_received"] == 20
    assert warehouse.sql("SELECT count(*), count(DISTINCT request_hash) FROM faq WHERE status = 'completed'") == [(40, 20)]
    # Both rows of a question carry the same answer.
    assert warehouse.sql("SELECT count(*) FROM (SELECT request_hash FROM faq GROUP BY 1 HAVING count(DISTINCT content) > 1)") == [(0,)]


def test_incremental_runs_send_only_what_changed(warehouse: Warehouse, tmp_path: Path) -> None:
    _questions(warehouse)
    job = _job(tmp_path)
    warehouse.cli("run", str(job), "--wait", "--poll-interval", "0.05")
    plan = warehouse.cli_json("plan", str(job))[0]["counts"]
    assert (plan["cached"], plan["to_submit"], plan["shards"]) == (20, 0, 0)
    rerun = warehouse.cli_json("run", str(job), "--wait", "--poll-interval", "0.05")[0]
    assert rerun["counts"]["to_submit"] == 0 and warehouse.counters()["requests_received"] == 20

    # 10 rows change (5 distinct new questions), 5 rows are added (new distinct question each).
    warehouse.sql("UPDATE questions SET question = 'changed ' || (id % 5) WHERE id < 10")
    warehouse.sql("INSERT INTO questions SELECT 100 + i, 'brand new ' || i FROM range(5) t(i)")
    plan = warehouse.cli_json("plan", str(job))[0]["counts"]
    assert plan["to_submit"] == 10
    warehouse.cli("run", str(job), "--wait", "--poll-interval", "0.05")
    assert warehouse.counters()["requests_received"] == 30
    assert warehouse.sql("SELECT count(*), count_if(status = 'completed') FROM faq") == [(45, 45)]


@pytest.mark.duckdb_only  # engine-side logic the same on both warehouses: DuckDB only, for time
def test_a_second_job_asking_the_same_question_reuses_the_answer(warehouse: Warehouse, tmp_path: Path) -> None:
    _questions(warehouse)
    warehouse.cli("run", str(_job(tmp_path, "first")), "--wait", "--poll-interval", "0.05")
    report = warehouse.cli_json("run", str(_job(tmp_path, "second")), "--wait", "--poll-interval", "0.05")[0]
    assert report["counts"]["cached"] == 20 and report["statuses"] == {"completed": 40}
    assert warehouse.counters()["batches_created"] == 1
    assert warehouse.sql("SELECT count(*) FROM first f JOIN second s USING (custom_id) WHERE f.content = s.content") == [(40,)]


def test_no_cache_sends_fresh_requests(warehouse: Warehouse, tmp_path: Path) -> None:
    _questions(warehouse)
    job = _job(tmp_path)
    warehouse.cli("run", str(job), "--wait", "--poll-interval", "0.05")
    report = warehouse.cli_json("run", str(job), "--no-cache", "--wait", "--poll-interval", "0.05")[0]
    assert report["counts"]["to_submit"] == 20
    assert warehouse.counters()["requests_received"] == 40
    assert warehouse.sql("SELECT count_if(status = 'completed') FROM faq") == [(40,)]


@pytest.mark.duckdb_only  # engine-side logic the same on both warehouses: DuckDB only, for time
def test_requests_in_flight_are_not_sent_again(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.emulator.configure(validation_delay=100, time_scale=0)
    _questions(warehouse)
    job = _job(tmp_path)
    warehouse.cli("run", str(job))
    again = warehouse.cli_json("run", str(job))[0]["counts"]
    assert (again["in_flight"], again["to_submit"], again["shards"]) == (20, 0, 0)
    assert warehouse.counters()["batches_created"] == 1


def test_retry_resends_expired_rows_up_to_max_attempts(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.emulator.configure(request_time=10, time_scale=0, completion_window_seconds=105)
    _questions(warehouse)
    job = _job(tmp_path, max_attempts=2)
    warehouse.cli("run", str(job))
    warehouse.emulator.advance(200)  # 10 of 20 done, the rest expire
    warehouse.cli("collect", "faq", "--wait", "--poll-interval", "0.05", expect=5)
    assert dict(warehouse.sql("SELECT status, count(*) FROM faq GROUP BY ALL")) == {"completed": 20, "expired": 20}

    warehouse.emulator.configure(request_time=0)
    warehouse.cli("retry", "faq", "--wait", "--poll-interval", "0.05")
    assert warehouse.sql("SELECT status, count(*) FROM faq GROUP BY ALL") == [("completed", 40)]
    counters = warehouse.counters()
    assert counters["batches_created"] == 2 and counters["requests_received"] == 30
    attempts = dict(warehouse.sql("SELECT attempts, count(*) FROM warehouse_batch.request_attempts GROUP BY ALL"))
    assert attempts == {1: 10, 2: 10}

    # Nothing left to retry: no new batch.
    warehouse.cli("retry", "faq")
    assert warehouse.counters()["batches_created"] == 2


@pytest.mark.duckdb_only  # engine-side logic the same on both warehouses: DuckDB only, for time
def test_retry_stops_at_max_attempts_and_skips_terminal_errors(warehouse: Warehouse) -> None:
    warehouse.sql("CREATE TABLE p AS SELECT * FROM (VALUES (1, 'flaky [[emulator:error_500]]'), (2, 'bad [[emulator:error_400]]'), (3, 'fine')) t(id, txt)")
    run = ("run", "--name", "mixed", "--model", "gpt-4o-mini", "--max-attempts", "2", "--query",
           "SELECT id AS custom_id, txt AS prompt FROM p", "--wait", "--poll-interval", "0.05")
    warehouse.cli(*run, expect=5)
    warehouse.cli("retry", "mixed", "--wait", "--poll-interval", "0.05", expect=5)  # the 500 is retried once
    warehouse.cli("retry", "mixed", "--wait", "--poll-interval", "0.05", expect=5)  # attempts exhausted: nothing sent
    received = warehouse.counters()["custom_ids_received"]
    hashes = dict(warehouse.sql("SELECT custom_id, request_hash FROM mixed"))
    assert received[hashes[1]] == 2 and received[hashes[2]] == 1 and received[hashes[3]] == 1
    rows = {r[0]: r[1:] for r in warehouse.sql("SELECT custom_id, status, error_code FROM mixed")}
    assert rows[3] == ("completed", None) and rows[2] == ("failed", "context_length_exceeded")
    assert rows[1][0] == "failed"


def test_cost_guard_refuses_before_anything_is_uploaded(warehouse: Warehouse, tmp_path: Path) -> None:
    _questions(warehouse)
    job = _job(tmp_path, max_tokens=1000)
    plan = warehouse.cli_json("plan", str(job))[0]["counts"]
    assert plan["est_cost_usd"] > 0 and plan["est_output_tokens"] == 20 * 1000
    result = warehouse.cli("run", str(job), "--max-cost-usd", "0.000001", expect=3)
    assert "would send 20 requests, estimated $" in result.output and "nothing was sent" in result.output
    result = warehouse.cli("run", str(job), "--max-requests", "5", expect=3)
    assert "would send 20 requests" in result.output and "max_requests = 5" in result.output
    assert warehouse.counters()["files_uploaded"] == 0
    assert warehouse.sql("SELECT count(*) FROM warehouse_batch.requests") == [(0,)]
    warehouse.cli("run", str(job), "--max-cost-usd", "100", "--max-requests", "20")
    assert warehouse.counters()["batches_created"] == 1


@pytest.mark.duckdb_only  # engine-side logic the same on both warehouses: DuckDB only, for time
def test_unknown_model_price_with_a_cost_limit(warehouse: Warehouse, tmp_path: Path) -> None:
    _questions(warehouse)
    job = _job(tmp_path, model="ft:gpt-4o-mini:org:custom:abc")
    result = warehouse.cli("run", str(job), "--max-cost-usd", "1", expect=3)
    assert "no price for model(s) ft:gpt-4o-mini:org:custom:abc" in result.output
    prices = tmp_path / "prices.json"
    prices.write_text('{"models": {"ft:gpt-4o-mini:org:custom:abc": {"input": 1.0, "output": 2.0}}}')
    warehouse.cli("run", str(job), "--max-cost-usd", "1", "--prices", str(prices), "--wait", "--poll-interval", "0.05")


@pytest.mark.duckdb_only  # engine-side logic the same on both warehouses: DuckDB only, for time
def test_actual_spend_from_usage(warehouse: Warehouse, tmp_path: Path) -> None:
    _questions(warehouse)
    warehouse.cli("run", str(_job(tmp_path)), "--wait", "--poll-interval", "0.05")
    (job, model, requests, input_tokens, output_tokens, cost) = warehouse.sql(
        "SELECT job_name, model, requests, input_tokens, output_tokens, cost_usd FROM warehouse_batch.spend")[0]
    assert (job, requests) == ("faq", 20)
    expected = (input_tokens * 0.15 + output_tokens * 0.60) * 0.5 / 1e6
    assert abs(cost - expected) < 1e-12
    # the two views add the same doubles in different orders (no key fixes the row order): equal to rounding
    assert abs(warehouse.sql("SELECT sum(cost_usd) FROM warehouse_batch.batch_spend")[0][0] - cost) < 1e-15


@pytest.mark.duckdb_only  # DuckDB's file lock; tests/test_postgres.py has the advisory lock
def test_second_process_on_the_same_warehouse_exits_with_a_clear_message(warehouse: Warehouse, tmp_path: Path) -> None:
    _questions(warehouse)
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(warehouse.db)!r}); "
                               "print('locked', flush=True); time.sleep(5)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = warehouse.cli("run", str(_job(tmp_path)), "--lock-timeout", "0.5", expect=2)
        assert "in use by another process" in result.output and "--lock-timeout" in result.output
        assert warehouse.emulator.counters()["files_uploaded"] == 0
        started = time.monotonic()
        env = {**os.environ, "OPENAI_API_KEY": API_KEY}
        # By default a writer waits (with back-off) for the file instead of failing.
        waited = subprocess.run([sys.executable, "-m", "warehouse_batch.cli", "run", str(_job(tmp_path)), "--db", str(warehouse.db),
                                 "--base-url", warehouse.emulator.base_url],
                                env=env, capture_output=True, text=True, timeout=60)
        assert waited.returncode == 0, waited.stderr
        assert time.monotonic() - started > 0.5
    finally:
        holder.wait(timeout=10)
    assert warehouse.emulator.counters()["batches_created"] == 1


@pytest.mark.duckdb_only  # DuckDB's file lock
def test_the_database_is_usable_by_others_between_commands(warehouse: Warehouse, tmp_path: Path) -> None:
    _questions(warehouse)
    warehouse.cli("run", str(_job(tmp_path)))
    with duckdb.connect(str(warehouse.db)) as con:  # the CLI released the file
        assert con.execute("SELECT count(*) FROM faq").fetchone() == (40,)
