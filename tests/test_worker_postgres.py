"""`warehouse-batch worker` on PostgreSQL: analysts define jobs from their own roles' sessions
(`define_job` or a plain INSERT), the worker (real subprocesses) reads each query with its
definer's rights, sees every session's edits without undoing them, and several workers share one
database without submitting a shard twice.

Waits poll the database (or the worker's HTTP side) until a state is reached, with a generous
ceiling; nothing asserts on how long anything took.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from warehouse_batch.emulator import Emulator
from warehouse_batch.emulator.webhooks import new_secret

from .conftest import API_KEY
from .test_worker import OPTIONS, QUERY, WAIT, WorkerProcess, http, wait_for

DEFS = "warehouse_batch.job_definitions"


@pytest.fixture
def warehouse_kind() -> str:
    return "postgres"


def sql(uri: str, statement: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    """One statement in its own session (an analyst's psql)."""
    import adbc_driver_postgresql.dbapi as dbapi

    with dbapi.connect(uri, autocommit=True) as con, con.cursor() as cur:
        cur.execute(statement, params) if params else cur.execute(statement)
        return cur.fetchall() if cur.description else []


def as_user(uri: str, user: str) -> str:
    return re.sub(r"//[^@/]+@", f"//{user}@", uri, count=1)


def states(uri: str) -> dict[str, tuple]:
    """name → (state, version, last_error, defined_by)."""
    return {r[0]: tuple(r[1:]) for r in sql(uri, f"SELECT name, state, version, last_error, defined_by FROM {DEFS}")}


def decided(uri: str, *names: str) -> dict[str, tuple] | None:
    found = states(uri)
    return found if all(found.get(n, ("",))[0] in ("refused", "done", "failed") for n in names) else None


def insert(uri: str, name: str, query: str, options: dict[str, Any], **columns: Any) -> None:
    cols = ["name", "query", "options", *columns]
    values = (name, query, json.dumps(options), *columns.values())
    placeholders = ", ".join("$3::json" if i == 3 else f"${i}" for i in range(1, len(cols) + 1))
    sql(uri, f"INSERT INTO {DEFS} ({', '.join(cols)}) VALUES ({placeholders})", values)


def advisory_locks(uri: str) -> int:
    return sql(uri, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")[0][0]


@pytest.fixture
def reviews(db: str) -> str:
    sql(db, "CREATE TABLE reviews AS SELECT i AS id, 'review number ' || i AS text FROM generate_series(0, 4) AS i")
    return db


@pytest.fixture
def start_worker(reviews: str, emulator: Emulator, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, uri: str | None = None, log: str = "worker.log", secret: str | None = None,
              env: dict[str, str] | None = None) -> WorkerProcess:
        # WorkerProcess passes --db as text: a URI works as a path would.
        worker = WorkerProcess(uri or reviews, emulator, tmp_path / log, *args,  # type: ignore[arg-type]
                               secret=secret, env=env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def _role(uri: str, name: str) -> None:
    # Roles belong to the cluster, which the tests of one session share.
    sql(uri, f"DO $$ BEGIN CREATE ROLE {name} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")


# -- who may spend ------------------------------------------------------------------------------
def test_the_definer_is_current_user_and_the_query_runs_with_their_rights(
        reviews: str, emulator: Emulator, start_worker: Callable[..., WorkerProcess]) -> None:
    database = reviews.rsplit("/", 1)[1]
    for role in ("wb_worker", "alice", "mallory", "carol", "eve"):
        _role(reviews, role)
    # The worker's own login role: creates the warehouse_batch schema and the output tables, and
    # reads each definition's query as its definer (a member of alice and mallory, not of carol).
    sql(reviews, f"GRANT CREATE ON DATABASE {database} TO wb_worker")
    sql(reviews, "GRANT CREATE ON SCHEMA public TO wb_worker")
    sql(reviews, "GRANT alice, mallory TO wb_worker")
    sql(reviews, "CREATE TABLE secrets AS SELECT i AS id, 'secret ' || i AS text FROM generate_series(0, 2) AS i")
    sql(reviews, "GRANT SELECT ON reviews TO alice, mallory, carol, eve")
    sql(reviews, "GRANT SELECT ON secrets TO alice")
    start_worker("--poll-interval", "0.2", "--allow-definer", "alice", "--allow-definer", "mallory",
                 "--allow-definer", "carol", "--definer-budget", "mallory=0.0000001",
                 uri=as_user(reviews, "wb_worker"))
    sql(reviews, "GRANT USAGE ON SCHEMA warehouse_batch TO alice, mallory, carol, eve")
    sql(reviews, f"GRANT SELECT, INSERT, UPDATE, DELETE ON {DEFS} TO alice, mallory, carol, eve")
    alice, mallory = as_user(reviews, "alice"), as_user(reviews, "mallory")

    sql(alice, "SELECT warehouse_batch.define_job($1, $2, $3::jsonb)", ("sentiment", QUERY, json.dumps(OPTIONS)))
    found = wait_for("alice's job", lambda: decided(reviews, "sentiment"))
    assert found["sentiment"] == ("done", 1, None, "alice")
    assert sql(reviews, "SELECT status, count(*) FROM sentiment GROUP BY status") == [("completed", 5)]

    # mallory writes alice's name into defined_by: the row records mallory, whose budget refuses it.
    insert(mallory, "cheap", QUERY, {**OPTIONS, "system": "Mallory's question."}, defined_by="alice")
    sql(mallory, f"UPDATE {DEFS} SET defined_by = 'alice' WHERE name = 'cheap'")
    found = wait_for("mallory's job", lambda: decided(reviews, "cheap"))
    assert found["cheap"][0] == "refused" and found["cheap"][3] == "mallory"
    assert "'mallory''s daily budget" in found["cheap"][2]

    # mallory points alice's job at a table only alice may read: the edit is hers, and Postgres refuses it.
    sql(mallory, f"UPDATE {DEFS} SET query = 'SELECT id AS custom_id, text AS prompt FROM secrets' "
                 "WHERE name = 'sentiment'")
    found = wait_for("the edited job", lambda: (s := decided(reviews, "sentiment")) and s["sentiment"][1] == 2 and s)
    assert found["sentiment"][0] == "refused" and found["sentiment"][3] == "mallory"
    assert "permission denied for table secrets" in found["sentiment"][2]
    assert sql(reviews, "SELECT version, defined_by FROM warehouse_batch.job_definition_versions "
                        "WHERE name = 'sentiment' ORDER BY version") == [(1, "alice"), (2, "mallory")]

    # SET ROLE is checked against the worker's login role, so code that switches roles could read as
    # alice: a query calling set_config or SQL-running functions is refused, and a switch made by a
    # function of mallory's own is caught when the read ends.
    escape = ("SELECT 1 AS custom_id, set_config('role', 'alice', true) || "
              "query_to_xml('SELECT * FROM secrets', true, false, '')::text AS prompt")
    insert(mallory, "escape", escape, {**OPTIONS, "system": "Escape."})
    sql(reviews, "GRANT CREATE ON SCHEMA public TO mallory")
    sql(mallory, "CREATE FUNCTION become(r text) RETURNS text LANGUAGE plpgsql AS "
                 "$$ BEGIN EXECUTE format('SET ROLE %I', r); RETURN ''; END $$")
    insert(mallory, "switch", "SELECT id AS custom_id, become('alice') || text AS prompt FROM reviews",
           {**OPTIONS, "system": "Switch."})
    found = wait_for("mallory's escapes", lambda: decided(reviews, "escape", "switch"))
    assert found["escape"][0] == "refused" and "calls set_config()" in found["escape"][2]
    assert found["switch"][0] == "refused" and "changed the role it runs as (from 'mallory')" in found["switch"][2]

    # carol may spend but the worker cannot act as her; eve is not on the allow-list.
    sql(as_user(reviews, "carol"), "SELECT warehouse_batch.define_job('carols', $1, $2::jsonb)",
        (QUERY, json.dumps({**OPTIONS, "system": "Carol's question."})))
    sql(as_user(reviews, "eve"), "SELECT warehouse_batch.define_job('eves', $1, $2::jsonb)",
        (QUERY, json.dumps({**OPTIONS, "system": "Eve's question."})))
    found = wait_for("carol's and eve's jobs", lambda: decided(reviews, "carols", "eves"))
    assert found["carols"][0] == "refused" and 'GRANT "carol" TO' in found["carols"][2]
    assert found["eves"][0] == "refused" and "'eve' is not on this worker's allow-list" in found["eves"][2]

    # Only alice's first version reached the provider.
    counters = emulator.counters()
    assert (counters["files_uploaded"], counters["batches_created"], counters["requests_received"]) == (1, 1, 5)
    refused = ("cheap", "carols", "eves", "escape", "switch")
    assert sql(reviews, "SELECT count(*) FROM information_schema.tables WHERE table_name = ANY($1)", (list(refused),)) \
        == [(0,)]


# -- analysts' edits ----------------------------------------------------------------------------
def test_edits_from_other_sessions_are_seen_and_never_undone(
        reviews: str, emulator: Emulator, start_worker: Callable[..., WorkerProcess]) -> None:
    import adbc_driver_postgresql.dbapi as dbapi

    emulator.configure(request_time=1000)  # batches stay in flight until the test advances the clock
    start_worker("--poll-interval", "0.2")
    insert(reviews, "sentiment", QUERY, OPTIONS)
    wait_for("the INSERT to be picked up and sent", lambda: sql(
        reviews, "SELECT count(*) FROM warehouse_batch.batches WHERE state = 'submitted'") == [(1,)])
    wait_for("the row to say so", lambda: states(reviews)["sentiment"][:2] == ("running", 1))

    # An analyst's transaction holds the row while the worker wants to write its own columns; the
    # worker waits for it, and the analyst's edit survives the worker's write.
    with dbapi.connect(reviews, autocommit=True) as con, con.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute(f"UPDATE {DEFS} SET options = $1::json WHERE name = 'sentiment'",
                    (json.dumps({**OPTIONS, "system": "Classify it again."}),))
        wait_for("the worker to wait for the analyst's row", lambda: sql(
            reviews, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                     f"AND query LIKE '%{DEFS}%'") == [(1,)])
        cur.execute("COMMIT")
    found = wait_for("version 2", lambda: (s := states(reviews)) and s["sentiment"][:2] == ("running", 2) and s)
    assert found["sentiment"][2] is None
    assert sql(reviews, f"SELECT options::jsonb ->> 'system' FROM {DEFS}") == [("Classify it again.",)]
    assert sql(reviews, "SELECT version, options::jsonb ->> 'system' FROM warehouse_batch.job_definition_versions "
                        "ORDER BY version") == [(1, OPTIONS["system"]), (2, "Classify it again.")]
    wait_for("version 2's batch", lambda: emulator.counters()["batches_created"] == 2)

    # Paused, then cancelled, from a second session.
    sql(reviews, f"UPDATE {DEFS} SET enabled = false WHERE name = 'sentiment'")
    wait_for("paused", lambda: states(reviews)["sentiment"][0] == "paused")
    sql(reviews, f"UPDATE {DEFS} SET enabled = true, cancel_requested = true WHERE name = 'sentiment'")
    wait_for("cancelled", lambda: states(reviews)["sentiment"][0] == "cancelled")
    wait_for("its live batches cancelled", lambda: emulator.counters()["batches_cancelled"] == 2)
    emulator.advance(10_000)
    assert emulator.counters()["requests_received"] == 10


# -- several workers ----------------------------------------------------------------------------
def test_several_workers_never_both_submit_a_shard_and_a_killed_one_leaves_no_lock(
        reviews: str, emulator: Emulator, start_worker: Callable[..., WorkerProcess]) -> None:
    options = {**OPTIONS, "max_requests_per_shard": 2}  # 5 rows: 3 shards per job
    first = start_worker("--poll-interval", "0.2", log="first.log", env={"WAREHOUSE_BATCH_FAILPOINT": "after_create"})
    insert(reviews, "one", QUERY, options)
    assert first.proc.wait(timeout=WAIT) == -signal.SIGKILL  # killed right after creating a batch
    wait_for("the killed worker's session and lock to go", lambda: advisory_locks(reviews) == 0)

    workers = [start_worker("--poll-interval", "0.2", log=f"worker{i}.log") for i in (1, 2)]
    insert(reviews, "two", QUERY, {**options, "system": "Second question."})
    insert(reviews, "three", QUERY, {**options, "system": "Third question."})
    wait_for("every job done", lambda: [s[0] for s in states(reviews).values()] == ["done"] * 3)
    shards = sql(reviews, "SELECT count(*), count(DISTINCT batch_id) FROM warehouse_batch.batches")[0]
    counters = emulator.counters()
    assert shards == (9, 9)
    assert (counters["batches_created"], counters["requests_received"]) == (9, 15)
    for name in ("one", "two", "three"):
        assert sql(reviews, f"SELECT status, count(*) FROM {name} GROUP BY status") == [("completed", 5)]
    codes = [w.stop() for w in workers]  # SIGTERM, maybe mid-step: a clean stop all the same
    assert codes == [0, 0], "\n".join(w.log.read_text() for w in workers)
    wait_for("no lock left", lambda: advisory_locks(reviews) == 0)


# -- the HTTP side ------------------------------------------------------------------------------
def test_webhooks_status_page_and_metrics_work_on_postgres(
        reviews: str, emulator: Emulator, start_worker: Callable[..., WorkerProcess]) -> None:
    secret = new_secret()
    emulator.configure(request_time=1000)
    worker = start_worker("--poll-interval", "3600", "--max-poll-interval", "3600", secret=secret)
    emulator.configure(webhook_url=worker.url + "/webhooks/openai", webhook_secret=secret)
    sql(reviews, "SELECT warehouse_batch.define_job('sentiment', $1, $2::jsonb)", (QUERY, json.dumps(OPTIONS)))
    batch_id = wait_for("a submitted batch", lambda: sql(
        reviews, "SELECT batch_id FROM warehouse_batch.batches WHERE state = 'submitted'"))[0][0]
    assert emulator.send_webhook(batch_id, "completed", forge=True).status_code == 401
    page = wait_for("the page to show the live batch", lambda: (
        body := http(worker.url)[1]) and '<td class="num pending">5</td>' in body and body)
    assert re.search(r'id="live-batches">Live batches<b>1</b>', page) and "postgresql://" in page

    emulator.advance(10_000)  # the batch completes; the emulator's signed webhook follows
    wait_for("the webhook's collect", lambda: sql(
        reviews, "SELECT count(*) FROM sentiment WHERE status = 'completed'") == [(5,)])
    assert http(worker.url + "/healthz")[0] == 200
    _, metrics = wait_for("the metrics to show the answers", lambda: (
        m := http(worker.url + "/metrics")) and "warehouse_batch_requests_answered_total 5.0" in m[1] and m)
    assert 'warehouse_batch_webhooks_total{outcome="refused"} 1.0' in metrics
    assert 'warehouse_batch_webhooks_total{outcome="accepted"} 1.0' in metrics
    assert 'warehouse_batch_job_rows{job="sentiment",status="completed"} 5.0' in metrics


def test_default_definer_is_refused_on_postgres(reviews: str) -> None:
    done = subprocess.run([sys.executable, "-m", "warehouse_batch.cli", "worker", "--db", reviews, "--port", "0",
                           "--default-definer", "alice"], env={**os.environ, "OPENAI_API_KEY": API_KEY},
                          capture_output=True, text=True, timeout=WAIT)
    assert done.returncode != 0
    assert "--default-definer is for DuckDB" in done.stderr and "listening" not in done.stderr
