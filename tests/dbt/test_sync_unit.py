"""The plugin's settings and the model → job mapping, without running dbt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from warehouse_batch.dbt.plugin import Plugin
from warehouse_batch.dbt.sync import OUTPUT_SUFFIX, Settings, job_name_for, parse_request
from warehouse_batch.errors import ConfigError, JobError


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, Settings()),
        ({"submit": "false", "poll_interval": "2.5", "concurrency": "8"}, Settings(submit=False, poll_interval=2.5, concurrency=8)),
        ({"submit": "TRUE", "base_url": "", "http_timeout": "30"}, Settings(submit=True, http_timeout=30.0)),
        ({"submit": "", "base_url": "http://127.0.0.1:8000/v1"}, Settings(submit=False, base_url="http://127.0.0.1:8000/v1")),
        ({"submit": False, "work_dir": "/tmp/wb"}, Settings(submit=False, work_dir="/tmp/wb")),
    ],
)
def test_plugin_settings_are_coerced_from_strings(config: dict, expected: Settings) -> None:
    assert Settings.from_config(config) == expected


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"submitt": "true"}, "unknown warehouse_batch plugin setting(s): submitt. Valid settings: base_url"),
        ({"submit": "maybe"}, "setting 'submit' must be true or false"),
        ({"poll_interval": "soon"}, "setting 'poll_interval' must be a number"),
        ({"concurrency": "0"}, "setting 'concurrency' must be at least 1"),
    ],
)
def test_bad_plugin_settings_say_what_is_valid(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_config(config)


def test_plugin_ignores_the_profile_settings_dbt_passes_without_a_config() -> None:
    class Creds:
        settings = {"threads": 4, "memory_limit": "1GB"}

    creds = Creds()
    assert Plugin("warehouse_batch", creds.settings, credentials=creds).settings == Settings()
    assert Plugin("warehouse_batch", {"submit": "false"}, credentials=creds).settings == Settings(submit=False)


@pytest.mark.parametrize(
    ("schema", "identifier", "name"),
    [
        ("main", "review_sentiment", "main__review_sentiment"),
        ("analytics", "x", "analytics__x"),
    ],
)
def test_job_names_come_from_the_relation(schema: str, identifier: str, name: str) -> None:
    assert job_name_for(schema, identifier) == name


def test_unusual_or_long_relation_names_become_distinct_valid_job_names() -> None:
    odd = job_name_for("my-schema", "1 review")
    long_a, long_b = job_name_for("s", "a" * 80), job_name_for("s", "a" * 81)
    for name in (odd, long_a, long_b):
        assert len(name) <= 63 and (name[0].isalpha() or name[0] == "_")
    assert odd.startswith("my_schema__1_review_") and long_a != long_b


DBT_KEYS = frozenset({"materialized", "tags", "meta", "pre-hook", "post-hook", "schema", "alias"})


def request(config: dict, **extra) -> str:
    return json.dumps({"schema": "main", "identifier": "m", "relation": '"db"."main"."m"',
                       "sql": "select 1 as custom_id, 'hi' as prompt;", "config": config, **extra})


def test_model_config_maps_onto_job_options() -> None:
    config = {"materialized": "llm_batch", "tags": ["llm"], "meta": {}, "model": "gpt-4o-mini", "system": "Be brief.",
              "temperature": 0, "max_tokens": 5, "max_cost_usd": "0.5", "wait_timeout": "30", "pre-hook": [],
              "metadata": {"team": "growth"}, "output_schema": None}
    model = parse_request(request(config, no_cache=True), DBT_KEYS)
    job = model.job
    assert (job.name, job.table, job.model, job.system) == ("main__m", f"warehouse_batch.main__m{OUTPUT_SUFFIX}",
                                                            "gpt-4o-mini", "Be brief.")
    assert job.params == {"temperature": 0, "max_tokens": 5}
    assert job.max_cost_usd == 0.5 and job.cache is False and job.metadata == {"team": "growth"}
    assert job.query == "select 1 as custom_id, 'hi' as prompt"
    assert model.wait_timeout == 30.0 and model.empty is False
    assert parse_request(request({"model": "m", "job_name": "sentiment_v2"})).job.name == "sentiment_v2"


def test_typos_and_cache_in_model_config_are_refused() -> None:
    with pytest.raises(JobError, match=r"'max_cost' \(did you mean 'max_cost_usd'\?\), 'max_token' \(did you mean "
                                       r"'max_tokens'\?\); nothing was sent"):
        parse_request(request({"model": "m", "max_cost": 1, "max_token": 5, "tags": []}), DBT_KEYS)
    with pytest.raises(JobError, match="'cache' is not a model config.*llm_batch_no_cache: true"):
        parse_request(request({"model": "m", "cache": False}), DBT_KEYS)
    assert parse_request(request({"model": "m"})).job.cache is True


def test_bad_model_config_names_the_model() -> None:
    with pytest.raises(JobError, match=r'model "db"."main"."m": .*endpoint'):
        parse_request(request({"model": "m", "endpoint": "/v1/images"}))
    with pytest.raises(JobError, match="wait_timeout"):
        parse_request(request({"model": "m", "wait_timeout": "soon"}))
    with pytest.raises(JobError, match="config 'table' is not used"):
        parse_request(request({"model": "m", "table": "x"}))


def test_a_json_schema_file_beside_the_model_is_found(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "answer.json").write_text('{"type": "object", "properties": {"a": {"type": "string"}}}')
    job = parse_request(request({"model": "m", "output_schema": "answer.json"}, project_dir=str(tmp_path),
                                path="models/m.sql")).job
    assert job.output_schema == str((tmp_path / "models" / "answer.json").resolve())


def test_errors_for_dbt_use_dbt_words_and_name_the_redacted_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    from warehouse_batch.dbt.messages import for_dbt
    from warehouse_batch.errors import ConfigError
    from warehouse_batch.providers.openai import OpenAIBatchProvider

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError) as caught:
        OpenAIBatchProvider(base_url="http://user:secret@127.0.0.1:8000/v1?api-key=k")
    report = for_dbt(caught.value, "http://user:secret@127.0.0.1:8000/v1?api-key=k")
    assert report["kind"] == "config" and report["error"].startswith("no API key: set OPENAI_API_KEY")
    assert "--base-url" not in report["error"] and "OPENAI_BASE_URL=http://127.0.0.1:8000/v1" in report["error"]
    assert report["error"].endswith("[provider: http://127.0.0.1:8000/v1]")
    assert "secret" not in report["error"] and "api-key" not in report["error"]
