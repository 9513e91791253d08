"""The command line: help with examples on every command, JSON reports, documented exit codes."""

from __future__ import annotations


import pytest
from click.testing import CliRunner

from tests.conftest import Warehouse
from warehouse_batch.cli import main

COMMANDS = ["run", "plan", "status", "collect", "sync", "retry", "cancel", "emulator", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output


def test_top_level_help_documents_exit_codes() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for code in ("0 ok", "2 usage", "3 invalid", "4 provider", "5 finished"):
        assert code in result.output
    assert all(command in result.output for command in COMMANDS)


def test_plan_json_is_a_machine_readable_report(warehouse: Warehouse) -> None:
    warehouse.sql("CREATE TABLE t AS SELECT i AS id, 'q' || (i % 3) AS txt FROM range(9) t(i)")
    report = warehouse.cli_json("plan", "--name", "p", "--model", "gpt-4o-mini", "--query",
                                "SELECT id AS custom_id, txt AS prompt FROM t")
    counts = report[0]["counts"]
    assert report[0]["dry_run"] is True
    assert (counts["rows"], counts["requests"], counts["to_submit"], counts["shards"]) == (9, 3, 3, 1)
    assert counts["est_cost_usd"] > 0
    assert warehouse.counters()["files_uploaded"] == 0
    # A dry run writes nothing: not even the job.
    assert warehouse.sql("SELECT count(*) FROM warehouse_batch.jobs") == [(0,)]


def test_status_json_shows_progress_of_live_batches(warehouse: Warehouse) -> None:
    warehouse.emulator.configure(request_time=1, time_scale=0)
    warehouse.cli("run", "--name", "slow", "--model", "gpt-4o-mini", "--max-requests-per-shard", "5", "--query",
                  "SELECT i AS custom_id, 'q' || i AS prompt FROM range(10) t(i)")
    warehouse.emulator.advance(3)
    warehouse.cli("collect", "slow")
    status = warehouse.cli_json("status", "slow")[0]
    assert status["progress"]["live_batches"] == 2
    assert status["progress"]["total"] == 10 and 0 < status["progress"]["done"] < 10
    assert status["statuses"] == {"pending": 10}


def test_usage_errors_exit_2(warehouse: Warehouse) -> None:
    result = CliRunner().invoke(main, ["run", "--db", str(warehouse.db)])
    assert result.exit_code == 2 and "JOB_FILE" in result.output
    result = CliRunner().invoke(main, ["run", "--param", "novalue", "--name", "x", "--query", "SELECT 1"])
    assert result.exit_code == 2 and "KEY=VALUE" in result.output


def test_emulator_command_serves_the_api_with_its_flags(tmp_path) -> None:
    """`warehouse-batch emulator` in its own process: the SDK talks to it, rates from flags apply."""
    import signal
    import subprocess
    import sys

    from openai import OpenAI

    process = subprocess.Popen([sys.executable, "-m", "warehouse_batch.cli", "emulator", "--port", "0",
                                "--refusal-rate", "1.0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()  # printed once the socket is bound: it accepts connections
        base_url = line.split("base URL ", 1)[1].strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        client = OpenAI(api_key="x", base_url=base_url)
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.refusal and answer.choices[0].message.content is None
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
