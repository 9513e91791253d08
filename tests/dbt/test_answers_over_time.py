"""Real dbt: answered rows never go blank on a prompt edit, and the incremental recipe fills every row.

One project for the whole story (dbt tests are slow): first answers, a downstream incremental model
built with `warehouse_batch.llm_batch_completed`, cache hits, a prompt edit, the new answers.
"""

from __future__ import annotations

from tests.dbt.conftest import DbtProject, distinct_prompts

INCREMENTAL = """{{ config(materialized='incremental', unique_key='custom_id') }}
{{ warehouse_batch.llm_batch_completed(ref('review_sentiment')) }}
"""
# The two patterns the recipe replaces, which lose answers (kept here to show they do).
NEW_IDS_ONLY = """{{ config(materialized='incremental', unique_key='custom_id') }}
select * from {{ ref('review_sentiment') }}
{% if is_incremental() %} where custom_id not in (select custom_id from {{ this }}) {% endif %}
"""
COMPLETED_AT_WATERMARK = """{{ config(materialized='incremental', unique_key='custom_id') }}
select * from {{ ref('review_sentiment') }} where status = 'completed'
{% if is_incremental() %} and completed_at > (select max(completed_at) from {{ this }}) {% endif %}
"""


def test_prompt_edit_keeps_answers_and_incremental_recipe_loses_nothing(project: DbtProject) -> None:
    rows = project.seed_rows()
    n, asked = len(rows), distinct_prompts(rows)
    project.add_model("marts/answers_inc.sql", INCREMENTAL)
    project.add_model("marts/answers_new_ids.sql", NEW_IDS_ONLY)
    project.add_model("marts/answers_completed_at.sql", COMPLETED_AT_WATERMARK)
    project.dbt("seed")
    project.dbt("run")  # everything pending: the recipe lets no NULL row through
    assert project.sql("SELECT count(*) FROM answers_inc") == [(0,)]
    assert project.sql("SELECT count(*), count(sentiment) FROM answers_new_ids") == [(n, 0)]

    project.emulator.advance(3600)
    project.dbt("run")
    assert project.sql("SELECT count(*), count(sentiment), count(published_at) FROM answers_inc") == [(n, n, n)]
    # "new custom_ids only" keeps the pending rows' NULLs for good.
    assert project.sql("SELECT count(sentiment) FROM answers_new_ids") == [(0,)]
    first = dict(project.sql("SELECT custom_id, published_at FROM review_sentiment"))

    # New reviews whose text was asked before: answered from the cache, with an old completed_at.
    extra = [dict(r, review_id=str(10_000 + i)) for i, r in enumerate(rows[:5])]
    project.write_seed(rows + extra)
    project.dbt("seed")
    project.dbt("run")
    assert project.requests == asked  # nothing sent: cache hits
    assert project.sql("SELECT count(*) FROM answers_inc WHERE custom_id >= 10000 AND sentiment IS NOT NULL") == [(5,)]
    # A completed_at watermark drops them: their answers are older than what the model already has.
    assert project.sql("SELECT count(*) FROM answers_completed_at WHERE custom_id >= 10000") == [(0,)]
    total = n + 5

    # A one-word prompt edit: every request changes and is re-sent, but no row goes blank.
    model = project.dir / "models" / "llm" / "review_sentiment.sql"
    model.write_text(model.read_text().replace("Classify the sentiment", "Judge the sentiment"))
    project.dbt("run")
    assert project.requests == 2 * asked
    assert project.sql("SELECT status, is_stale, count(*), count(sentiment) FROM review_sentiment GROUP BY ALL") == [
        ("completed", True, total, total)]
    assert project.sql("SELECT count(*) FROM review_sentiment WHERE answer_request_hash = request_hash") == [(0,)]
    answered = project.sql("SELECT sum(answered), sum(positive + neutral + negative) FROM product_sentiment")[0]
    assert answered == (total, total)  # the mart keeps every answer
    assert project.sql("SELECT count(*), count(sentiment) FROM answers_inc") == [(total, total)]
    # The stale rows kept their published_at: nothing is re-sent downstream yet.
    kept = dict(project.sql("SELECT custom_id, published_at FROM review_sentiment WHERE custom_id < 10000"))
    assert kept == first

    project.emulator.advance(3600)
    project.dbt("run")
    assert project.sql("SELECT status, is_stale, count(*) FROM review_sentiment GROUP BY ALL") == [
        ("completed", False, total)]
    assert project.sql("SELECT count(*) FROM review_sentiment WHERE answer_request_hash <> request_hash") == [(0,)]
    # The new answers reached the incremental model through unique_key, each row once.
    assert project.sql("SELECT count(*), count(DISTINCT custom_id) FROM answers_inc") == [(total, total)]
    assert project.sql(
        "SELECT count(*) FROM answers_inc AS i JOIN review_sentiment AS r USING (custom_id) "
        "WHERE i.request_hash = r.request_hash AND i.published_at = r.published_at") == [(total,)]
    # published_at only grows: every new answer is newer than any published before the edit.
    assert project.sql("SELECT min(published_at) FROM review_sentiment")[0][0] > max(kept.values())
    assert set(project.counters()["custom_ids_received"].values()) == {1}
