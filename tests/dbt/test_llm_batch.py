"""The llm_batch materialization end to end with real dbt-core on the example project."""

from __future__ import annotations

from tests.dbt.conftest import DbtProject, distinct_prompts

SENTIMENT_TYPE = "ENUM('Positive', 'Neutral', 'Negative')"


def statuses(project: DbtProject, table: str = "review_sentiment") -> dict[str, int]:
    return dict(project.sql(f"SELECT status, count(*) FROM {table} GROUP BY 1"))


def test_first_run_pending_then_completed_with_typed_columns(project: DbtProject) -> None:
    rows = project.seed_rows()
    asked = distinct_prompts(rows)
    project.dbt("seed")
    project.dbt("run")
    assert statuses(project) == {"pending": len(rows)}
    assert project.requests == asked
    assert f"{asked} sent now" in project.log()
    # The mart builds on pending rows too: the typed columns are there, NULL for now.
    assert project.sql("SELECT sum(reviews), sum(answered), sum(positive) FROM product_sentiment") == [(len(rows), 0, 0)]

    # Still validating at the provider: another run sends nothing and stays pending.
    project.dbt("run")
    assert statuses(project) == {"pending": len(rows)}
    assert project.requests == asked

    # The generic test warns (default severity) while rows are pending.
    result = project.dbt("test", "--select", "review_sentiment")
    outcome = {r.node.name: str(r.status) for r in result.result.results}
    assert outcome["warehouse_batch_llm_batch_complete_review_sentiment_"] == "warn"

    project.emulator.advance(3600)
    project.dbt("run")
    assert statuses(project) == {"completed": len(rows)}
    assert project.requests == asked
    types = {name: kind for name, kind, *_ in project.sql("DESCRIBE review_sentiment")}
    assert types["sentiment"] == SENTIMENT_TYPE
    assert types["confidence"] == "DOUBLE"
    assert types["custom_id"] == "INTEGER"
    assert project.sql("SELECT count(*) FROM review_sentiment WHERE sentiment IS NULL OR confidence IS NULL") == [(0,)]
    answered, split = project.sql("SELECT sum(answered), sum(positive + neutral + negative) FROM product_sentiment")[0]
    assert answered == split == len(rows)

    result = project.dbt("test")
    assert {str(r.status) for r in result.result.results} == {"pass"}
    # Nothing was submitted twice.
    assert set(project.counters()["custom_ids_received"].values()) == {1}
