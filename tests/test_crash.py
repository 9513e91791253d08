"""Crash safety: the CLI killed with SIGKILL anywhere, then re-run, pays once and loses nothing.

Each test runs the real CLI as a subprocess against an in-process emulator, kills it (at a named
failpoint, or at a random moment), re-runs the same command, and checks the emulator's counters:
exactly one batch per shard, every request received exactly once, every row completed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import API_KEY, Warehouse, write_job
from warehouse_batch.failpoints import ENV, POINTS

#: Step boundaries also run against PostgreSQL: a file uploaded (intent recorded in Postgres, side
#: effect done) and answers half loaded (a Postgres push interrupted). Each costs a few CLI processes.
PG_POINTS = ("after_upload", "mid_load")
ROWS = 60
SHARD = 25  # 60 rows → 3 shards


def _cli(warehouse: Warehouse, *args: str, failpoint: str | None = None, base_url: str | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env["OPENAI_API_KEY"] = API_KEY
    if failpoint:
        env[ENV] = failpoint
    argv = [sys.executable, "-m", "warehouse_batch.cli", *args, "--db", str(warehouse.db),
            "--base-url", base_url or warehouse.emulator.base_url]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


def _job(warehouse: Warehouse, tmp_path: Path) -> Path:
    warehouse.sql(f"CREATE TABLE questions AS SELECT i AS id, 'question ' || i AS text FROM range({ROWS}) t(i)")
    return write_job(tmp_path / "crashy.sql", {"name": "crashy", "model": "gpt-4o-mini", "max_requests_per_shard": SHARD},
                     "SELECT id AS custom_id, text AS prompt FROM questions")


def _assert_paid_once_and_complete(warehouse: Warehouse) -> None:
    counters = warehouse.counters()
    shards = warehouse.sql("SELECT count(*) FROM warehouse_batch.batches")[0][0]
    assert shards == 3
    assert counters["batches_created"] == shards, counters
    assert counters["requests_received"] == ROWS
    assert set(counters["custom_ids_received"].values()) == {1}
    assert warehouse.sql("SELECT status, count(*) FROM crashy GROUP BY ALL") == [("completed", ROWS)]
    assert warehouse.sql("SELECT count(DISTINCT batch_id) FROM crashy") == [(3,)]


def _assert_no_unrecorded_files(warehouse: Warehouse) -> None:
    """The shard directory holds the files of recorded shards not yet collected and nothing else:
    what a killed run wrote but never recorded is removed by the next one (at 10M rows, 8.6 GB), and
    a collected shard's file goes once its batch is loaded."""
    paths = {Path(p): state for (p, state) in warehouse.sql("SELECT path, state FROM warehouse_batch.batches")}
    directory = next(iter(paths)).parent
    assert set(directory.iterdir()) == {p for p, state in paths.items() if state != "collected"}


@pytest.mark.parametrize(("warehouse_kind", "point"),
                         [("duckdb", p) for p in POINTS] + [("postgres", p) for p in PG_POINTS if p in POINTS],
                         indirect=["warehouse_kind"])
def test_killed_at_a_step_boundary_then_rerun(warehouse: Warehouse, tmp_path: Path, point: str) -> None:
    job = _job(warehouse, tmp_path)
    crashed = _cli(warehouse, "run", str(job), "--wait", "--poll-interval", "0.05", failpoint=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    if point in ("after_upload",):
        assert warehouse.counters()["files_uploaded"] >= 1
    if point in ("after_create",):
        assert warehouse.counters()["batches_created"] >= 1  # creates run in parallel: up to 3 exist

    rerun = _cli(warehouse, "run", str(job), "--wait", "--poll-interval", "0.05")
    assert rerun.returncode == 0, rerun.stderr
    _assert_paid_once_and_complete(warehouse)
    assert warehouse.counters()["files_uploaded"] == 3  # an upload whose id was lost is found again, not repeated
    _assert_no_unrecorded_files(warehouse)


def test_killed_at_random_moments_until_done(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.emulator.configure(request_time=0.02)  # a few seconds of real work per run
    job = _job(warehouse, tmp_path)
    rng = random.Random(20261126)
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env["OPENAI_API_KEY"] = API_KEY
    argv = [sys.executable, "-m", "warehouse_batch.cli", "run", str(job), "--wait", "--poll-interval", "0.05",
            "--db", str(warehouse.db), "--base-url", warehouse.emulator.base_url]
    kills = 0
    for _ in range(12):
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            process.wait(timeout=rng.uniform(0.3, 2.0))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            continue
        if process.returncode == 0:
            break
    else:  # never finished under fire: a last run in peace must finish it
        assert _cli(warehouse, "run", str(job), "--wait", "--poll-interval", "0.05").returncode == 0
    assert kills >= 1
    _assert_paid_once_and_complete(warehouse)
    _assert_no_unrecorded_files(warehouse)


def test_emulator_killed_and_restarted_with_its_state(warehouse: Warehouse, tmp_path: Path) -> None:
    """The provider side crashes: a restarted emulator (same state dir, same port) serves the batches."""
    job = _job(warehouse, tmp_path)
    state = tmp_path / "emulator-state"
    port = [0]  # the first start picks a free port; the restart takes the same one

    def start() -> subprocess.Popen:
        argv = [sys.executable, "-m", "warehouse_batch.cli", "emulator", "--port", str(port[0]),
                "--state-dir", str(state), "--validation-delay", "2"]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = process.stdout.readline()
        assert "base URL" in line, line
        port[0] = int(line.rsplit(":", 1)[1].split("/")[0])  # printed once the socket is bound
        return process

    first = start()
    base_url = f"http://127.0.0.1:{port[0]}/v1"
    try:
        assert _cli(warehouse, "run", str(job), base_url=base_url).returncode == 0
        assert warehouse.sql("SELECT DISTINCT status FROM crashy") == [("pending",)]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert _cli(warehouse, "collect", "crashy", base_url=base_url).returncode == 4  # provider down: exit 4, retry later
    second = start()
    try:
        done = _cli(warehouse, "collect", "crashy", "--wait", "--poll-interval", "0.2", base_url=base_url)
        assert done.returncode == 0, done.stderr
        from openai import OpenAI

        listed = list(OpenAI(api_key=API_KEY, base_url=base_url).batches.list())
        assert len(listed) == 3
    finally:
        second.send_signal(signal.SIGKILL)
        second.wait()
    assert warehouse.sql("SELECT status, count(*) FROM crashy GROUP BY ALL") == [("completed", ROWS)]
