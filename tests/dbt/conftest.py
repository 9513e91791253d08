"""Real dbt-core (dbtRunner) on a temp copy of examples/dbt_reviews, against an in-process emulator.

Each test gets its own copy of the project and its own DuckDB file. Between invocations the DuckDB
file is released (dbt-duckdb keeps it open after invoke: DuckDBConnectionManager.close_all_connections).
"""

from __future__ import annotations

import csv
import gc
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest

pytest.importorskip("dbt.cli.main", reason="dbt-core is not installed (pip install 'warehouse-batch[dbt]')")
pytest.importorskip("dbt.adapters.duckdb", reason="dbt-duckdb is not installed")

from dbt.adapters.duckdb.connections import DuckDBConnectionManager  # noqa: E402
from dbt.cli.main import dbtRunner, dbtRunnerResult  # noqa: E402

from warehouse_batch.dbt.package import packages_yml  # noqa: E402
from warehouse_batch.emulator import Emulator, EmulatorConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "dbt_reviews"


@dataclass
class DbtProject:
    """A copy of the example project, its warehouse file and the emulator it talks to."""

    dir: Path
    db: Path
    emulator: Emulator
    messages: list[str] = field(default_factory=list)

    def dbt(self, *args: str, ok: bool = True) -> dbtRunnerResult:
        """`dbt ARGS` in-process; asserts success unless ok=False. Log lines land in self.messages."""
        self.messages = []

        def keep(event: Any) -> None:
            self.messages.append(event.info.msg)

        argv = [*args, "--project-dir", str(self.dir), "--profiles-dir", str(self.dir)]
        try:
            result = dbtRunner(callbacks=[keep]).invoke(argv)
        finally:
            release()
        if ok:
            assert result.success, f"dbt {' '.join(args)} failed: {result.exception}\n" + "\n".join(self.messages[-30:])
        return result

    def log(self) -> str:
        return "\n".join(self.messages)

    def sql(self, query: str) -> list[tuple]:
        with duckdb.connect(str(self.db)) as con:
            return con.execute(query).fetchall()

    def counters(self) -> dict[str, Any]:
        return self.emulator.counters()

    @property
    def requests(self) -> int:
        return self.counters()["requests_received"]

    def add_model(self, path: str, text: str) -> None:
        target = self.dir / "models" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")

    def seed_rows(self) -> list[dict[str, str]]:
        with open(self.dir / "seeds" / "raw_reviews.csv", newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    def write_seed(self, rows: list[dict[str, str]]) -> None:
        with open(self.dir / "seeds" / "raw_reviews.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def release() -> None:
    """Let go of the DuckDB file dbt-duckdb keeps open after an invocation."""
    DuckDBConnectionManager.close_all_connections()
    gc.collect()


def copy_project(dest: Path) -> Path:
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(
        "target", "dbt_packages", "logs", "*.duckdb*", "package-lock.yml"))
    (dest / "packages.yml").write_text(packages_yml(), encoding="utf-8")  # as `warehouse-batch dbt package-path --yml`
    return dest


@pytest.fixture
def frozen_emulator() -> Iterator[Emulator]:
    """Batches sit in `validating` until the test moves the clock (emu.advance)."""
    with Emulator(EmulatorConfig(validation_delay=60, time_scale=0)) as emu:
        yield emu


@pytest.fixture
def make_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def make(emulator: Emulator, name: str = "proj") -> DbtProject:
        project = DbtProject(copy_project(tmp_path / name), tmp_path / f"{name}.duckdb", emulator)
        monkeypatch.setenv("OPENAI_BASE_URL", emulator.base_url)
        monkeypatch.setenv("DBT_REVIEWS_DB", str(project.db))
        monkeypatch.setenv("DO_NOT_TRACK", "1")
        monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        monkeypatch.delenv("WAREHOUSE_BATCH_SUBMIT", raising=False)
        monkeypatch.setenv("WAREHOUSE_BATCH_POLL_INTERVAL", "0.2")
        project.dbt("deps")
        return project

    yield make
    release()


@pytest.fixture
def project(make_project, frozen_emulator: Emulator) -> DbtProject:
    return make_project(frozen_emulator)


def distinct_prompts(rows: list[dict[str, str]]) -> int:
    return len({r["review_text"].strip() for r in rows if r["review_text"].strip()})
