"""An unchanged re-run reuses the job's rows table (compile.reuse_rows) instead of building and
hashing every body again, and any change to what the rows are built from — a value, a row, a
column, an option — is still compiled and sent."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Warehouse, write_job

WAIT = ("--wait", "--poll-interval", "0.05")


def _job(tmp_path: Path, **header: object) -> Path:
    return write_job(tmp_path / "faq.sql", {"name": "faq", "model": "gpt-4o-mini", **header},
                     "SELECT id AS custom_id, question AS prompt, topic FROM questions")


def _mark_rows_table(warehouse: Warehouse) -> None:
    """Put a value in the rows table that compiling never writes, to see whether it survives."""
    warehouse.sql("UPDATE warehouse_batch.faq__rows SET __wb_output_expected = -42")


def _rows_table_reused(warehouse: Warehouse) -> bool:
    return warehouse.sql("SELECT bool_and(__wb_output_expected IS NOT DISTINCT FROM -42) "
                         "FROM warehouse_batch.faq__rows") == [(True,)]


def _first_run(warehouse: Warehouse, tmp_path: Path) -> Path:
    warehouse.sql("CREATE OR REPLACE TABLE questions AS SELECT i AS id, 'question ' || i AS question, "
                  "'topic ' || (i % 3) AS topic FROM range(30) t(i)")
    job = _job(tmp_path)
    warehouse.cli("run", str(job), *WAIT)
    assert warehouse.counters()["requests_received"] == 30
    return job


def test_an_unchanged_rerun_reuses_the_rows_and_sends_nothing(warehouse: Warehouse, tmp_path: Path) -> None:
    job = _first_run(warehouse, tmp_path)
    _mark_rows_table(warehouse)
    report = warehouse.cli_json("run", str(job), *WAIT)[0]
    assert report["counts"]["rows"] == 30 and report["counts"]["cached"] == 30 and report["counts"]["to_submit"] == 0
    assert warehouse.counters()["requests_received"] == 30  # nothing new
    assert _rows_table_reused(warehouse)  # the same table: nothing was compiled again
    assert warehouse.sql("SELECT status, count(*) FROM faq GROUP BY 1") == [("completed", 30)]


def test_any_change_to_the_rows_is_compiled_and_sent(warehouse: Warehouse, tmp_path: Path) -> None:
    job = _first_run(warehouse, tmp_path)
    # One value of one row: that row's request, and only it, is sent.
    warehouse.sql("UPDATE questions SET question = 'question 7, reworded' WHERE id = 7")
    warehouse.cli("run", str(job), *WAIT)
    assert warehouse.counters()["requests_received"] == 31
    assert warehouse.sql("SELECT content IS NOT NULL, status FROM faq WHERE custom_id = 7") == [(True, "completed")]
    # Two rows swap their questions (same multiset of values): both rows change, no request is new.
    warehouse.sql("UPDATE questions SET question = CASE id WHEN 1 THEN 'question 2' ELSE 'question 1' END "
                  "WHERE id IN (1, 2)")
    _mark_rows_table(warehouse)
    warehouse.cli("run", str(job), *WAIT)
    assert not _rows_table_reused(warehouse)  # compiled again
    assert warehouse.sql("SELECT custom_id, prompt FROM faq WHERE custom_id IN (1, 2) ORDER BY 1") == [
        (1, "question 2"), (2, "question 1")]
    # A column that is carried but not sent changes the output table, not the requests.
    warehouse.sql("UPDATE questions SET topic = 'new topic' WHERE id = 3")
    warehouse.cli("run", str(job), *WAIT)
    assert warehouse.sql("SELECT topic FROM faq WHERE custom_id = 3") == [("new topic",)]
    # A row added, and a job option changed (the system prompt): recompiled, every request is new.
    warehouse.sql("INSERT INTO questions VALUES (30, 'question 30', 'topic 0')")
    warehouse.cli("run", str(job), *WAIT)
    assert warehouse.counters()["requests_received"] == 32
    warehouse.cli("run", str(_job(tmp_path, system="Answer briefly.")), *WAIT)
    assert warehouse.counters()["requests_received"] == 63
    assert warehouse.sql("SELECT status, count(*) FROM faq GROUP BY 1") == [("completed", 31)]
