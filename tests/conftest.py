"""Shared fixtures: a real emulator on 127.0.0.1, a DuckDB warehouse file, and a CLI runner.

Every provider call in these tests goes through the real `openai` SDK over loopback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner, Result

from warehouse_batch.cli import main
from warehouse_batch.emulator import Emulator, EmulatorConfig

API_KEY = "sk-test-emulator-key"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig()) as emu:
        yield emu


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "warehouse.duckdb"


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Never let a developer's real credentials or endpoint leak into a test.
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    # A closed loopback port: a call that is not pointed at an emulator fails fast, offline.
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("WAREHOUSE_BATCH_DB", raising=False)


@dataclass
class Warehouse:
    """A warehouse file plus the emulator it talks to, driven through the real CLI."""

    db: Path
    emulator: Emulator

    def sql(self, query: str, params: list[Any] | None = None) -> list[tuple]:
        with duckdb.connect(str(self.db)) as con:
            return con.execute(query, params or []).fetchall()

    def rows(self, query: str) -> list[dict[str, Any]]:
        with duckdb.connect(str(self.db)) as con:
            cur = con.execute(query)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def cli(self, *args: str, expect: int | None = 0) -> Result:
        """Run `warehouse-batch ARGS --db <db>` in-process; --base-url points at the emulator."""
        argv = list(args)
        command = argv[0]
        if command not in ("emulator", "demo"):
            argv += ["--db", str(self.db)]
        if command in ("run", "collect", "sync", "cancel", "retry"):
            argv += ["--base-url", self.emulator.base_url]
        result = CliRunner().invoke(main, argv, catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, f"exit {result.exit_code}\n{result.output}"
        return result

    def cli_json(self, *args: str, expect: int | None = 0) -> Any:
        return json.loads(self.cli(*args, "--json", expect=expect).stdout)

    def counters(self) -> dict[str, Any]:
        return self.emulator.counters()


@pytest.fixture
def warehouse(db: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    # Belt and braces: a command that forgets --base-url still reaches the emulator, never a real host.
    monkeypatch.setenv("OPENAI_BASE_URL", emulator.base_url)
    return Warehouse(db, emulator)


def write_job(path: Path, header: dict[str, Any], query: str) -> Path:
    lines = [f"-- {k}: {json.dumps(v) if not isinstance(v, str) else v}" for k, v in header.items()]
    path.write_text("\n".join(lines) + "\n" + query + "\n", encoding="utf-8")
    return path
