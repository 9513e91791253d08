"""The llm_batch materialization end to end with real dbt-core on the example project."""

from __future__ import annotations

import os

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
    assert f"{asked} requests sent now" in project.log()
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


def test_reruns_pay_only_for_what_changed(project: DbtProject) -> None:
    rows = project.seed_rows()
    asked = distinct_prompts(rows)
    project.dbt("seed")
    project.dbt("run")
    project.emulator.advance(3600)
    project.dbt("run")
    assert statuses(project) == {"completed": len(rows)}

    project.dbt("run")  # unchanged: everything comes from the cache
    assert project.requests == asked
    assert "0 requests sent now" in project.log()

    rows[0]["review_text"] = "Changed my mind: the product broke after a week and support never answered."
    project.write_seed(rows)
    project.dbt("seed")
    project.dbt("run")
    assert project.requests == asked + 1
    # The changed row keeps its last answer, marked stale, while its new request is in flight.
    assert statuses(project) == {"completed": len(rows)}
    assert project.sql(f"SELECT status, is_stale FROM review_sentiment WHERE custom_id = {rows[0]['review_id']}") == [
        ("completed", True)]

    project.emulator.advance(3600)
    project.dbt("run", "--full-refresh")  # rebuilt from the library's tables: collects, sends nothing
    assert project.requests == asked + 1
    assert statuses(project) == {"completed": len(rows)}
    assert project.sql("SELECT count_if(is_stale) FROM review_sentiment") == [(0,)]

    # A renamed model is a new job over the same requests: answered from the cache at once.
    models = project.dir / "models"
    (models / "llm" / "review_sentiment.sql").rename(models / "llm" / "review_mood.sql")
    (models / "llm" / "review_sentiment.yml").unlink()
    mart = models / "marts" / "product_sentiment.sql"
    mart.write_text(mart.read_text().replace("ref('review_sentiment')", "ref('review_mood')"))
    project.dbt("run")
    assert project.requests == asked + 1
    assert statuses(project, "review_mood") == {"completed": len(rows)}
    assert set(project.counters()["custom_ids_received"].values()) == {1}

    # The status run-operation names every job with its rows and spend.
    project.dbt("run-operation", "llm_batch_status")
    log = project.log()
    assert "main__review_sentiment" in log and "main__review_mood" in log
    assert f"spend {asked + 1} paid request(s), $" in log

    # The API key is in no artifact, log, shard, result file or table.
    key = os.environ["OPENAI_API_KEY"].encode()
    files = [p for root in (project.dir, project.db.parent) for p in root.rglob("*") if p.is_file()]
    assert len(files) > 10 and not [p for p in files if key in p.read_bytes()]


def test_compile_show_ls_and_empty_send_nothing(project: DbtProject) -> None:
    project.dbt("seed")
    project.dbt("run", "--select", "stg_reviews")
    project.dbt("compile")
    project.dbt("show", "--select", "review_sentiment", "--indirect-selection", "empty")
    project.dbt("ls")
    project.dbt("run", "--empty")
    counters = project.counters()
    assert counters["requests_received"] == 0
    assert counters["files_uploaded"] == counters["batches_created"] == 0
    assert not counters["calls"], counters["calls"]  # not even a poll
    # --empty still gives downstream models the real columns, with no rows.
    types = {name: kind for name, kind, *_ in project.sql("DESCRIBE review_sentiment")}
    assert types["sentiment"] == SENTIMENT_TYPE and types["status"] == "VARCHAR"
    assert project.sql("SELECT count(*) FROM review_sentiment") == [(0,)]
    assert project.sql("SELECT count(*) FROM warehouse_batch.jobs") == [(0,)]


MODEL = """{{{{ config(materialized='llm_batch', model='gpt-4o-mini', system={system!r}, max_tokens=20{extra}) }}}}
select review_id as custom_id, review_text as prompt, product from {{{{ ref('stg_reviews') }}}}
"""


def test_threads_share_requests_without_conflicts(project: DbtProject) -> None:
    rows = project.seed_rows()
    asked = distinct_prompts(rows)
    sentiment = (project.dir / "models" / "llm" / "review_sentiment.sql").read_text()
    # Two models asking the same question, and two asking their own.
    project.add_model("llm/review_sentiment_again.sql", sentiment)
    project.add_model("llm/review_topic.sql", MODEL.format(system="Name the topic of this review.", extra=""))
    project.add_model("llm/review_summary.sql", MODEL.format(system="Summarise this review in five words.", extra=""))
    project.dbt("seed")
    project.dbt("run", "--select", "+review_sentiment")  # asks first
    project.dbt("run", "--threads", "4")
    assert project.requests == 3 * asked
    assert set(project.counters()["custom_ids_received"].values()) == {1}
    assert statuses(project, "review_sentiment_again") == {"pending": len(rows)}

    # The copy's answers sit in the first model's batches: its own run collects them.
    project.emulator.advance(3600)
    project.dbt("run", "--select", "review_sentiment_again")
    assert statuses(project, "review_sentiment_again") == {"completed": len(rows)}
    project.dbt("run", "--threads", "4")
    for table in ("review_sentiment", "review_sentiment_again", "review_topic", "review_summary"):
        assert statuses(project, table) == {"completed": len(rows)}, table
    assert project.requests == 3 * asked
    assert project.sql("SELECT count(*) FROM review_sentiment a JOIN review_sentiment_again b USING (custom_id) "
                       "WHERE a.sentiment = b.sentiment AND a.request_hash = b.request_hash") == [(len(rows),)]


def test_submit_off_holds_requests_until_turned_on(project: DbtProject, monkeypatch) -> None:
    asked = distinct_prompts(project.seed_rows())
    project.dbt("seed")
    monkeypatch.setenv("WAREHOUSE_BATCH_SUBMIT", "false")
    project.dbt("run", "--select", "+review_sentiment")
    assert project.requests == 0
    assert f"{asked} held (submit is off)" in project.log()
    assert set(statuses(project)) == {"pending"}

    monkeypatch.setenv("WAREHOUSE_BATCH_SUBMIT", "true")
    project.dbt("run", "--select", "+review_sentiment")
    assert project.requests == asked
    project.emulator.advance(3600)
    project.dbt("run", "--select", "+review_sentiment")
    assert set(statuses(project)) == {"completed"}
    assert project.requests == asked


def test_wait_timeout_blocks_until_answered(make_project) -> None:
    from warehouse_batch.emulator import Emulator, EmulatorConfig

    with Emulator(EmulatorConfig(validation_delay=1, request_time=0.01)) as emu:
        project = make_project(emu)
        project.add_model("llm/review_quick.sql", MODEL.format(
            system="Is this review about a kitchen product? Answer yes or no.", extra=", wait_timeout=60"))
        project.dbt("seed")
        project.dbt("run", "--select", "stg_reviews", "review_quick")
        assert statuses(project, "review_quick") == {"completed": len(project.seed_rows())}


def test_clear_errors_without_plugin_and_over_limits(project: DbtProject) -> None:
    project.dbt("seed")
    profiles = project.dir / "profiles.yml"
    original = profiles.read_text()
    profiles.write_text(original.split("      plugins:")[0])
    result = project.dbt("run", "--select", "stg_reviews", "review_sentiment", ok=False)
    assert not result.success
    assert "needs the warehouse_batch plugin" in project.log()

    profiles.write_text(original)
    project.add_model("llm/review_capped.sql", MODEL.format(system="Translate to French.", extra=", max_requests=3"))
    project.dbt("run", "--select", "review_capped", ok=False)
    assert "over max_requests = 3; nothing was sent" in project.log()
    assert project.requests == 0
