"""dbt-postgres: `warehouse-batch dbt build` with real dbt-core + dbt-postgres (dbtRunner), the test
PostgreSQL (tests/pg.py) and the emulator, on a temp copy of examples/dbt_reviews (its `postgres` target)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

pytest.importorskip("dbt.adapters.postgres", reason="dbt-postgres is not installed (pip install -e '.[dev]')")

from warehouse_batch.cli import main  # noqa: E402
from warehouse_batch.emulator import Emulator  # noqa: E402
from tests.dbt.conftest import DbtProject, copy_project, distinct_prompts  # noqa: E402

pytestmark = pytest.mark.slow


class PgProject:
    """A copy of the example project on its `postgres` target: a fresh database of the test cluster."""

    def __init__(self, dir: Path, cluster: Any, uri: str, emulator: Emulator):
        self.dir, self.cluster, self.uri, self.emulator = dir, cluster, uri, emulator

    def wb(self, *args: str, options: tuple[str, ...] = (), ok: bool = True) -> Result:
        """`warehouse-batch dbt <command> [options] <dbt args> --target postgres --project-dir … --profiles-dir …`."""
        command, *dbt_args = args
        argv = ["dbt", command, *options, *dbt_args, "--target", "postgres",
                "--project-dir", str(self.dir), "--profiles-dir", str(self.dir)]
        result = CliRunner().invoke(main, argv, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, f"warehouse-batch {' '.join(argv)}: exit {result.exit_code}\n{result.output[-4000:]}"
        return result

    def dbt(self, *args: str) -> Any:
        """Plain dbt (no wrapper); its log lines land in self.messages."""
        from dbt.cli.main import dbtRunner

        self.messages: list[str] = []
        return dbtRunner(callbacks=[lambda event: self.messages.append(event.info.msg)]).invoke(
            [*args, "--target", "postgres", "--project-dir", str(self.dir), "--profiles-dir", str(self.dir)])

    def sql(self, query: str) -> list[tuple]:
        return self.cluster.execute(query, self.uri)

    def statuses(self) -> dict[str, int]:
        return dict(self.sql("SELECT status, count(*)::int FROM public.review_sentiment GROUP BY 1"))

    @property
    def requests(self) -> int:
        return self.emulator.counters()["requests_received"]

    # The seed file of the project copy, as DbtProject reads it (both only use self.dir).
    seed_rows = DbtProject.seed_rows


@pytest.fixture
def pg_project(tmp_path: Path, pg_cluster: Any, frozen_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> PgProject:
    uri = pg_cluster.new_database()
    project = PgProject(copy_project(tmp_path / "proj"), pg_cluster, uri, frozen_emulator)
    monkeypatch.chdir(tmp_path)
    for name, value in {"DBT_REVIEWS_PG_HOST": "127.0.0.1", "DBT_REVIEWS_PG_PORT": str(pg_cluster.port),
                        "DBT_REVIEWS_PG_USER": "postgres", "DBT_REVIEWS_PG_PASSWORD": "not-a-real-secret-7f3a",
                        "DBT_REVIEWS_PG_DBNAME": uri.rsplit("/", 1)[1], "OPENAI_BASE_URL": frozen_emulator.base_url,
                        "DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WAREHOUSE_BATCH_SUBMIT", raising=False)
    assert project.dbt("deps").success
    return project


def test_build_publishes_a_typed_table_in_postgres_and_a_rerun_sends_nothing(pg_project: PgProject) -> None:
    p = pg_project
    rows = p.seed_rows()
    asked = distinct_prompts(rows)

    first = p.wb("build")
    # The seed and staging view were built by dbt, the model's requests sent, its table published in Postgres.
    assert p.requests == asked
    assert p.statuses() == {"pending": len(rows)}
    assert f"{asked} requests sent now" in first.output
    assert f"{asked} new (estimated $" in first.output
    # The mart (downstream) was built by dbt-postgres on the pending rows.
    assert p.sql("SELECT sum(reviews)::int, sum(answered)::int FROM public.product_sentiment") == [(len(rows), 0)]
    assert "not-a-real-secret-7f3a" not in first.output  # the profile's password is never printed

    p.emulator.advance(3600)
    second = p.wb("build")
    assert p.statuses() == {"completed": len(rows)}
    assert p.requests == asked
    assert f"{asked} answers collected now" in second.output
    types = dict(p.sql("SELECT column_name, data_type FROM information_schema.columns "
                       "WHERE table_schema = 'public' AND table_name = 'review_sentiment'"))
    assert types["sentiment"] == "text"
    assert types["confidence"] == "double precision"
    assert types["custom_id"] == "integer"
    assert types["is_stale"] == "boolean"
    assert p.sql("SELECT count(*) FROM public.review_sentiment WHERE sentiment NOT IN ('Positive', 'Neutral', 'Negative') "
                 "OR confidence IS NULL") == [(0,)]
    answered, split = p.sql("SELECT sum(answered)::int, sum(positive + neutral + negative)::int FROM public.product_sentiment")[0]
    # Docs: the yml's description, else the generated column's meaning, as Postgres column comments.
    comments = dict(p.sql("SELECT attname, col_description(attrelid, attnum) FROM pg_attribute "
                          "WHERE attrelid = 'public.review_sentiment'::regclass AND attnum > 0"))
    assert comments["sentiment"] == "Positive, Neutral or Negative (ENUM)."
    assert comments["is_stale"].startswith("True while the row shows its last answer")
    assert answered == split == len(rows)

    third = p.wb("build")  # nothing changed: nothing is sent, every answer stays
    assert p.requests == asked
    assert "0 requests sent now" in third.output
    assert p.statuses() == {"completed": len(rows)}
    assert set(p.emulator.counters()["custom_ids_received"].values()) == {1}

    # A prompt edit: every row keeps its answer, stale, while the new requests are in flight.
    sql = p.dir / "models" / "llm" / "review_sentiment.sql"
    sql.write_text(sql.read_text().replace("say how confident you are", "say how sure you are"))
    p.wb("build")
    assert p.requests == 2 * asked
    assert p.sql("SELECT status, is_stale, count(*)::int FROM public.review_sentiment GROUP BY 1, 2") == [
        ("completed", True, len(rows))]
    assert p.sql("SELECT sum(answered)::int FROM public.product_sentiment") == [(len(rows),)]

    # The metadata views answer llm_batch_status on Postgres; by model it names the dbt-postgres way.
    assert p.dbt("run-operation", "llm_batch_status").success
    assert re.search(rf"^public__review_sentiment +{len(rows)} +{len(rows)} ", "\n".join(p.messages), re.MULTILINE)
    assert not p.dbt("run-operation", "llm_batch_retry", "--args", "{select: review_sentiment}").success
    assert "warehouse-batch dbt sync --retry -s <model>" in "\n".join(p.messages)


def test_plain_dbt_build_without_the_wrapper_fails_in_one_line(pg_project: PgProject) -> None:
    result = pg_project.dbt("build")
    assert not result.success
    errors = [r for r in result.result.results if str(r.status) == "error"]
    assert [r.node.name for r in errors] == ["review_sentiment"]
    message = errors[0].message
    assert "warehouse-batch dbt build" in message and "does not exist yet" in message
    assert pg_project.requests == 0


def test_no_submit_sends_nothing_and_sync_collects_what_finished(pg_project: PgProject,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    p = pg_project
    rows = p.seed_rows()
    asked = distinct_prompts(rows)

    monkeypatch.delenv("OPENAI_API_KEY")  # CI: no key, no request leaves, the plan says what it would cost
    held = p.wb("build", options=("--no-submit",))
    assert p.requests == 0
    assert "submit is off: nothing is sent" in held.output
    assert p.statuses() == {"pending": len(rows)}
    p.wb("build", options=("--no-submit",))  # and again: still no key needed
    assert "held (submit is off)" in p.wb("sync").output  # cron without --submit: nothing new goes out
    assert p.requests == 0

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-emulator-key")
    p.wb("sync", options=("--submit",))  # the held shards go out
    assert p.requests == asked
    p.emulator.advance(3600)
    synced = p.wb("sync")
    assert p.statuses() == {"completed": len(rows)}
    assert f"{asked} answers collected now" in synced.output
    assert p.requests == asked


def test_a_failing_model_fails_the_command_and_skips_its_downstream(pg_project: PgProject) -> None:
    p = pg_project
    sql = p.dir / "models" / "llm" / "review_sentiment.sql"
    sql.write_text(sql.read_text().replace("max_cost_usd=1.00,", "max_cost_usd=1.00, max_cost=2,"))
    result = p.wb("build", ok=False)
    assert result.exit_code != 0
    assert "unknown llm_batch config key(s) 'max_cost' (did you mean 'max_cost_usd'?)" in result.output
    assert p.requests == 0
    assert p.sql("SELECT to_regclass('public.product_sentiment') IS NULL") == [(True,)]


def test_an_llm_batch_model_reading_another_runs_after_it_and_a_selection_passes_through(pg_project: PgProject) -> None:
    p = pg_project
    # review_sentiment (llm_batch) → blurb_input (a view) → product_blurb (llm_batch)
    (p.dir / "models" / "marts" / "blurb_input.sql").write_text(
        "{{ config(materialized='view') }}\n"
        "select custom_id, 'One line about ' || product as prompt from {{ ref('review_sentiment') }}\n",
        encoding="utf-8")
    (p.dir / "models" / "llm" / "product_blurb.sql").write_text(
        "{{ config(materialized='llm_batch', model='gpt-4o-mini', max_tokens=20, wait_timeout=1) }}\n"
        "select custom_id, prompt from {{ ref('blurb_input') }}\n", encoding="utf-8")
    rows = p.seed_rows()
    products = len({r["product"].strip().lower() for r in rows if r["review_text"].strip()})
    asked = distinct_prompts(rows)

    first = p.wb("build")
    # The second model ran after the first was published and the view between them was built.
    assert "building what the remaining llm_batch model(s) read" in first.output
    assert p.requests == asked + products
    assert p.sql("SELECT count(*)::int FROM public.product_blurb") == [(len(rows),)]
    # It blocked up to its wait_timeout (the warehouse let go meanwhile) and says it ran out.
    assert "wait_timeout (1.0 s) ran out with 1 batch(es) still running" in first.output

    only = p.wb("build", "-s", "product_blurb")  # one llm_batch model selected: nothing upstream is built
    assert "product_blurb" in only.output and "review_sentiment: " not in only.output
    assert "Compiled node" not in only.output
    assert p.requests == asked + products
