"""`warehouse-batch dbt build`: how dbt's arguments are sorted for each step, and the warehouse URI
built from a dbt-postgres profile (no dbt run, no database)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from warehouse_batch.dbt.postgres_build import LLM_BATCH, postgres_uri, split_args
from warehouse_batch.errors import ConfigError
from warehouse_batch.warehouses.postgres import redact


def test_selection_context_and_build_only_arguments_are_told_apart() -> None:
    args = split_args(["-s", "+review_sentiment+", "tag:x", "--exclude=marts", "--target", "postgres",
                       "--full-refresh", "--threads", "4", "--vars", "{a: 1}", "--project-dir=/p"])
    assert args.select == ["+review_sentiment+", "tag:x"]
    assert args.exclude == ["marts"]
    assert args.context == ["--target", "postgres", "--vars", "{a: 1}", "--project-dir", "/p"]
    assert args.build == ["--full-refresh", "--threads", "4"]
    # Upstream: the user's selection minus everything downstream of an llm_batch model.
    assert args.selection(exclude=[f"{LLM_BATCH}+"]) == [
        "--select", "+review_sentiment+", "tag:x", "--exclude", "marts", f"{LLM_BATCH}+"]
    # The llm_batch models and their downstream: each user selector intersected with llm_batch+.
    assert args.selection(f"{LLM_BATCH}+", exclude=["bad_model+"]) == [
        "--select", f"+review_sentiment+,{LLM_BATCH}+", f"tag:x,{LLM_BATCH}+", "--exclude", "marts", "bad_model+"]


def test_no_selection_means_the_whole_project() -> None:
    args = split_args(["--target", "postgres"])
    assert args.selection() == []
    assert args.selection(LLM_BATCH) == ["--select", LLM_BATCH]


@pytest.mark.parametrize("flag", ["--empty", "--selector", "--inline"])
def test_unsupported_dbt_options_are_refused_in_one_line(flag: str) -> None:
    with pytest.raises(ConfigError, match=f"does not take {flag}"):
        split_args(["-s", "x", flag])


def test_the_uri_comes_from_the_profile_and_is_shown_without_its_password() -> None:
    creds = SimpleNamespace(type="postgres", user="ana", password="p@ss/w:rd", host="db.internal", port=5433,
                            database="analytics", sslmode="require")
    uri = postgres_uri(creds)
    assert uri == "postgresql://ana:p%40ss%2Fw%3Ard@db.internal:5433/analytics?sslmode=require"
    assert "p%40ss" not in redact(uri) and redact(uri).startswith("postgresql://ana:***@db.internal:5433/")
    with pytest.raises(ConfigError, match="dbt-postgres targets; this target's adapter is 'duckdb'"):
        postgres_uri(SimpleNamespace(type="duckdb"))
