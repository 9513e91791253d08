"""End to end through the real CLI, the real `openai` SDK and the emulator over loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Warehouse, write_job

pytestmark = pytest.mark.both_warehouses

HAZARDS = [
    'He said "hello" and left',
    "Line one\nLine two\r\nLine three",
    "Emoji 😀👍🏽 and CJK 深蓝 and RTL שלום",
    "Backslash C:\\temp\\new and tab\there",
    "{braces} <b>tags</b> & ampersands 'single quotes'",
    "Control \x01 char and NUL-free text",
    "",  # replaced below: a very long text
]


def _make_reviews(warehouse: Warehouse, n: int = 300, table: str = "reviews") -> None:
    long_text = "A very long review. " * 2000
    texts = [(HAZARDS[i % len(HAZARDS)] or long_text) + f" #{i}" for i in range(n)]
    with warehouse.connect() as con:
        con.execute(f"CREATE OR REPLACE TABLE {table} (review_id INTEGER, review_text VARCHAR, stars INTEGER)")
        con.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)", [(i + 1, t, i % 5 + 1) for i, t in enumerate(texts)])


def test_hundreds_of_hazardous_rows_complete_and_join_back(warehouse: Warehouse, tmp_path: Path) -> None:
    _make_reviews(warehouse)
    job = write_job(
        tmp_path / "sentiment.sql",
        {"name": "sentiment", "model": "gpt-4o-mini", "system": "Classify as Positive, Neutral or Negative."},
        "SELECT review_id AS custom_id, review_text AS prompt, stars FROM reviews",
    )
    # Kept, so the shard file can be read back below (by default it is deleted once collected).
    report = warehouse.cli_json("run", str(job), "--keep-input-files", "--wait", "--poll-interval", "0.05")[0]
    assert report["statuses"] == {"completed": 300}

    joined = warehouse.sql(
        "SELECT count(*), count_if(s.status = 'completed'), count_if(s.content IN ('Positive', 'Neutral', 'Negative')),"
        " count_if(s.stars = r.stars) FROM reviews r JOIN sentiment s ON s.custom_id = r.review_id"
    )[0]
    assert joined == (300, 300, 300, 300)
    # The custom_id keeps the query's type, so it joins without casts.
    assert ("custom_id", "INTEGER") in [(r[0], r[1]) for r in warehouse.sql("DESCRIBE sentiment")]

    batches = warehouse.rows("SELECT * FROM warehouse_batch.batches")
    assert len(batches) == 1 and batches[0]["state"] == "collected" and batches[0]["status"] == "completed"
    counters = warehouse.counters()
    assert counters["batches_created"] == len(batches)
    assert counters["files_uploaded"] == len(batches)
    assert counters["requests_received"] == batches[0]["line_count"] == 300

    # What was sent is exactly the user's text, byte for byte, under the system prompt.
    shard = Path(batches[0]["path"])
    sent = {}
    for line in shard.read_text(encoding="utf-8").splitlines():
        request = json.loads(line)
        messages = request["body"]["messages"]
        assert messages[0] == {"role": "system", "content": "Classify as Positive, Neutral or Negative."}
        sent[request["custom_id"]] = messages[1]["content"]
    texts = dict(warehouse.sql("SELECT s.request_hash, r.review_text FROM reviews r JOIN sentiment s ON s.custom_id = r.review_id"))
    assert sent == texts


def test_text_custom_ids_and_rerun_sends_nothing(warehouse: Warehouse) -> None:
    warehouse.sql("CREATE TABLE docs AS SELECT 'doc-' || i AS doc_id, 'Summarise: text ' || i AS body_text FROM range(25) t(i)")
    args = ["run", "--name", "summaries", "--model", "gpt-4o-mini", "--query",
            "SELECT doc_id AS custom_id, body_text AS prompt FROM docs", "--wait", "--poll-interval", "0.05"]
    warehouse.cli(*args)
    assert warehouse.sql("SELECT count(*), count_if(status = 'completed') FROM summaries") == [(25, 25)]
    assert warehouse.sql("SELECT typeof(custom_id) FROM summaries LIMIT 1") == [("VARCHAR",)]

    report = warehouse.cli_json(*args)[0]
    assert report["counts"]["cached"] == 25 and report["counts"]["to_submit"] == 0 and report["counts"]["shards"] == 0
    assert warehouse.counters()["batches_created"] == 1


@pytest.mark.parametrize("files_per_statement", [20, 2], ids=["one load statement", "a statement per two files"])
def test_job_larger_than_one_shard_becomes_several_batches(warehouse: Warehouse, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch, files_per_statement: int) -> None:
    from warehouse_batch import results

    monkeypatch.setattr(results, "FILES_PER_STATEMENT", files_per_statement)  # 5 batches: 1 or 3 INSERTs
    _make_reviews(warehouse, n=230)
    job = write_job(
        tmp_path / "big.sql",
        {"name": "big", "model": "gpt-4o-mini", "max_requests_per_shard": 50},
        "SELECT review_id AS custom_id, review_text AS prompt FROM reviews",
    )
    warehouse.cli("run", str(job), "--wait", "--poll-interval", "0.05")
    batches = warehouse.rows("SELECT line_count, state, status, batch_id FROM warehouse_batch.batches ORDER BY shard_id")
    assert [b["line_count"] for b in batches] == [50, 50, 50, 50, 30]
    assert all(b["state"] == "collected" and b["status"] == "completed" for b in batches)
    assert len({b["batch_id"] for b in batches}) == 5
    assert warehouse.counters()["batches_created"] == 5
    assert warehouse.sql("SELECT count(DISTINCT batch_id), count_if(status = 'completed') FROM big") == [(5, 230)]


def test_shards_respect_the_byte_limit(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.sql("CREATE TABLE t AS SELECT i AS id, repeat('x', 500) || i AS txt FROM range(100) r(i)")
    job = write_job(tmp_path / "bytes.sql", {"name": "bytes", "model": "m1", "max_bytes_per_shard": 8000},
                    "SELECT id AS custom_id, txt AS prompt FROM t")
    warehouse.cli("run", str(job))
    sizes = warehouse.sql("SELECT byte_count, path FROM warehouse_batch.batches")
    assert len(sizes) > 1
    for byte_count, path in sizes:
        assert byte_count <= 8000 and Path(path).stat().st_size == byte_count
    assert sum(1 for _, p in sizes for _ in Path(p).open()) == 100


def test_without_wait_rows_are_pending_until_collect(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.emulator.configure(validation_delay=3600)
    warehouse.sql("CREATE TABLE q AS SELECT i AS id, 'question ' || i AS text FROM range(10) t(i)")
    job = write_job(tmp_path / "later.sql", {"name": "later", "model": "gpt-4o-mini"}, "SELECT id AS custom_id, text AS prompt FROM q")
    warehouse.cli("run", str(job))
    assert warehouse.sql("SELECT DISTINCT status FROM later") == [("pending",)]
    assert warehouse.sql("SELECT count(*) FROM later WHERE batch_id IS NOT NULL") == [(10,)]

    status = warehouse.cli_json("status")[0]
    assert status["statuses"] == {"pending": 10} and status["batches"][0]["status"] == "validating"

    warehouse.cli("collect", "later")
    assert warehouse.sql("SELECT DISTINCT status FROM later") == [("pending",)]
    warehouse.emulator.advance(3601)
    warehouse.cli("sync")
    assert warehouse.sql("SELECT DISTINCT status FROM later") == [("completed",)]
    assert warehouse.sql("SELECT * FROM warehouse_batch.job_status")[0][2:8] == (10, 10, 0, 0, 0, 0)


def test_per_request_provider_error_lands_on_its_row(warehouse: Warehouse) -> None:
    warehouse.sql(
        "CREATE TABLE p AS SELECT * FROM (VALUES (1, 'fine'), (2, 'too long [[emulator:error_400]]'), (3, 'also fine')) t(id, txt)"
    )
    result = warehouse.cli("run", "--name", "errs", "--model", "gpt-4o-mini", "--query",
                           "SELECT id AS custom_id, txt AS prompt FROM p", "--wait", "--poll-interval", "0.05", expect=5)
    assert "did not complete" in result.output
    rows = {r["custom_id"]: r for r in warehouse.rows("SELECT * FROM errs")}
    assert rows[1]["status"] == rows[3]["status"] == "completed"
    assert rows[2]["status"] == "failed" and rows[2]["error_code"] == "context_length_exceeded"
    assert rows[2]["error_message"] and rows[2]["content"] is None


def test_answers_that_fail_on_their_own_count_as_failed_everywhere(warehouse: Warehouse, tmp_path: Path) -> None:
    """A refused or off-schema answer is paid and cached, but its row is failed: in the table, the
    report, the exit code and the job_status view alike."""
    warehouse.sql("CREATE TABLE r AS SELECT * FROM (VALUES (1, 'fine'), (2, 'no [[emulator:refusal]]'), (3, 'ok')) t(id, txt)")
    job = write_job(tmp_path / "typed.sql", {"name": "typed", "model": "gpt-4o-mini",
                                              "output_schema": "label VARCHAR, score DOUBLE"},
                    "SELECT id AS custom_id, txt AS prompt FROM r")
    result = warehouse.cli("run", str(job), "--wait", "--poll-interval", "0.05", "--json", expect=5)
    assert json.loads(result.stdout)[0]["statuses"] == {"completed": 2, "failed": 1}
    assert warehouse.sql("SELECT custom_id, error_code FROM typed WHERE status = 'failed'") == [(2, "refusal")]
    assert warehouse.sql("SELECT completed, failed, pending FROM warehouse_batch.job_status") == [(2, 1, 0)]
    assert warehouse.sql("SELECT count(*) FROM typed WHERE cost_usd > 0 AND attempts = 1") == [(3,)]


def test_a_table_written_in_parts_equals_one_written_whole(warehouse: Warehouse, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """publish writes large jobs in parts (ranges of request hashes, bounded memory); the parts
    together are exactly the table one statement writes: every row once, same answers, same types."""
    from warehouse_batch import publish

    warehouse.sql("CREATE TABLE mix AS SELECT i AS id, CASE i % 9 WHEN 0 THEN 'x [[emulator:refusal]]' "
                  "WHEN 4 THEN 'y [[emulator:error_400]]' ELSE 'question ' || i END AS txt FROM range(60) t(i)")
    header = {"model": "gpt-4o-mini", "output_schema": "label VARCHAR, score DOUBLE"}
    query = "SELECT id AS custom_id, txt AS prompt FROM mix"
    whole = write_job(tmp_path / "whole.sql", {"name": "whole", **header}, query)
    warehouse.cli("run", str(whole), "--wait", "--poll-interval", "0.05", expect=5)
    monkeypatch.setattr(publish, "part_rows", lambda warehouse: 7)  # 60 rows: nine parts
    parts = write_job(tmp_path / "parts.sql", {"name": "parts", **header}, query)
    warehouse.cli("run", str(parts), "--wait", "--poll-interval", "0.05", expect=5)  # answers from the cache

    columns = "* EXCLUDE (published_at)"
    assert warehouse.sql("SELECT count(*), count(DISTINCT custom_id) FROM parts") == [(60, 60)]
    assert warehouse.sql(f"SELECT {columns} FROM whole EXCEPT ALL SELECT {columns} FROM parts") == []
    assert warehouse.sql(f"SELECT {columns} FROM parts EXCEPT ALL SELECT {columns} FROM whole") == []
    assert warehouse.sql("DESCRIBE whole") == warehouse.sql("DESCRIBE parts")
    assert {s for (s,) in warehouse.sql("SELECT DISTINCT status FROM parts")} == {"completed", "failed"}


def _submit_twenty(warehouse: Warehouse, tmp_path: Path, name: str) -> None:
    """A job of 20 questions, submitted and not yet collected: its pending rows are published."""
    warehouse.sql("CREATE TABLE qs AS SELECT i AS id, 'question ' || i AS txt FROM range(20) t(i)")
    job = write_job(tmp_path / f"{name}.sql", {"name": name, "model": "gpt-4o-mini"},
                    "SELECT id AS custom_id, txt AS prompt FROM qs")
    warehouse.cli("run", str(job), "--poll-interval", "0.05")


def test_a_part_that_runs_out_of_memory_is_written_again_on_one_thread(
        warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """publish writes each part on the engine's threads; a part that runs out of memory is written
    again on one thread, and the table is whole: every row once, none twice."""
    import duckdb

    from warehouse_batch import publish
    from warehouse_batch.warehouses.duckdb import DuckDBWarehouse

    _submit_twenty(warehouse, tmp_path, "tight")
    monkeypatch.setattr(publish, "part_rows", lambda warehouse: 7)  # three parts; the second runs out
    execute = DuckDBWarehouse.execute
    threads: list[int] = []

    def tight(self: DuckDBWarehouse, sql: str, params: object = None) -> object:
        if "WITH keyed AS" in sql and "INSERT INTO" in sql:
            threads.append(int(self.scalar("SELECT current_setting('threads')")))
            if len(threads) == 1:
                raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block (simulated)")
        return execute(self, sql, params)

    monkeypatch.setattr(DuckDBWarehouse, "execute", tight)
    warehouse.cli("collect", "tight", "--wait", "--poll-interval", "0.05")
    assert threads[:2] == [threads[0], 1] and threads[0] > 1  # the same part again, on one thread
    assert warehouse.sql("SELECT count(*), count(DISTINCT custom_id), count_if(status = 'completed') FROM tight") \
        == [(20, 20, 20)]


def test_a_statement_failing_mid_publish_is_the_error_shown_and_the_next_collect_publishes(
        warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A part of publish fails (an error, or Ctrl-C inside a query) and leaves its transaction
    aborted: the user sees that failure, not the cleanup's "transaction is aborted" that would hide it
    (a worker stopped mid-publish used to exit 1 that way), and nothing is half published."""
    import duckdb

    from warehouse_batch import publish

    _submit_twenty(warehouse, tmp_path, "flaky")
    monkeypatch.setattr(publish, "part_rows", lambda warehouse: 7)  # three parts; the second one fails
    parts = publish._parts

    def failing(*args: object, **kwargs: object) -> list[dict[str, str]]:
        planned = parts(*args, **kwargs)  # type: ignore[arg-type]
        planned[1] = {**planned[1], "in_part": "error('part two failed')"}
        return planned

    monkeypatch.setattr(publish, "_parts", failing)
    with pytest.raises(duckdb.Error, match="part two failed"):
        warehouse.cli("collect", "flaky", "--wait", "--poll-interval", "0.05")
    assert warehouse.sql("SELECT DISTINCT status FROM flaky") == [("pending",)]  # the last publish stands
    # The parts already written (each committed, under another name) are gone with the failure.
    assert warehouse.sql("SELECT table_name FROM information_schema.tables WHERE table_name LIKE '%next_flaky'") == []

    monkeypatch.setattr(publish, "_parts", parts)
    warehouse.cli("collect", "flaky", "--wait", "--poll-interval", "0.05")
    assert warehouse.sql("SELECT status, count(*) FROM flaky GROUP BY ALL") == [("completed", 20)]
