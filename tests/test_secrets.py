"""The API key never lands in a table, a file, a log line or an error message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Warehouse, write_job

CANARY = "sk-canary-7f3a9c1e-DO-NOT-LEAK"


def _everything_written(warehouse: Warehouse, tmp_path: Path) -> str:
    """Every table of the warehouse (exported as CSV) and every file under tmp_path, as one text."""
    export = tmp_path / "export"
    warehouse.sql(f"EXPORT DATABASE '{export}' (FORMAT csv)")
    texts = []
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix != ".duckdb":
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    texts.append(warehouse.db.read_bytes().decode("latin-1"))  # the raw database file too
    return "\n".join(texts)


def test_api_key_appears_nowhere(warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    warehouse.sql("CREATE TABLE t AS SELECT i AS id, 'hello ' || i AS txt FROM range(20) t(i)")
    job = write_job(tmp_path / "secret.sql", {"name": "secret", "model": "gpt-4o-mini", "max_requests_per_shard": 7},
                    "SELECT id AS custom_id, txt AS prompt FROM t")
    outputs = [
        warehouse.cli("run", str(job), "--wait", "--poll-interval", "0.05").output,
        warehouse.cli("status").output,
        warehouse.cli_json("status", "secret").__repr__(),
    ]
    # Errors too: a provider failure, and a rejected key.
    warehouse.emulator.inject_fault(op="retrieve_batch", status=500, times=20)
    warehouse.emulator.configure(validation_delay=10, time_scale=0)
    warehouse.sql("INSERT INTO t VALUES (100, 'one more')")
    outputs.append(warehouse.cli("run", str(job), expect=None).output)
    outputs.append(warehouse.cli("collect", "secret", expect=4).output)
    warehouse.emulator.engine.faults.clear()
    warehouse.emulator.inject_fault(op="any", status=401, times=5)
    outputs.append(warehouse.cli("collect", "secret", expect=4).output)

    env = {**os.environ, "OPENAI_API_KEY": CANARY}
    process = subprocess.run([sys.executable, "-m", "warehouse_batch.cli", "sync", "--db", str(warehouse.db),
                              "--base-url", warehouse.emulator.base_url], env=env, capture_output=True, text=True)
    outputs += [process.stdout, process.stderr]

    assert "401" in outputs[-3] or "API key" in outputs[-3]
    for text in outputs:
        assert CANARY not in text
    assert CANARY not in _everything_written(warehouse, tmp_path)
    # The key did reach the provider, as a header, which is where it belongs.
    assert warehouse.counters()["batches_created"] >= 3
