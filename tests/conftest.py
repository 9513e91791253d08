"""Shared fixtures: a real emulator on 127.0.0.1, a warehouse (a DuckDB file, or a database of a
throwaway PostgreSQL: see `warehouse_kind`), and a CLI runner.

Every provider call in these tests goes through the real `openai` SDK over loopback.

A test runs on both warehouses when marked `@pytest.mark.both_warehouses` (or its module, with
`pytestmark`; `duckdb_only` exempts one test; a test may also parametrize `warehouse_kind` itself,
indirect, to run only some cases on Postgres). Its checks keep their DuckDB SQL: on PostgreSQL,
`Warehouse.sql`/`rows`/`connect` run it on an in-memory DuckDB copy of the Postgres tables, and
the tables a statement writes are written back to Postgres.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
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
def warehouse_kind(request: pytest.FixtureRequest) -> str:
    """Which warehouse the test runs on: DuckDB, or both for tests marked `both_warehouses`."""
    return getattr(request, "param", "duckdb")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if (metafunc.definition.get_closest_marker("both_warehouses") and "warehouse_kind" in metafunc.fixturenames
            and not metafunc.definition.get_closest_marker("duckdb_only")
            and not any("warehouse_kind" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize"))):
        metafunc.parametrize("warehouse_kind", ["duckdb", "postgres"], indirect=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    from tests.pg import Cluster

    cluster = Cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def db(tmp_path: Path, warehouse_kind: str, request: pytest.FixtureRequest,
       monkeypatch: pytest.MonkeyPatch) -> Path | str:
    if warehouse_kind == "postgres":
        uri = request.getfixturevalue("pg_cluster").new_database()
        monkeypatch.chdir(tmp_path)  # the default work dir (./.warehouse_batch/...) lands in the test's folder
        return uri
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
    """A warehouse (DuckDB file or PostgreSQL URI) plus the emulator it talks to, driven through the real CLI."""

    db: Path | str
    emulator: Emulator
    kind: str = "duckdb"
    written: set[str] = field(default_factory=set)

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB connection to the warehouse's tables. On PostgreSQL: an in-memory copy, and the
        tables written through it go back to Postgres when the block ends."""
        if self.kind == "duckdb":
            with duckdb.connect(str(self.db)) as con:
                yield con
            return
        from tests import pg_copy

        con = pg_copy.copy_of(str(self.db))
        try:
            yield pg_copy.Tracking(con, self.written)
            pg_copy.write_back(con, str(self.db), self.written)
        finally:
            self.written.clear()
            con.close()

    def sql(self, query: str, params: list[Any] | None = None) -> list[tuple]:
        with self.connect() as con:
            return con.execute(query, params or []).fetchall()

    def rows(self, query: str) -> list[dict[str, Any]]:
        with self.connect() as con:
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
def warehouse(db: Path | str, emulator: Emulator, monkeypatch: pytest.MonkeyPatch, warehouse_kind: str) -> Warehouse:
    # Belt and braces: a command that forgets --base-url still reaches the emulator, never a real host.
    monkeypatch.setenv("OPENAI_BASE_URL", emulator.base_url)
    return Warehouse(db, emulator, warehouse_kind)


def write_job(path: Path, header: dict[str, Any], query: str) -> Path:
    lines = [f"-- {k}: {json.dumps(v) if not isinstance(v, str) else v}" for k, v in header.items()]
    path.write_text("\n".join(lines) + "\n" + query + "\n", encoding="utf-8")
    return path
