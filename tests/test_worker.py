"""`warehouse-batch worker` as a team runs it: a real worker subprocess, the emulator over loopback,
and an analyst's own DuckDB connection writing definitions while the worker runs.

Waits poll the warehouse (or the worker's HTTP side) until a state is reached, with a generous
ceiling; nothing asserts on how long anything took.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from warehouse_batch.cost import usd
from warehouse_batch.emulator import Emulator
from warehouse_batch.emulator.webhooks import new_secret

from .conftest import API_KEY

WAIT = 90.0  # ceiling for anything the worker does; tests end as soon as the state is reached


# -- helpers ------------------------------------------------------------------------------------
def analyst(db: Path, sql: str, params: list[Any] | None = None) -> list[tuple]:
    """One statement on the analyst's own connection. DuckDB lets one process hold the file; the
    worker releases it between steps, so a busy file is tried again (as a SQL client would)."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            con = duckdb.connect(str(db))
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        try:
            cur = con.execute(sql, params or [])
            return cur.fetchall() if cur.description else []
        finally:
            con.close()


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def states(db: Path) -> dict[str, tuple]:
    """name → (state, version, last_error, defined_by)."""
    return {r[0]: r[1:] for r in analyst(
        db, "SELECT name, state, version, last_error, defined_by FROM warehouse_batch.job_definitions")}


def define(db: Path, name: str, query: str, options: dict[str, Any] | str, **columns: Any) -> None:
    cols = ["name", "query", "options", *columns]
    values = [name, query, options if isinstance(options, str) else json.dumps(options), *columns.values()]
    analyst(db, f"INSERT INTO warehouse_batch.job_definitions ({', '.join(cols)}) "
                f"VALUES ({', '.join('?' for _ in cols)})", values)


