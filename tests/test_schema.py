"""Output schemas, table-driven: each form → the exact response format that is sent → the typed
columns of the output table (checked with DESCRIBE), through the real CLI and the emulator."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Warehouse, write_job
from warehouse_batch import schema
from warehouse_batch.errors import JobError
from warehouse_batch.jobs import Job

SENTIMENT_JSON = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["Positive", "Neutral", "Negative"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "key_phrases": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
    },
    "required": ["sentiment", "confidence", "key_phrases"],
    "additionalProperties": False,
}
SENTIMENT_COLUMNS = {
    "sentiment": "ENUM('Positive', 'Neutral', 'Negative')",
    "confidence": "DOUBLE",
    "key_phrases": "VARCHAR[]",
}
MODELS_PY = '''
from datetime import date
from typing import Literal, Optional

from pydantic import BaseModel, Field


class SentimentResult(BaseModel):
    sentiment: Literal["Positive", "Neutral", "Negative"]
    confidence: float = Field(ge=0, le=1)
    key_phrases: list[str] = Field(max_length=5)


class Address(BaseModel):
    """A postal address."""
    city: str
    postcode: Optional[str] = None


class Person(BaseModel):
    name: str = Field(description="full name")
    age: Optional[int] = None
    born: Optional[date] = None
    addresses: list[Address]
'''
PERSON_JSON = {
    "type": "object",
    "properties": {
        "name": {"description": "full name", "type": "string"},
        "age": {"type": ["integer", "null"]},
        "born": {"type": ["string", "null"], "format": "date"},
        "addresses": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "postcode": {"type": ["string", "null"]}},
                "required": ["city", "postcode"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["name", "age", "born", "addresses"],
    "additionalProperties": False,
}
PERSON_COLUMNS = {
    "name": "VARCHAR",
    "age": "BIGINT",
    "born": "DATE",
    "addresses": "STRUCT(city VARCHAR, postcode VARCHAR)[]",
}

# (case id, output_schema option, json_schema name, the exact strict schema sent, DESCRIBE of the typed columns)
CASES: list[tuple[str, Any, str, dict[str, Any], dict[str, str]]] = [
    (
        "sql-sentiment",
        "sentiment ENUM('Positive','Neutral','Negative'), confidence DOUBLE CHECK (confidence BETWEEN 0 AND 1), "
        "key_phrases VARCHAR[] CHECK (len(key_phrases) <= 5)",
        "output", SENTIMENT_JSON, SENTIMENT_COLUMNS,
    ),
    (
        "sql-every-type",
        "ok BOOLEAN COMMENT 'is it fine', n INTEGER CHECK (n >= 1), big BIGINT NULL, x DOUBLE CHECK (x > 0 AND x < 10), "
        "price DECIMAL(10,2), day DATE, at TIMESTAMP, at_tz TIMESTAMPTZ NULL, "
        "tag VARCHAR CHECK (tag IN ('a','b')), tags VARCHAR[] CHECK (len(tags) BETWEEN 1 AND 3) , "
        "items STRUCT(label VARCHAR, qty INTEGER, dims STRUCT(w DOUBLE, h DOUBLE))[] NULL",
        "output",
        {
            "type": "object",
            "properties": {
                "ok": {"description": "is it fine", "type": "boolean"},
                "n": {"type": "integer", "minimum": 1},
                "big": {"type": ["integer", "null"]},
                "x": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
                "price": {"type": "number"},
                "day": {"type": "string", "format": "date"},
                "at": {"type": "string", "format": "date-time"},
                "at_tz": {"type": ["string", "null"], "format": "date-time"},
                "tag": {"type": "string", "enum": ["a", "b"]},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
                "items": {"anyOf": [{"type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "label": {"type": "string"}, "qty": {"type": "integer"},
                        "dims": {"type": "object", "properties": {"w": {"type": "number"}, "h": {"type": "number"}},
                                 "required": ["w", "h"], "additionalProperties": False},
                    },
                    "required": ["label", "qty", "dims"], "additionalProperties": False}}, {"type": "null"}]},
            },
            "required": ["ok", "n", "big", "x", "price", "day", "at", "at_tz", "tag", "tags", "items"],
            "additionalProperties": False,
        },
        {
            "ok": "BOOLEAN", "n": "INTEGER", "big": "BIGINT", "x": "DOUBLE", "price": "DECIMAL(10,2)", "day": "DATE",
            "at": "TIMESTAMP", "at_tz": "TIMESTAMP WITH TIME ZONE", "tag": "ENUM('a', 'b')", "tags": "VARCHAR[]",
            "items": "STRUCT(\"label\" VARCHAR, qty INTEGER, dims STRUCT(w DOUBLE, h DOUBLE))[]",  # DuckDB quotes keywords
        },
    ),
    ("json-inline", SENTIMENT_JSON, "output", SENTIMENT_JSON, SENTIMENT_COLUMNS),
    ("json-file", "person.schema.json", "Person", PERSON_JSON, PERSON_COLUMNS),
    ("pydantic-module", "models:SentimentResult", "SentimentResult", SENTIMENT_JSON, SENTIMENT_COLUMNS),
    ("pydantic-file", "models.py:Person", "Person", PERSON_JSON, PERSON_COLUMNS),
]


def _person_json_schema() -> dict[str, Any]:
    """Person as a loose, hand-written JSON Schema: $defs/$ref, optional properties, anyOf null."""
    return {
        "title": "Person",
        "type": "object",
        "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"},
                                                                "postcode": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
                              "required": ["city"]}},
        "properties": {
            "name": {"type": "string", "description": "full name"},
            "age": {"type": "integer"},
            "born": {"type": "string", "format": "date"},
            "addresses": {"type": "array", "items": {"$ref": "#/$defs/Address"}},
        },
        "required": ["name", "addresses"],
    }


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "jobs"
    directory.mkdir()
    (directory / "models.py").write_text(textwrap.dedent(MODELS_PY), encoding="utf-8")
    (directory / "person.schema.json").write_text(json.dumps(_person_json_schema()), encoding="utf-8")
    return directory


@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/v1/responses"])
@pytest.mark.parametrize(("case", "option", "name", "expected_schema", "expected_columns"), CASES, ids=[c[0] for c in CASES])
def test_schema_form_to_request_to_typed_columns(
    warehouse: Warehouse, job_dir: Path, case: str, option: Any, name: str, expected_schema: dict[str, Any],
    expected_columns: dict[str, str], endpoint: str,
) -> None:
    job = write_job(job_dir / f"{case.replace('-', '_')}.sql",
                    {"name": "typed", "model": "gpt-4o-mini", "endpoint": endpoint, "output_schema": option},
                    "SELECT 1 AS custom_id, 'Some text' AS prompt")
    warehouse.cli("run", str(job), "--keep-input-files", "--wait", "--poll-interval", "0.05")

    shard = Path(warehouse.sql("SELECT path FROM warehouse_batch.batches")[0][0])
    body = json.loads(shard.read_text(encoding="utf-8"))["body"]
    if endpoint == "/v1/chat/completions":
        assert body["response_format"] == {
            "type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": expected_schema}}
    else:
        assert body["text"] == {"format": {"type": "json_schema", "name": name, "strict": True, "schema": expected_schema}}
    # Property order is column order (the model answers in that order).
    sent_schema = body["response_format"]["json_schema"]["schema"] if "response_format" in body else body["text"]["format"]["schema"]
    assert list(sent_schema["properties"]) == list(expected_columns)

    described = {r[0]: r[1] for r in warehouse.sql("DESCRIBE typed")}
    assert {k: described[k] for k in expected_columns} == expected_columns
    columns = list(described)
    assert columns[: 2 + len(expected_columns)] == ["custom_id", "prompt", *expected_columns]
    row = warehouse.rows("SELECT * FROM typed")[0]
    assert row["status"] == "completed" and row["error_code"] is None, row


def test_the_seed_sentiment_model_and_its_sql_column_list_send_the_same_schema(job_dir: Path) -> None:
    model = schema.load("models:SentimentResult", base_dir=job_dir)
    columns = schema.load("sentiment ENUM('Positive','Neutral','Negative'), confidence DOUBLE CHECK (confidence BETWEEN 0 "
                          "AND 1), key_phrases VARCHAR[] CHECK (len(key_phrases) <= 5)")
    assert model is not None and columns is not None
    assert model.json_schema() == columns.json_schema() == SENTIMENT_JSON
    assert model.columns() == columns.columns()


@pytest.mark.parametrize(("option", "message"), [
    ("sentiment VARCHAR, confidence", "column 'confidence' has no type"),
    ("a VARCHAR(, b INTEGER", "not a valid column list"),
    ("payload JSON", "column 'payload': type JSON is not supported"),
    ("m MAP(VARCHAR, INTEGER)", "column 'm': type MAP"),
    ("status VARCHAR", "field 'status' clashes with the output table's own column"),
    ("Name VARCHAR, name VARCHAR", "differ only in case"),
    ("mood ENUM('a', 'a')", "ENUM needs distinct values"),
    ("score DOUBLE CHECK (score <> 3)", "CHECK (score <> 3) is not supported"),
    ("tags VARCHAR[] CHECK (tags > 3)", "CHECK (tags > 3) is not supported"),
    ("label VARCHAR CHECK (label IN (1, 2))", "CHECK (label IN (1, 2)) is not supported"),
    ("id VARCHAR PRIMARY KEY", "PRIMARY KEY is not supported"),
    ({"type": "array", "items": {"type": "string"}}, "top level of a JSON Schema must be an object"),
    ({"type": "object", "properties": {"x": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}},
     "field 'x': a choice between 2 types"),
    ({"type": "object", "properties": {"meta": {"type": "object"}}}, "field 'meta': an object without properties"),
    ({"type": "object", "properties": {"n": {"$ref": "#/$defs/Node"}},
      "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}}}, "recursive"),
    ({"type": "object", "properties": {"level": {"enum": [1, 2, 3]}}}, "field 'level': enum values must be text"),
    ("nowhere.json", "cannot be read"),
    ("no_such_module_here:Model", "cannot import no_such_module_here"),
    ("models:Missing", "has no attribute Missing"),
])
def test_invalid_schemas_name_the_problem(job_dir: Path, option: Any, message: str) -> None:
    with pytest.raises(JobError) as info:
        schema.load(option, base_dir=job_dir)
    assert message in str(info.value)


def test_invalid_schema_is_refused_before_anything_is_sent(warehouse: Warehouse, tmp_path: Path) -> None:
    job = write_job(tmp_path / "bad.sql", {"name": "bad", "model": "gpt-4o-mini", "output_schema": "score DOUBLE, meta JSON"},
                    "SELECT 1 AS custom_id, 'x' AS prompt")
    result = warehouse.cli("run", str(job), "--wait", expect=3)
    assert "column 'meta': type JSON is not supported" in result.output
    assert warehouse.counters()["files_uploaded"] == 0 and warehouse.counters()["batches_created"] == 0
    # plan refuses it the same way, and the query's own columns may not clash with the schema's.
    warehouse.cli("plan", str(job), expect=3)
    clash = write_job(tmp_path / "clash.sql", {"name": "clash", "model": "gpt-4o-mini", "output_schema": "score DOUBLE"},
                      "SELECT 1 AS custom_id, 'x' AS prompt, 5 AS score")
    result = warehouse.cli("run", str(clash), expect=3)
    assert "score" in result.output and "clash" in result.output
    assert warehouse.counters()["files_uploaded"] == 0


def test_output_schema_is_refused_on_endpoints_with_fixed_columns(warehouse: Warehouse, tmp_path: Path) -> None:
    job = write_job(tmp_path / "emb.sql", {"name": "emb", "endpoint": "/v1/embeddings", "model": "text-embedding-3-small",
                                           "output_schema": "x VARCHAR"}, "SELECT 1 AS custom_id, 'x' AS input")
    result = warehouse.cli("run", str(job), expect=3)
    assert "output_schema works with /v1/chat/completions and /v1/responses" in result.output
    assert warehouse.counters()["files_uploaded"] == 0


def test_a_changed_schema_is_a_new_request(warehouse: Warehouse, tmp_path: Path) -> None:
    """The response format is part of the body, so part of request_hash: no stale cached answers."""
    def run(option: str) -> str:
        job = write_job(tmp_path / "j.sql", {"name": "j", "model": "gpt-4o-mini", "output_schema": option},
                        "SELECT 1 AS custom_id, 'Same prompt' AS prompt")
        warehouse.cli("run", str(job), "--wait", "--poll-interval", "0.05")
        return warehouse.sql("SELECT request_hash FROM j")[0][0]

    first = run("label VARCHAR")
    assert run("label VARCHAR") == first and warehouse.counters()["batches_created"] == 1
    assert run("label VARCHAR COMMENT 'a short label'") != first
    assert warehouse.counters()["batches_created"] == 2


def test_pydantic_job_works_from_any_working_directory(warehouse: Warehouse, job_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`module:Class` beside the job file is found wherever the command runs (later collects too)."""
    job = write_job(job_dir / "people.sql", {"name": "people", "model": "gpt-4o-mini", "output_schema": "models:Person"},
                    "SELECT 1 AS custom_id, 'Ada Lovelace, born 1815 in London' AS prompt")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    warehouse.cli("run", str(job))
    warehouse.cli("collect", "people")
    assert warehouse.sql("SELECT status, typeof(addresses) FROM people") == [
        ("completed", "STRUCT(city VARCHAR, postcode VARCHAR)[]")]


def test_a_model_class_object_is_refused_with_the_reference_to_use(warehouse: Warehouse) -> None:
    from pydantic import BaseModel

    from warehouse_batch import api

    class Answer(BaseModel):
        text: str

    job = Job(name="cls", query="SELECT 1 AS custom_id, 'x' AS prompt", model="gpt-4o-mini", output_schema=Answer)
    with pytest.raises(JobError, match=r"output_schema='tests.test_schema:.*Answer'"):
        api.plan(job, warehouse.db)
