"""The example project builds first time, every time: five fresh copies, `dbt deps && dbt build`,
referencing the dbt package the way docs/dbt.md says (`warehouse-batch dbt package-path`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.dbt.conftest import EXAMPLE, DbtProject
from warehouse_batch.cli import main


def test_fresh_copies_of_the_example_build_five_times_of_five(tmp_path: Path, frozen_emulator,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = CliRunner().invoke(main, ["dbt", "package-path"]).output.strip()
    assert (Path(path) / "dbt_project.yml").is_file() and (Path(path) / "macros" / "llm_batch.sql").is_file()
    monkeypatch.setenv("WAREHOUSE_BATCH_DBT_PACKAGE", path)
    monkeypatch.setenv("OPENAI_BASE_URL", frozen_emulator.base_url)
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    monkeypatch.setenv("WAREHOUSE_BATCH_SUBMIT", "false")  # no spend needed to prove the build order
    rows = None
    for attempt in range(5):
        copy = tmp_path / f"copy{attempt}"
        shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("target", "dbt_packages", "logs", "*.duckdb*",
                                                                     "package-lock.yml"))
        project = DbtProject(copy, tmp_path / f"copy{attempt}.duckdb", frozen_emulator)
        monkeypatch.setenv("DBT_REVIEWS_DB", str(project.db))
        project.dbt("deps")
        result = project.dbt("build")  # threads: 4, as the example's profile says
        statuses = {str(r.status) for r in result.result.results}
        assert statuses <= {"success", "pass", "warn"}, statuses
        rows = rows or len(project.seed_rows())
        assert project.sql("SELECT count(*) FROM review_sentiment") == [(rows,)]
    assert frozen_emulator.counters()["requests_received"] == 0