def http(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class WorkerProcess:
    """`warehouse-batch worker` in a subprocess, its log in a file."""

    def __init__(self, db: Path, emulator: Emulator, log: Path, *args: str, secret: str | None = None,
                 env: dict[str, str] | None = None):
        env = {**os.environ, "OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": emulator.base_url, **(env or {})}
        env.pop("OPENAI_WEBHOOK_SECRET", None)
        if secret:
            env["OPENAI_WEBHOOK_SECRET"] = secret
        self.log = log
        self._out = log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "warehouse_batch.cli", "worker", "--db", str(db), "--port", "0",
             "--check-interval", "0.3", *args], env=env, stdout=self._out, stderr=subprocess.STDOUT)
        match = wait_for("the worker to listen", lambda: self.proc.poll() is None and re.search(
            r"listening on (http://\S+)", log.read_text()) or self._dead())
        self.url = match.group(1)

    def _dead(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the worker exited with {self.proc.returncode}:\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=WAIT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._out.close()
        return code


@pytest.fixture
def reviews(db: Path) -> Path:
    analyst(db, "CREATE TABLE reviews AS SELECT i AS id, 'review number ' || i AS text FROM range(5) t(i)")
    return db


@pytest.fixture
def start_worker(reviews: Path, emulator: Emulator, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, secret: str | None = None, env: dict[str, str] | None = None) -> WorkerProcess:
        worker = WorkerProcess(reviews, emulator, tmp_path / "worker.log", *args, secret=secret, env=env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


OPTIONS = {"model": "gpt-4o-mini", "system": "Classify the review.", "output_schema": "sentiment VARCHAR"}
QUERY = "SELECT id AS custom_id, text AS prompt FROM reviews"


# -- tests --------------------------------------------------------------------------------------
def test_an_analyst_defines_a_job_in_sql_and_the_worker_runs_it(reviews: Path, emulator: Emulator,
                                                              start_worker: Callable[..., WorkerProcess]) -> None:
    worker = start_worker("--poll-interval", "0.2")
    define(reviews, "sentiment", QUERY, OPTIONS)
    wait_for("the job to finish", lambda: states(reviews).get("sentiment", ("",))[0] == "done")
    rows = analyst(reviews, "SELECT custom_id, status, sentiment FROM sentiment ORDER BY custom_id")
    assert [(r[0], r[1]) for r in rows] == [(i, "completed") for i in range(5)]
    assert all(r[2] for r in rows)
    assert emulator.counters()["requests_received"] == 5
    state, version, error, definer = states(reviews)["sentiment"]
    assert (version, error) == (1, None) and definer  # the worker's OS user: DuckDB has no users

    # An edit is a new version; only the rows whose requests changed are sent.
    analyst(reviews, "UPDATE warehouse_batch.job_definitions SET query = ? WHERE name = 'sentiment'",
            [QUERY.replace("text AS prompt", "CASE WHEN id = 4 THEN 'changed review' ELSE text END AS prompt")])
    wait_for("version 2 to finish", lambda: states(reviews)["sentiment"][:2] == ("done", 2))
    assert emulator.counters()["requests_received"] == 6
    assert emulator.counters()["batches_created"] == 2
    versions = analyst(reviews, "SELECT version, query LIKE '%changed review%' FROM "
                                "warehouse_batch.job_definition_versions WHERE name = 'sentiment' ORDER BY version")
    assert versions == [(1, False), (2, True)]
    assert analyst(reviews, "SELECT status, count(*) FROM sentiment GROUP BY ALL") == [("completed", 5)]

    # New source rows are picked up when the analyst asks for a run; only they are sent.
    analyst(reviews, "INSERT INTO reviews VALUES (5, 'a new review')")
    analyst(reviews, "UPDATE warehouse_batch.job_definitions SET run_requested = true WHERE name = 'sentiment'")
    wait_for("the new row", lambda: analyst(reviews, "SELECT count(*) FROM sentiment WHERE status = 'completed'")
             == [(6,)])
    assert emulator.counters()["requests_received"] == 7
    assert analyst(reviews, "SELECT run_requested, version FROM warehouse_batch.job_definitions "
                            "WHERE name = 'sentiment'") == [(False, 2)]

    # Paused: nothing is sent for a new definition while enabled = false.
    define(reviews, "paused_job", QUERY.replace("FROM reviews", "FROM reviews WHERE id < 2"),
           {**OPTIONS, "system": "Another question."}, enabled=False)
    wait_for("the definition to be paused", lambda: states(reviews).get("paused_job", ("",))[0] == "paused")
    assert emulator.counters()["requests_received"] == 7

    # The BI views answer from the same tables.
    progress = analyst(reviews, "SELECT job_name, row_count, completed, percent_done, defined_by, version "
                                "FROM warehouse_batch.job_progress WHERE job_name = 'sentiment'")
    assert progress == [("sentiment", 6, 6, 100.0, definer, 2)]
    spend = analyst(reviews, "SELECT sum(requests), sum(cost_usd) > 0 FROM warehouse_batch.daily_spend "
                             "WHERE job_name = 'sentiment'")
    assert spend == [(7, True)]
    assert worker.stop() == 0


def test_forbidden_over_budget_and_bad_definitions_are_refused_in_their_rows(
        reviews: Path, emulator: Emulator, start_worker: Callable[..., WorkerProcess]) -> None:
    start_worker("--poll-interval", "0.2", "--allow-definer", "alice", "--allow-definer", "bob",
                 "--definer-budget", "alice=0.0000001")
    define(reviews, "by_mallory", QUERY, OPTIONS, defined_by="mallory")
    define(reviews, "too_dear", QUERY, OPTIONS, defined_by="alice")
    define(reviews, "bad_option", QUERY, {"model": "gpt-4o-mini", "temprature": 0}, defined_by="bob")
    define(reviews, "reads_a_file", "SELECT 1 AS custom_id, 'x' AS prompt FROM read_csv('/etc/hosts')", OPTIONS,
           defined_by="bob")
    define(reviews, "code_schema", QUERY, {**OPTIONS, "output_schema": "mymodule:Answer"}, defined_by="bob")
    define(reviews, "fine", QUERY, {**OPTIONS, "system": "Bob's own question."}, defined_by="bob")
    found = wait_for("every definition to be decided", lambda: (s := states(reviews)) and all(
        s.get(n, ("",))[0] in ("refused", "done") for n in
        ("by_mallory", "too_dear", "bad_option", "reads_a_file", "code_schema", "fine")) and s)
    assert {n: v[0] for n, v in found.items()} == {
        "by_mallory": "refused", "too_dear": "refused", "bad_option": "refused", "reads_a_file": "refused",
        "code_schema": "refused", "fine": "done"}
    assert "'mallory' is not on this worker's allow-list" in found["by_mallory"][2]
    assert "'alice''s daily budget" in found["too_dear"][2] and "nothing was sent" in found["too_dear"][2]
    assert "temprature" in found["bad_option"][2]
    assert "read_csv()" in found["reads_a_file"][2]
    assert "not a file or Python model" in found["code_schema"][2]
    # Only bob's good job reached the provider: one file, one batch, its five requests.
    counters = emulator.counters()
    assert (counters["files_uploaded"], counters["batches_created"], counters["requests_received"]) == (1, 1, 5)
    assert analyst(reviews, "SELECT count(*) FROM fine WHERE status = 'completed'") == [(5,)]
    assert analyst(reviews, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'too_dear'") == [(0,)]


def _live_batch(db: Path) -> str:
    return wait_for("a submitted batch", lambda: analyst(
        db, "SELECT batch_id FROM warehouse_batch.batches WHERE state = 'submitted'"))[0][0]


def test_a_signed_webhook_collects_at_once_and_a_forged_one_is_refused(
        reviews: Path, emulator: Emulator, start_worker: Callable[..., WorkerProcess]) -> None:
    secret = new_secret()
    emulator.configure(request_time=1000)  # emulated seconds: the batch runs until the test advances the clock
    # Polling waits an hour after the first look: only the webhook can bring the answers in.
    worker = start_worker("--poll-interval", "3600", "--max-poll-interval", "3600", secret=secret)
    emulator.configure(webhook_url=worker.url + "/webhooks/openai", webhook_secret=secret)
    define(reviews, "sentiment", QUERY, OPTIONS)
    batch_id = _live_batch(reviews)
    downloads = "GET /v1/files/{file_id}/content"

    forged = emulator.send_webhook(batch_id, "completed", forge=True)
    assert forged.status_code == 401
    code, body = http(worker.url + "/webhooks/openai", b'{"type": "batch.completed"}',
                      {"content-type": "application/json"})  # no signature headers at all
    assert code == 401
    assert emulator.counters()["calls"].get(downloads, 0) == 0
    assert analyst(reviews, "SELECT status, count(*) FROM sentiment GROUP BY ALL") == [("pending", 5)]
    # While the batch runs, the page shows it in flight with the cost still to come.
    page = wait_for("the page to show the live batch", lambda: (
        body := http(worker.url)[1]) and '<td class="num pending">5</td>' in body and body)
    assert re.search(r'id="live-batches">Live batches<b>1</b>', page)
    assert re.search(r'<td class="num remaining">\$0\.0000\d+</td>', page)

    emulator.advance(10_000)  # the batch completes; the emulator's own webhook follows
    wait_for("the webhook's collect", lambda: analyst(
        reviews, "SELECT count(*) FROM sentiment WHERE status = 'completed'") == [(5,)])
    sent = [d for d in emulator.webhook_deliveries() if d.event["type"] == "batch.completed"
            and d.headers["webhook-signature"] and d.status_code == 200]
    assert sent and sent[-1].event["data"]["id"] == batch_id
    collected = emulator.counters()["calls"][downloads]

    replay = emulator.replay_webhook()
    assert replay.status_code == 200
    assert emulator.counters()["calls"][downloads] == collected
    _, metrics = http(worker.url + "/metrics")
    assert 'warehouse_batch_webhooks_total{outcome="refused"} 2.0' in metrics
    assert 'warehouse_batch_webhooks_total{outcome="accepted"} 1.0' in metrics
    assert 'warehouse_batch_webhooks_total{outcome="duplicate"} 1.0' in metrics


def test_sigterm_mid_run_then_restart_pays_nothing_twice(
        reviews: Path, emulator: Emulator, start_worker: Callable[..., WorkerProcess]) -> None:
    emulator.configure(request_time=1000)
    first = start_worker("--poll-interval", "0.2")
    define(reviews, "sentiment", QUERY, OPTIONS)
    define(reviews, "second", QUERY, {**OPTIONS, "system": "Another question."})
    _live_batch(reviews)
    wait_for("both batches", lambda: analyst(
        reviews, "SELECT count(*) FROM warehouse_batch.batches WHERE state = 'submitted'") == [(2,)])
    assert first.stop() == 0
    assert "stopped" in first.log.read_text()
    assert analyst(reviews, "SELECT count(*) FROM sentiment WHERE status = 'pending'") == [(5,)]

    emulator.advance(10_000)
    second = start_worker("--poll-interval", "0.2")
    wait_for("both jobs done", lambda: [s[0] for s in states(reviews).values()] == ["done", "done"])
    counters = emulator.counters()
    assert (counters["files_uploaded"], counters["batch_create_calls"], counters["requests_received"]) == (2, 2, 10)
    assert analyst(reviews, "SELECT count(*) FROM sentiment WHERE status = 'completed'") == [(5,)]
    assert second.stop() == 0


@pytest.mark.parametrize("point", ["after_plan", "after_create", "after_download"])
def test_a_worker_killed_anywhere_resumes_on_restart_without_paying_twice(
        point: str, reviews: Path, emulator: Emulator, start_worker: Callable[..., WorkerProcess]) -> None:
    first = start_worker("--poll-interval", "0.2", env={"WAREHOUSE_BATCH_FAILPOINT": point})
    define(reviews, "sentiment", QUERY, OPTIONS)
    assert first.proc.wait(timeout=WAIT) == -signal.SIGKILL
    start_worker("--poll-interval", "0.2")
    wait_for("the job to finish", lambda: states(reviews)["sentiment"][0] == "done")
    counters = emulator.counters()
    assert (counters["batches_created"], counters["requests_received"]) == (1, 5)
    assert analyst(reviews, "SELECT count(*) FROM sentiment WHERE status = 'completed'") == [(5,)]


def test_cancel_and_delete_are_sql_too(reviews: Path, emulator: Emulator,
                                       start_worker: Callable[..., WorkerProcess]) -> None:
    emulator.configure(request_time=1000)
    start_worker("--poll-interval", "0.2")
    define(reviews, "sentiment", QUERY, OPTIONS)
    define(reviews, "other", QUERY, {**OPTIONS, "system": "Another question."})
    wait_for("both batches", lambda: analyst(
        reviews, "SELECT count(*) FROM warehouse_batch.batches WHERE state = 'submitted'") == [(2,)])
    analyst(reviews, "UPDATE warehouse_batch.job_definitions SET cancel_requested = true WHERE name = 'sentiment'")
    analyst(reviews, "DELETE FROM warehouse_batch.job_definitions WHERE name = 'other'")
    wait_for("both cancelled", lambda: emulator.counters()["batches_cancelled"] == 2)
    assert wait_for("the row says so", lambda: states(reviews)["sentiment"][0] == "cancelled")
    assert analyst(reviews, "SELECT deleted_at IS NOT NULL FROM warehouse_batch.job_definition_versions "
                            "WHERE name = 'other'") == [(True,)]


# -- the status page in a real browser ----------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"


def _browser() -> Any:
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium: install the Debian package as root (`apt-get install -y chromium`) for this test")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[dev]'")
    return sync_playwright


def test_the_status_page_renders_in_headless_chromium_with_the_right_numbers(
        reviews: Path, emulator: Emulator, start_worker: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    sync_playwright = _browser()
    emulator.configure(error_rate=0.4, seed=3)  # some requests fail (HTTP 500 lines), attempts capped at 1
    worker = start_worker("--poll-interval", "0.2")
    define(reviews, "sentiment", QUERY, {**OPTIONS, "max_attempts": 1}, defined_by="alice")
    wait_for("the job to finish", lambda: states(reviews).get("sentiment", ("",))[0] == "done")
    completed, failed = analyst(reviews, "SELECT count(*) FILTER (WHERE status = 'completed'), "
                                         "count(*) FILTER (WHERE status = 'failed') FROM sentiment")[0]
    assert failed > 0 and completed > 0
    spend = analyst(reviews, "SELECT spend_usd FROM warehouse_batch.job_progress WHERE job_name = 'sentiment'")[0][0]
    codes = dict(analyst(reviews, "SELECT error_code, count(*) FROM sentiment WHERE status = 'failed' GROUP BY ALL"))
    # The page shows the snapshot of the worker's last step: wait until it has the finished job.
    wait_for("the page to show the finished job", lambda: "<span class=\"state\">done</span>" in http(worker.url)[1])

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(worker.url + "/")
            row = page.locator('tr[data-job="sentiment"]')
            assert row.locator("td.rows").inner_text() == "5"
            assert row.locator("td.completed").inner_text() == str(completed)
            assert row.locator("td.failed").inner_text() == str(failed)
            assert row.locator("td.pending").inner_text() == "0"
            assert row.locator("td.spend").inner_text() == usd(spend)
            assert row.locator(".pct").inner_text() == "100%"
            assert row.locator('[role="progressbar"]').get_attribute("aria-valuenow") == "5"
            assert "alice" in row.inner_text()
            assert page.locator("#spend-today b").inner_text() == usd(spend)
            failures = {r.locator("td.code").inner_text(): int(r.locator("td.num").inner_text())
                        for r in page.locator("#failures tbody tr").all()}
            assert failures == codes
            # Nothing is fetched from elsewhere: the page is one document.
            assert page.evaluate("performance.getEntriesByType('resource').map(e => e.name)") == []
            page.screenshot(path=str(tmp_path / "status.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "status.png").stat().st_size > 0
    code, health = http(worker.url + "/healthz")
    assert code == 200 and json.loads(health)["status"] == "ok"
    _, metrics = http(worker.url + "/metrics")
    assert f'warehouse_batch_job_rows{{job="sentiment",status="completed"}} {float(completed)}' in metrics
    assert "warehouse_batch_requests_sent_total 5.0" in metrics
    assert "warehouse_batch_last_successful_poll_timestamp_seconds" in metrics


@pytest.mark.parametrize("query", [
    "SELECT 1 AS custom_id, 'x' AS prompt FROM '/etc/hosts'",
    "SELECT 1 AS custom_id, 'x' AS prompt FROM \"data.parquet\"",
    "SELECT 1 AS custom_id, content AS prompt FROM read_text('/etc/hostname')",
    "SELECT 1 AS custom_id, 'x' AS prompt FROM read_parquet('s3://bucket/x.parquet')",
    "SELECT 1 AS custom_id, file AS prompt FROM glob('/home/*')",
    "SELECT 1 AS custom_id, 'x' AS prompt FROM query('SELECT 1')",
    "WITH t AS (SELECT * FROM read_csv_auto('x.csv')) SELECT 1 AS custom_id, 'x' AS prompt FROM t",
])
def test_a_definition_may_not_read_the_worker_hosts_files(query: str) -> None:
    from warehouse_batch.definitions import check_reads_only_tables
    from warehouse_batch.errors import JobError
    from warehouse_batch.jobs import Job

    with pytest.raises(JobError, match="only read tables of the warehouse"):
        check_reads_only_tables(Job(name="j", query=query, model="gpt-4o-mini"))
    check_reads_only_tables(Job(name="j", query="SELECT id AS custom_id, text AS prompt FROM main.reviews r "
                                                "JOIN other USING (id)", model="gpt-4o-mini"))
