"""Real dbt for scheduled use: a busy warehouse is refused in one line (or waited for), the model's
rows are stored once beyond its table, and orphaned tables are cleaned up."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dbt.cli.main import dbtRunner

from tests.dbt.conftest import DbtProject, release

HOLD = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(600)"


def test_busy_warehouse_is_refused_in_one_line(project: DbtProject) -> None:
    project.dbt("seed")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(project.db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        profiles = project.dir / "profiles.yml"
        profiles.write_text(profiles.read_text().replace("connect_attempts: 5", "connect_attempts: 1"))
        seen: list[tuple[str, str]] = []
        argv = ["run", "--select", "stg_reviews", "--project-dir", str(project.dir), "--profiles-dir", str(project.dir)]
        try:
            result = dbtRunner(callbacks=[lambda e: seen.append((e.info.level, e.info.msg))]).invoke(argv)
        finally:
            release()
        assert not result.success
        shown = [msg for level, msg in seen if level in ("info", "warn", "error")]  # what the console prints
        errors = [m for m in shown if "is busy" in m]
        assert errors and f"the warehouse {project.db} is busy: process {holder.pid} holds it" in errors[0]
        assert "busy_timeout" in errors[0]
        assert not [m for m in shown if "Traceback" in m], shown
    finally:
        holder.kill()
        holder.wait()

    # With busy_timeout, dbt waits for the holder to let go and then runs.
    brief = subprocess.Popen([sys.executable, "-c", HOLD.replace("600", "2"), str(project.db)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert brief.stdout is not None and brief.stdout.readline().strip() == "held"
        profiles.write_text(profiles.read_text().replace("poll_interval:", "busy_timeout: 120\n            poll_interval:"))
        project.dbt("run", "--select", "stg_reviews")
    finally:
        brief.kill()
        brief.wait()


@pytest.mark.usefixtures("frozen_emulator")
def test_one_stored_copy_and_cleanup_of_orphans(project: DbtProject) -> None:
    project.dbt("seed")
    project.dbt("run", "--empty")
    project.dbt("run")
    tables = {t for (t,) in project.sql("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'warehouse_batch' "
                                        "AND table_name LIKE 'main__%'")}
    # The rows table is the one copy beyond the model's own table (the library's copy is dropped).
    assert "main__review_sentiment__rows" in tables and "main__review_sentiment__output" not in tables
    models = project.dir / "models" / "llm"
    (models / "review_sentiment.sql").rename(models / "review_mood.sql")
    (models / "review_sentiment.yml").unlink()
    mart = project.dir / "models" / "marts" / "product_sentiment.sql"
    mart.write_text(mart.read_text().replace("ref('review_sentiment')", "ref('review_mood')"))
    project.dbt("run-operation", "llm_batch_cleanup")
    assert "kept the jobs of removed models with batches still in flight: main__review_sentiment" in project.log()
    project.emulator.advance(3600)
    project.dbt("run")  # the new job collects the old job's batches (same requests)
    project.dbt("run-operation", "llm_batch_cleanup")
    assert "dropped" in project.log()
    left = {t for (t,) in project.sql("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'warehouse_batch' "
                                      "AND table_name LIKE 'main__%'")}
    assert not [t for t in left if "__wb_empty" in t]
    assert "main__review_mood__rows" in left and "main__review_sentiment__rows" not in left
    project.dbt("run")  # everything still works: nothing sent again
    assert project.requests == len({r["review_text"].strip() for r in project.seed_rows()})
