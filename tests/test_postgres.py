"""PostgreSQL as the warehouse: what only Postgres has — its own migrations, a reader on a second
connection while a job runs, a runner that lost its work dir, two runners, its types, its password.

The pipeline, structured outputs, dedup/retry, bad input, ownership and crash tests run on both
warehouses (tests marked `both_warehouses`); these are the Postgres-only ones."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from click.testing import CliRunner

from tests.conftest import API_KEY, Warehouse, write_job
from warehouse_batch.cli import main
from warehouse_batch.emulator import Emulator, EmulatorConfig
from warehouse_batch.warehouses import open_warehouse
from warehouse_batch.warehouses.postgres import redact

WAIT = ("--wait", "--poll-interval", "0.05")


@pytest.fixture
def warehouse_kind() -> str:
    return "postgres"


@pytest.fixture
def frozen() -> Iterator[Emulator]:
    """Batches sit in `validating` until the test moves the emulated clock."""
    with Emulator(EmulatorConfig(validation_delay=60, time_scale=0)) as emu:
        yield emu


@pytest.fixture
def slow(db: str, frozen: Emulator, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    monkeypatch.setenv("OPENAI_BASE_URL", frozen.base_url)
    return Warehouse(db, frozen, "postgres")


def _pg(uri: str, sql: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    """A second session, as an analyst's psql would open."""
    import adbc_driver_postgresql.dbapi as dbapi

    with dbapi.connect(uri, autocommit=True) as con, con.cursor() as cur:
        cur.execute("SET statement_timeout = '5s'")  # a reader that had to wait for a lock would fail here
        cur.execute(sql, params) if params else cur.execute(sql)
        return cur.fetchall() if cur.description else []


def _cli_process(warehouse: Warehouse, *args: str, db: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "OPENAI_API_KEY": API_KEY}
    argv = [sys.executable, "-m", "warehouse_batch.cli", *args, "--db", db or str(warehouse.db),
            "--base-url", warehouse.emulator.base_url]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _questions(warehouse: Warehouse, rows: int = 12) -> Path:
    _pg(str(warehouse.db), f"CREATE TABLE questions AS SELECT i AS id, 'question ' || i AS text "
                           f"FROM generate_series(0, {rows - 1}) AS i")
    return write_job(Path.cwd() / "qa.sql", {"name": "qa", "model": "gpt-4o-mini", "max_requests_per_shard": 5},
                     "SELECT id AS custom_id, text AS prompt FROM questions")


