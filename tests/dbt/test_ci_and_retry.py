"""Real dbt: a CI build with no key and submit off (several runs), its plan lines, answers deferred
from a production warehouse read-only; retry by the next build, warnings and status by model name."""

from __future__ import annotations

import shutil

import pytest

from tests.dbt.conftest import DbtProject, distinct_prompts

FLAKY = """{{ config(materialized='llm_batch', model='gpt-4o-mini', max_tokens=20, max_attempts=2, tags=['llm']) }}
select * from (values (1, 'flaky [[emulator:error_500]]'), (2, 'bad [[emulator:error_400]]'), (3, 'fine'))
  as t(custom_id, prompt)
"""


def test_ci_mode_needs_no_key_shows_a_plan_and_reads_answers_paid_for_in_prod(
        project: DbtProject, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = project.seed_rows()
    asked = distinct_prompts(rows)
    project.dbt("seed")
    project.dbt("run")  # production: pays once
    project.emulator.advance(3600)
    project.dbt("run")
    prod = project.db.with_name("prod.duckdb")
    shutil.copy(project.db, prod)  # CI gets a read-only look at a copy of production

    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("WAREHOUSE_BATCH_SUBMIT", "false")
    monkeypatch.setenv("DBT_REVIEWS_DB", str(project.db.with_name("ci.duckdb")))
    project.dbt("build")  # a CI database, built again and again: never a key, never a request
    assert f"plan: {len(rows)} rows, {asked} distinct requests: 0 cached, 0 in flight, {asked} new (estimated $" \
        in project.log()
    assert "submit is off: nothing is sent" in project.log()
    for _ in range(2):
        project.dbt("build")
        assert f"{asked} in flight, 0 new" in project.log() and f"{asked} held (submit is off)" in project.log()
    assert project.requests == asked
    monkeypatch.setenv("DBT_REVIEWS_DB", str(project.db.with_name("ci2.duckdb")))
    monkeypatch.setenv("DBT_REVIEWS_DEFER_DB", str(prod))
    project.dbt("build")
    assert f"{asked} cached, 0 in flight, 0 new" in project.log()
    ci = project.db.with_name("ci2.duckdb")
    project.db = ci
    assert project.sql("SELECT status, count(*), count(sentiment) FROM review_sentiment GROUP BY 1") == [
        ("completed", len(rows), len(rows))]
    assert project.requests == asked  # real answers, nothing paid


def test_retry_by_the_next_build_warnings_and_status_by_model(project: DbtProject) -> None:
    project.add_model("llm/flaky.sql", FLAKY)
    project.dbt("run", "--select", "flaky")
    project.emulator.advance(3600)
    project.dbt("run", "--select", "flaky")  # collects: the 500 is resent by this same build
    log = project.log()
    assert "rows not answered: 1 context_length_exceeded" in log and "llm_batch_retry" in log
    assert "Python exception occurred" not in log
    received = project.counters()["custom_ids_received"]
    assert sorted(received.values()) == [1, 1, 2]
    project.emulator.advance(3600)
    project.dbt("run", "--select", "flaky")  # the 500 again: attempts exhausted, not resent
    assert sorted(project.counters()["custom_ids_received"].values()) == [1, 1, 2]
    assert dict(project.sql("SELECT custom_id, status FROM flaky")) == {1: "failed", 2: "failed", 3: "completed"}

    result = project.dbt("test", "--select", "flaky")  # no tests on it: the completeness test on demand
    project.add_model("llm/flaky.yml", "version: 2\nmodels:\n  - name: flaky\n    data_tests:\n"
                                        "      - warehouse_batch.llm_batch_complete\n")
    result = project.dbt("test", "--select", "flaky")
    assert [str(r.status) for r in result.result.results] == ["warn"]
    assert "llm_batch_complete flaky: 2 row(s) not complete: 1 failed (context_length_exceeded), 1 failed (" \
        in project.log()

    project.dbt("run-operation", "llm_batch_status", "--args", "{select: 'tag:llm'}")
    assert "flaky (job main__flaky): 1 completed, 2 failed; in flight $" in project.log()
    project.dbt("run-operation", "llm_batch_retry", "--args", "{select: flaky}")
    assert "llm_batch_retry: flaky: 0 request(s) resent" in project.log()
    project.dbt("run-operation", "llm_batch_status", "--args", "{select: nope}", ok=False)
    assert "no llm_batch model matches 'nope'; llm_batch models in this project: flaky, review_sentiment" \
        in project.log()
    project.dbt("run-operation", "llm_batch_status", "--args", "{job: nope}", ok=False)
    assert "no job named 'nope'" in project.log()

    # wait_timeout: progress while it blocks, a warning when it runs out (the emulator's clock is frozen).
    project.add_model("llm/slow.sql", FLAKY.replace("max_attempts=2", "wait_timeout=1")
                      .replace("'flaky [[emulator:error_500]]'", "'slow one'").replace("'bad [[emulator:error_400]]'",
                                                                                      "'slow two'"))
    project.dbt("run", "--select", "slow")
    log = project.log()
    assert 'llm_batch "' in log and "waiting (" in log and "1 batch(es) running, 0/" in log
    assert "wait_timeout (1.0 s) ran out with 1 batch(es) still running" in log
