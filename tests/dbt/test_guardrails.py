"""Real dbt: config typos, `cache` and the project's daily budget are refused before anything is sent;
no-cache is a per-invocation var."""

from __future__ import annotations

import pytest

from tests.dbt.conftest import DbtProject, distinct_prompts

TYPO = """{{ config(materialized='llm_batch', model='gpt-4o-mini', system='Translate to French.',
                   max_cost=0.0001, max_token=5) }}
select review_id as custom_id, review_text as prompt from {{ ref('stg_reviews') }}
"""
CACHE_OFF = TYPO.replace("max_cost=0.0001, max_token=5", "cache=false")


def test_typos_cache_and_budget_are_refused_no_cache_is_a_var(project: DbtProject,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    asked = distinct_prompts(project.seed_rows())
    project.dbt("seed")
    project.add_model("llm/review_french.sql", TYPO)
    project.dbt("run", "--select", "stg_reviews", "review_french", ok=False)
    log = project.log()
    assert "unknown llm_batch config key(s) 'max_cost' (did you mean 'max_cost_usd'?), " \
           "'max_token' (did you mean 'max_tokens'?); nothing was sent" in log
    assert "Python exception occurred" not in log
    project.add_model("llm/review_french.sql", CACHE_OFF)
    project.dbt("run", "--select", "review_french", ok=False)
    assert "'cache' is not a model config" in project.log() and "llm_batch_no_cache: true" in project.log()
    (project.dir / "models" / "llm" / "review_french.sql").unlink()

    monkeypatch.setenv("DBT_REVIEWS_DAILY_BUDGET_USD", "0.000001")
    project.dbt("run", "--select", "review_sentiment", ok=False)
    assert "daily budget of $0.000001 (from the dbt plugin setting daily_budget_usd) would be exceeded" in project.log()
    assert project.requests == 0

    monkeypatch.setenv("DBT_REVIEWS_DAILY_BUDGET_USD", "5")
    project.dbt("run", "--select", "review_sentiment")
    assert project.requests == asked
    project.emulator.advance(3600)
    project.dbt("run", "--select", "review_sentiment")
    assert project.sql("SELECT DISTINCT status FROM review_sentiment") == [("completed",)]
    # One fresh invocation sends everything again; the next scheduled run is cached again.
    project.dbt("run", "--select", "review_sentiment", "--vars", "{llm_batch_no_cache: true}")
    assert project.requests == 2 * asked
    project.dbt("run", "--select", "review_sentiment")
    assert project.requests == 2 * asked
    assert project.sql("SELECT DISTINCT status FROM review_sentiment") == [("completed",)]