# -- schema -----------------------------------------------------------------------------------
def test_both_warehouses_migrate_to_the_same_tables_columns_and_views(db: str, tmp_path: Path) -> None:
    """Postgres runs each migration from its override file in sql/migrations/postgres/ or transpiled."""
    from tests import pg_copy

    with open_warehouse(tmp_path / "w.duckdb") as duck:
        tables = duck.rows("SELECT table_name, table_type FROM information_schema.tables "
                           "WHERE table_schema = 'warehouse_batch' ORDER BY 1")
        duck_columns = duck.rows("SELECT table_name, column_name, data_type FROM information_schema.columns "
                                 "WHERE table_schema = 'warehouse_batch' ORDER BY 1, 2")
    with open_warehouse(db):
        pass
    pg_tables = _pg(db, "SELECT table_name, CASE table_type WHEN 'BASE TABLE' THEN 'BASE TABLE' ELSE table_type END "
                        "FROM information_schema.tables WHERE table_schema = 'warehouse_batch' ORDER BY 1")
    assert [(t["table_name"], t["table_type"]) for t in tables] == [tuple(r) for r in pg_tables]
    pg_columns = _pg(db, "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a "
                         "JOIN pg_class AS c ON c.oid = a.attrelid WHERE c.relnamespace = 'warehouse_batch'::regnamespace "
                         "AND c.relkind IN ('r', 'v') AND a.attnum > 0 AND NOT a.attisdropped")

    def normal(duck_type: str) -> str:
        # Aggregates differ by width only: DuckDB sums into HUGEINT, Postgres into numeric.
        return {"HUGEINT": "INTEGER", "BIGINT": "INTEGER", "INTEGER": "INTEGER", "DECIMAL(38,0)": "INTEGER",
                "DOUBLE": "DOUBLE", "FLOAT": "DOUBLE", "DECIMAL(38,6)": "DOUBLE",
                "TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}.get(duck_type, duck_type)

    expected = {(c["table_name"], c["column_name"], normal(c["data_type"])) for c in duck_columns}
    actual = {(t, c, normal(pg_copy._duck_type(pg_type, 2 if pg_type == "real[]" else 1))) for t, c, pg_type in pg_columns}
    actual = {(t, c, "INTEGER" if ty == "DOUBLE" and (t, c, "INTEGER") in expected else ty) for t, c, ty in actual}
    assert actual == expected


# -- readers while a job runs -----------------------------------------------------------------
def test_an_analyst_reads_job_status_and_spend_from_a_second_connection_while_a_run_waits(slow: Warehouse) -> None:
    job = _questions(slow)
    runner = _cli_process(slow, "run", str(job), "--wait", "--poll-interval", "0.1")
    try:
        deadline = time.monotonic() + 60
        live: list[tuple[Any, ...]] = []
        while time.monotonic() < deadline and not live:
            try:
                # all three batches at the provider (moving the clock earlier would leave one behind)
                live = _pg(str(slow.db), "SELECT job_name, live_batches::int FROM warehouse_batch.job_status "
                                         "WHERE live_batches > 0 AND (SELECT count(*) FROM warehouse_batch.batches "
                                         "WHERE state = 'submitted') = 3")
            except Exception:  # noqa: BLE001 - the schema may not exist yet
                live = []
            time.sleep(0.1)
        assert live == [("qa", 3)]
        assert runner.poll() is None  # the runner is still waiting: we read beside it, unblocked
        assert _pg(str(slow.db), "SELECT count(*) FROM warehouse_batch.spend") == [(0,)]
        assert _pg(str(slow.db), "SELECT count(*) FROM warehouse_batch.batches WHERE state <> 'collected'") == [(3,)]
        slow.emulator.advance(120)
        out, err = runner.communicate(timeout=120)
        assert runner.returncode == 0, err
    finally:
        if runner.poll() is None:
            runner.kill()
    assert _pg(str(slow.db), "SELECT completed::int, pending::int FROM warehouse_batch.job_status") == [(12, 0)]
    assert _pg(str(slow.db), "SELECT sum(requests)::int FROM warehouse_batch.spend") == [(12,)]
    assert _pg(str(slow.db), "SELECT count(*), count(*) FILTER (WHERE status = 'completed') FROM qa") == [(12, 12)]


# -- durable state ----------------------------------------------------------------------------
def test_a_runner_that_lost_its_work_dir_resumes_from_postgres_without_paying_twice(slow: Warehouse) -> None:
    job = _questions(slow)
    slow.cli("run", str(job))  # three batches submitted, not collected
    assert slow.counters()["batches_created"] == 3
    work = Path.cwd() / ".warehouse_batch"
    assert work.is_dir() and list(work.rglob("*.jsonl"))
    shutil.rmtree(work)  # the runner's disk is gone: shards, engine, everything local

    slow.emulator.advance(120)
    slow.cli("sync")
    assert slow.counters()["batches_created"] == 3 and slow.counters()["requests_received"] == 12
    assert set(slow.counters()["custom_ids_received"].values()) == {1}
    assert _pg(str(slow.db), "SELECT count(*), count(*) FILTER (WHERE status = 'completed') FROM qa") == [(12, 12)]
    # A rerun in yet another empty work dir knows every answer: nothing is sent again.
    shutil.rmtree(work)
    report = slow.cli_json("run", str(job))[0]
    assert report["counts"]["cached"] == 12 and report["counts"]["to_submit"] == 0
    assert slow.counters()["batches_created"] == 3


def test_a_retry_after_the_work_dir_is_lost_rebuilds_rows_from_postgres(warehouse: Warehouse) -> None:
    _pg(str(warehouse.db), "CREATE TABLE p AS SELECT * FROM (VALUES (1, 'fine'), (2, 'x [[emulator:error_500]]')) AS t(id, txt)")
    warehouse.cli("run", "--name", "errs", "--model", "gpt-4o-mini", "--query",
                  "SELECT id AS custom_id, txt AS prompt FROM p", *WAIT, expect=5)
    shutil.rmtree(Path.cwd() / ".warehouse_batch")
    warehouse.cli("retry", "errs", *WAIT, expect=None)
    # The retried request was sent from the job's rows kept in Postgres (errs__rows), not a local file.
    assert warehouse.counters()["requests_received"] == 3
    assert _pg(str(warehouse.db), "SELECT attempts FROM errs WHERE custom_id = 2") == [(2,)]


def test_two_runners_never_write_at_once_and_a_killed_one_leaves_no_lock(slow: Warehouse, tmp_path: Path) -> None:
    job = _questions(slow)
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from warehouse_batch.warehouses import open_warehouse; "
                               f"w = open_warehouse({str(slow.db)!r}, work_dir={str(tmp_path / 'other')!r}); "
                               "print('locked', flush=True); time.sleep(120)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        busy = slow.cli("run", str(job), "--lock-timeout", "0.5", "--work-dir", str(tmp_path / "mine"), expect=2)
        assert "in use by another warehouse_batch process" in busy.output and "--lock-timeout" in busy.output
        assert slow.counters()["files_uploaded"] == 0
        # A status reader never waits for the writer.
        slow.cli("status")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The killed holder's session ended, and its lock with it.
    slow.cli("run", str(job), "--lock-timeout", "5", "--work-dir", str(tmp_path / "mine"))
    assert slow.counters()["batches_created"] == 3


# -- types ------------------------------------------------------------------------------------
def test_source_types_arrive_correct_and_output_tables_are_typed(warehouse: Warehouse) -> None:
    uri = str(warehouse.db)
    _pg(uri, "CREATE TYPE pair AS (a integer, b text)")
    _pg(uri, """CREATE TABLE things AS SELECT i AS id, 'thing ' || i AS name, (i + 0.25)::numeric(10, 2) AS price,
                (i * 1.5)::numeric AS ratio, (i + 0.99)::money AS cost, ROW(i, 'x')::pair AS pair,
                ARRAY['t' || i, 'u'] AS tags, jsonb_build_object('k', i) AS doc,
                timestamptz '2026-01-02 03:04:05+00' AS at FROM generate_series(1, 3) AS i""")
    job = write_job(Path.cwd() / "typed.sql", {"name": "typed", "model": "gpt-4o-mini",
                                               "output_schema": "label VARCHAR, score DOUBLE, flags VARCHAR[], "
                                                                "detail STRUCT(a INTEGER, b VARCHAR)"},
                    "SELECT id AS custom_id, name AS prompt, price, ratio, cost, pair, tags, doc, at FROM things")
    warehouse.cli("run", str(job), *WAIT)
    types = dict(_pg(uri, "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a "
                          "WHERE a.attrelid = 'typed'::regclass AND a.attnum > 0"))
    assert types["custom_id"] == "integer" and types["price"] == "numeric(10,2)" and types["ratio"] == "double precision"
    assert types["cost"] == "numeric(20,2)" and types["pair"] == "jsonb" and types["tags"] == "text[]"
    assert types["doc"] == "jsonb" and types["at"] == "timestamp with time zone"
    assert types["score"] == "double precision" and types["flags"] == "text[]" and types["detail"] == "jsonb"
    assert types["input_tokens"] == "bigint" and types["cost_usd"] == "double precision" and types["status"] == "text"
    row = _pg(uri, "SELECT price::text, ratio, cost::text, pair->>'b', tags, doc->>'k', status FROM typed "
                   "WHERE custom_id = 2")[0]
    assert row[0] == "2.25" and row[1] == 3.0 and row[2] == "2.99" and row[3] == "x"
    assert row[4] == ["t2", "u"] and row[5] == "2" and row[6] == "completed"
    assert _pg(uri, "SELECT count(*) FROM typed WHERE jsonb_typeof(detail) = 'object' AND score IS NOT NULL") == [(3,)]


def test_embeddings_are_real_arrays(warehouse: Warehouse) -> None:
    job = write_job(Path.cwd() / "emb.sql", {"name": "vecs", "endpoint": "/v1/embeddings",
                                             "model": "text-embedding-3-small", "dimensions": 8},
                    "SELECT 1 AS custom_id, 'alpha' AS input UNION ALL SELECT 2, 'beta'")
    warehouse.cli("run", str(job), *WAIT)
    assert dict(_pg(str(warehouse.db), "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a "
                                       "WHERE a.attrelid = 'vecs'::regclass AND a.attname = 'embedding'")) \
        == {"embedding": "real[]"}
    assert _pg(str(warehouse.db), "SELECT array_length(embedding, 1) FROM vecs ORDER BY custom_id") == [(8,), (8,)]


def test_a_valid_postgres_query_is_never_refused_for_being_invalid_duckdb(warehouse: Warehouse) -> None:
    _pg(str(warehouse.db), "CREATE TABLE notes AS SELECT i AS id, 'note ' || i AS body FROM generate_series(1, 4) AS i")
    query = ("SELECT id AS custom_id, format('%s (%s)', body, id::text) AS prompt FROM notes "
             "WHERE body ~* '^note' AND id = ANY(ARRAY[1, 2, 3]) ORDER BY id LIMIT ALL")
    warehouse.cli("run", "--name", "pgq", "--model", "gpt-4o-mini", "--query", query, *WAIT)
    assert _pg(str(warehouse.db), "SELECT count(*) FROM pgq WHERE status = 'completed'") == [(3,)]


# -- secrets ----------------------------------------------------------------------------------
def test_the_password_appears_nowhere(warehouse: Warehouse) -> None:
    password = "s3cret-Pa55word"
    base = str(warehouse.db)
    uri = base.replace("postgres@", f"postgres:{password}@")
    assert redact(uri) == base.replace("postgres@", "postgres:***@")
    _pg(base, "CREATE TABLE q AS SELECT i AS id, 'q' || i AS t FROM generate_series(1, 3) AS i")
    seen = []
    for args in (["run", "--name", "sec", "--model", "gpt-4o-mini", "--query", "SELECT id AS custom_id, t AS prompt FROM q",
                  *WAIT, "--json"], ["status", "--json"], ["status"]):
        extra = ["--base-url", warehouse.emulator.base_url] if args[0] == "run" else []
        result = CliRunner().invoke(main, [*args, "--db", uri, *extra], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        seen.append(result.output)
    # A failure names the warehouse, redacted.
    bad = uri.rsplit("/", 1)[0] + "/no_such_db"
    result = CliRunner().invoke(main, ["status", "--db", bad], catch_exceptions=False)
    assert result.exit_code != 0 and "***" in result.output
    seen.append(result.output)
    assert all(password not in text for text in seen)
    # Not in any table of the warehouse (metadata, rows, output), nor in any file of the work dir.
    dump = _pg(base, "SELECT string_agg(t::text, '') FROM (SELECT to_jsonb(x)::text AS t FROM "
                     "(SELECT * FROM warehouse_batch.jobs) AS x UNION ALL SELECT to_jsonb(y)::text FROM "
                     "(SELECT * FROM warehouse_batch.batches) AS y UNION ALL SELECT to_jsonb(z)::text FROM "
                     "(SELECT * FROM warehouse_batch.runs) AS z) AS all_rows")[0][0]
    assert dump and password not in dump
    for path in Path.cwd().rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
    assert json.loads(seen[1])  # status --json is valid JSON


def test_plan_cancel_and_budget_work_on_postgres(slow: Warehouse) -> None:
    job = _questions(slow)
    plan = slow.cli_json("plan", str(job))[0]
    assert plan["counts"]["to_submit"] == 12 and slow.counters()["files_uploaded"] == 0
    slow.cli("run", str(job))
    slow.cli("cancel", "qa")
    slow.emulator.advance(120)
    slow.cli("sync", expect=None)
    assert _pg(str(slow.db), "SELECT count(*) FROM warehouse_batch.batches WHERE state = 'collected'") == [(3,)]
    assert _pg(str(slow.db), "SELECT DISTINCT status FROM qa") == [("cancelled",)]
    slow.cli("budget", "25")
    assert _pg(str(slow.db), "SELECT count(*) FROM warehouse_batch.settings") == [(1,)]


# -- the demo ---------------------------------------------------------------------------------
def test_the_demo_runs_in_postgres_and_a_second_run_sends_nothing(db: str, tmp_path: Path) -> None:
    first = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path / "demo"), "--db", db])
    assert first.exit_code == 0, first.output
    rows = _pg(db, "SELECT count(*) FROM reviews")[0][0]
    assert _pg(db, "SELECT status, count(*) FROM review_sentiment GROUP BY 1") == [("completed", rows)]
    assert f"{rows} rows → table review_sentiment ({rows} completed)" in first.output
    assert "psql 'postgresql://" in first.output and not (tmp_path / "demo" / "reviews.duckdb").exists()
    # The demo's emulator starts afresh: a second run that sent anything would need new batches.
    before = _pg(db, "SELECT count(*) FROM warehouse_batch.batches")
    second = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path / "demo"), "--db", db])
    assert second.exit_code == 0, second.output
    assert _pg(db, "SELECT count(*) FROM warehouse_batch.batches") == before
    assert _pg(db, "SELECT count(*) FILTER (WHERE status = 'completed') FROM review_sentiment") == [(rows,)]
