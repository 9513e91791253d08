"""Migrations: released ones never change, and a warehouse written by the first release migrates forward.

`tests/fixtures/released_0_1_0/` is a DuckDB EXPORT of a warehouse that warehouse_batch 0.1.0 (the
first landed schema, migrations 0001–0007) wrote by running a structured job to completion.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import pytest

from tests.conftest import Warehouse, write_job
from warehouse_batch.sqlfiles import migration_files

RELEASED = Path(__file__).parent / "fixtures" / "released_0_1_0"
#: sha256 of every migration a release shipped: fixes go in a new, higher-numbered file.
FROZEN = {
    "0001_metadata_tables.sql": "a2df37f3b112bff0a5ba8ce9b2060b36e57b12320e894ef2f2fa7318706ffa8c",
    "0003_cost.sql": "20ffb717384e3929bc21c26255bcc922b6f41c3ed7b516a417b0b294729880ef",
    "0004_result_vectors.sql": "15cba715f0b6f25491f47d0e587176717e0284721dbd479e43d104b44c4c4938",
    "0005_token_budget.sql": "8f6349cee18388fb89e6ae7a51a8ee43918236c1c7a19c6478642d63da39a210",
    "0006_job_counts.sql": "7f79484c91ce083930e0eef8483077e039bf5062a4cc588ce7a7f7be2bcf4946",
    "0007_publish_fingerprint.sql": "009b3df7145164147fe27ee312f285c5ec028b346f29fe13781fbd7af164b539",
}


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_released_migrations_never_change(name: str) -> None:
    text = {n: t for _, n, t in migration_files()}[name]
    assert hashlib.sha256(text.encode()).hexdigest() == FROZEN[name], (
        f"{name} shipped in a release and must not change; put the fix in a new migration"
    )


def test_migration_numbers_only_grow() -> None:
    versions = [v for v, _, _ in migration_files()]
    assert versions == sorted(set(versions))


def _released_warehouse(db: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    shutil.copytree(RELEASED, export)
    with duckdb.connect(str(db)) as con:
        con.execute(f"IMPORT DATABASE '{export}'")
        assert con.execute("SELECT max(version) FROM warehouse_batch.migrations").fetchone() == (7,)


def test_a_warehouse_of_the_first_release_migrates_forward(warehouse: Warehouse, tmp_path: Path) -> None:
    _released_warehouse(warehouse.db, tmp_path)
    # Read-only commands never migrate: they say how to upgrade.
    result = warehouse.cli("status", expect=2)
    assert "older warehouse_batch" in result.output and "sync" in result.output
    warehouse.cli("sync")  # a writer upgrades the metadata in place
    versions = [v for (v,) in warehouse.sql("SELECT version FROM warehouse_batch.migrations ORDER BY 1")]
    assert versions == [v for v, _, _ in migration_files()]
    # What the old release recorded is intact and still drives the tool: the job, its answers, its table.
    assert warehouse.sql("SELECT status, count(*) FROM review_sentiment GROUP BY ALL") == [("completed", 10)]
    assert warehouse.sql("SELECT table_created FROM warehouse_batch.jobs") == [(True,)]
    report = warehouse.cli_json("status")
    assert report[0]["statuses"] == {"completed": 10} and report[0]["error"] is None
    # Re-running the same job on the migrated warehouse pays for nothing: every answer is cached.
    job = write_job(tmp_path / "job.sql", {
        "name": "review_sentiment", "model": "gpt-4o-mini", "system": "Classify the sentiment.",
        "output_schema": "sentiment VARCHAR, confidence DOUBLE",
    }, "SELECT review_id AS custom_id, review_text AS prompt FROM reviews")
    warehouse.cli("run", str(job), "--wait", "--poll-interval", "0.05")
    assert warehouse.counters()["batches_created"] == 0
    rows = warehouse.rows("SELECT status, sentiment FROM review_sentiment")
    assert len(rows) == 10 and {r["status"] for r in rows} == {"completed"} and all(r["sentiment"] for r in rows)
