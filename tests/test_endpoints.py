"""The four endpoints end to end (real CLI, real SDK, emulator): golden request lines, typed rows
joined on custom_id, messages and multimodal parts, per-row overrides, and parameter checks that
stop a job before anything is uploaded."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Warehouse, write_job

GOLDEN = Path(__file__).parent / "golden" / "structured" / "requests"
REGENERATE = os.environ.get("WAREHOUSE_BATCH_REGENERATE_GOLDEN") == "1"
WAIT = ("--wait", "--poll-interval", "0.05")
#: For the tests that read the shard files afterwards (a collected shard's file is deleted by default).
KEEP = ("--keep-input-files", *WAIT)


def _shard_lines(warehouse: Warehouse) -> list[str]:
    lines = []
    for (path,) in warehouse.sql("SELECT path FROM warehouse_batch.batches ORDER BY shard_id"):
        lines += Path(path).read_text(encoding="utf-8").splitlines()
    return lines


@pytest.mark.parametrize("case", sorted(p.stem for p in GOLDEN.glob("*.json")))
def test_golden_request_lines(warehouse: Warehouse, tmp_path: Path, case: str) -> None:
    """Job + query → the exact JSONL lines written and uploaded (set WAREHOUSE_BATCH_REGENERATE_GOLDEN=1 to rewrite)."""
    golden_path = GOLDEN / f"{case}.json"
    golden = json.loads(golden_path.read_text(encoding="utf-8"))
    job = write_job(tmp_path / "g.sql", golden["job"], golden["query"])
    warehouse.cli("run", str(job), *KEEP)
    lines = sorted(_shard_lines(warehouse))
    if REGENERATE:
        golden["lines"] = lines
        golden_path.write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    assert lines == golden["lines"]
    for line in lines:
        request = json.loads(line)
        # custom_id = request_hash = sha256 of the body text as written: identical bodies are one request.
        body_text = line[line.index('"body":') + len('"body":'):-1]
        assert request["custom_id"] == hashlib.sha256(body_text.encode()).hexdigest()
    # Every row came back completed, joined on its own custom_id.
    assert warehouse.sql("SELECT count_if(status <> 'completed'), count(DISTINCT request_hash) FROM g") == [(0, len(lines))]
    assert warehouse.counters()["requests_received"] == len(lines)


# -- embeddings -------------------------------------------------------------------------------
def test_embeddings_come_back_as_float_vectors(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.sql("CREATE TABLE docs AS SELECT 'doc-' || i AS doc_id, 'Document number ' || i AS text FROM range(30) t(i)")
    job = write_job(tmp_path / "emb.sql", {"name": "doc_vectors", "endpoint": "/v1/embeddings",
                                           "model": "text-embedding-3-small", "dimensions": 64},
                    "SELECT doc_id AS custom_id, text AS input FROM docs")
    warehouse.cli("run", str(job), *WAIT)
    described = {r[0]: r[1] for r in warehouse.sql("DESCRIBE doc_vectors")}
    assert described["embedding"] == "FLOAT[]"
    rows = warehouse.rows("SELECT d.doc_id, v.* FROM docs d JOIN doc_vectors v ON v.custom_id = d.doc_id")
    assert len(rows) == 30
    for row in rows:
        assert row["status"] == "completed" and row["error_code"] is None
        assert len(row["embedding"]) == 64
        assert math.isclose(sum(x * x for x in row["embedding"]), 1.0, rel_tol=1e-4)  # unit length
        assert row["content"] is None and row["input_tokens"] > 0
    # Vectors are ordinary columns: similarity search is plain SQL.
    nearest = warehouse.sql(
        "SELECT b.custom_id FROM doc_vectors a, doc_vectors b WHERE a.custom_id = 'doc-3' AND b.custom_id <> 'doc-3' "
        "ORDER BY list_cosine_similarity(a.embedding, b.embedding) DESC LIMIT 1")
    assert len(nearest) == 1
    # The same text always gets the same vector (deterministic emulator, cached request).
    assert warehouse.sql("SELECT count(DISTINCT embedding) FROM doc_vectors") == [(30,)]


def test_embeddings_of_a_list_input_keep_input_order(warehouse: Warehouse, tmp_path: Path) -> None:
    job = write_job(tmp_path / "emb.sql", {"name": "pairs", "endpoint": "/v1/embeddings", "model": "text-embedding-3-small",
                                           "dimensions": 8},
                    "SELECT 1 AS custom_id, ['alpha', 'beta', 'gamma'] AS input UNION ALL SELECT 2, ['beta']")
    warehouse.cli("run", str(job), *WAIT)
    assert {r[0]: r[1] for r in warehouse.sql("DESCRIBE pairs")}["embeddings"] == "FLOAT[][]"
    rows = {r["custom_id"]: r for r in warehouse.rows("SELECT * FROM pairs")}
    assert [len(v) for v in rows[1]["embeddings"]] == [8, 8, 8]
    assert rows[1]["embeddings"][1] == rows[2]["embeddings"][0]  # 'beta' in both, index order kept


# -- moderations ------------------------------------------------------------------------------
def test_moderation_flags_become_boolean_columns(warehouse: Warehouse, tmp_path: Path) -> None:
    job = write_job(tmp_path / "mod.sql", {"name": "checked", "endpoint": "/v1/moderations"},
                    "SELECT * FROM (VALUES (1, 'Have a nice day'), (2, 'You are awful [[emulator:flagged]]'), "
                    "(3, 'Nice weather')) t(custom_id, input)")
    warehouse.cli("run", str(job), *WAIT)
    described = {r[0]: r[1] for r in warehouse.sql("DESCRIBE checked")}
    assert described["flagged"] == "BOOLEAN" and described["harassment"] == "BOOLEAN"
    assert described["self_harm_intent"] == "BOOLEAN" and described["violence_graphic"] == "BOOLEAN"
    assert described["category_scores"].startswith("STRUCT(harassment DOUBLE, harassment_threatening DOUBLE")
    rows = {r["custom_id"]: r for r in warehouse.rows("SELECT * FROM checked")}
    assert [rows[i]["flagged"] for i in (1, 2, 3)] == [False, True, False]
    assert rows[2]["harassment"] is True and rows[2]["category_scores"]["harassment"] > 0.9
    assert rows[1]["harassment"] is False and rows[1]["violence"] is False
    assert all(r["status"] == "completed" and r["model"] == "omni-moderation-latest" for r in rows.values())
    assert warehouse.sql("SELECT custom_id FROM checked WHERE flagged") == [(2,)]


# -- chat and responses: messages, multimodal, overrides -------------------------------------
@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/v1/responses"])
def test_messages_as_json_or_struct_come_back_typed(warehouse: Warehouse, tmp_path: Path, endpoint: str) -> None:
    warehouse.sql("CREATE TABLE convo (id INTEGER, msgs STRUCT(role VARCHAR, content VARCHAR)[])")
    warehouse.sql("INSERT INTO convo VALUES (1, [{'role': 'user', 'content': 'I love it'}]), "
                  "(2, [{'role': 'user', 'content': 'Hmm'}, {'role': 'assistant', 'content': 'Go on'}, "
                  "{'role': 'user', 'content': 'It broke'}])")
    job = write_job(tmp_path / "m.sql", {"name": "convo_mood", "model": "gpt-4o-mini", "endpoint": endpoint,
                                         "system": "Rate the customer's mood.", "output_schema": "mood ENUM('happy','unhappy')"},
                    "SELECT id AS custom_id, msgs AS messages FROM convo")
    warehouse.cli("run", str(job), *KEEP)
    rows = warehouse.rows("SELECT c.id, m.mood, m.status FROM convo c JOIN convo_mood m ON m.custom_id = c.id ORDER BY 1")
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert all(r["mood"] in ("happy", "unhappy") for r in rows)
    body = json.loads(_shard_lines(warehouse)[0])["body"]
    if endpoint == "/v1/chat/completions":
        assert body["messages"][0] == {"role": "system", "content": "Rate the customer's mood."}
    else:
        assert body["instructions"] == "Rate the customer's mood." and isinstance(body["input"], list)


def test_rows_with_different_models_never_share_a_file(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.sql("CREATE TABLE t AS SELECT i AS id, 'Prompt ' || i AS p, "
                  "CASE WHEN i % 3 = 0 THEN 'gpt-4o' WHEN i % 3 = 1 THEN 'gpt-4o-mini' END AS m FROM range(12) r(i)")
    job = write_job(tmp_path / "j.sql", {"name": "mixed", "model": "gpt-4.1-nano", "output_schema": "answer VARCHAR"},
                    "SELECT id AS custom_id, p AS prompt, m AS model FROM t")
    warehouse.cli("run", str(job), *KEEP)
    batches = warehouse.rows("SELECT model, path, line_count FROM warehouse_batch.batches ORDER BY model")
    assert [(b["model"], b["line_count"]) for b in batches] == [("gpt-4.1-nano", 4), ("gpt-4o", 4), ("gpt-4o-mini", 4)]
    for b in batches:
        models = {json.loads(line)["body"]["model"] for line in Path(b["path"]).read_text().splitlines()}
        assert models == {b["model"]}
    assert warehouse.counters()["batches_created"] == 3
    assert warehouse.sql("SELECT count_if(status = 'completed'), count(DISTINCT model) FROM mixed") == [(12, 3)]


# -- parameters: refused before any upload ---------------------------------------------------
@pytest.mark.parametrize(("header", "query", "message"), [
    ({"temperature": 3}, None, "param 'temperature' must be a number from 0 to 2"),
    ({"max_tokens": 0}, None, "param 'max_tokens' must be a whole number ≥ 1"),
    ({"params": {"top_p": "high"}}, None, "param 'top_p' must be a number from 0 to 1"),
    ({"params": {"frobnicate": 1}}, None, "param 'frobnicate' is not a parameter of /v1/chat/completions"),
    ({"dimensions": 256}, None, "param 'dimensions' is not a parameter of /v1/chat/completions"),
    ({"reasoning_effort": "extreme"}, None, "param 'reasoning_effort' must be one of 'none', 'minimal'"),
    ({"endpoint": "/v1/responses", "max_tokens": 10}, None,
     "param 'max_tokens' is not a parameter of /v1/responses; use max_output_tokens"),
    ({"endpoint": "/v1/embeddings", "model": "text-embedding-3-small", "params": {"encoding_format": "base64"}},
     "SELECT 1 AS custom_id, 'x' AS input", "param 'encoding_format' must be one of 'float'"),
    ({"endpoint": "/v1/embeddings", "model": "text-embedding-3-small", "dimensions": -5},
     "SELECT 1 AS custom_id, 'x' AS input", "param 'dimensions' must be a whole number ≥ 1"),
    ({"output_schema": "a VARCHAR", "params": {"response_format": {"type": "json_object"}}}, None,
     "param 'response_format' and output_schema both set the answer format"),
    ({}, "SELECT * FROM (VALUES (1, 'a', 0.5), (2, 'b', 2.5), (3, 'c', 9)) t(custom_id, prompt, temperature)",
     "2 row(s) have a temperature that is not a number from 0 to 2: custom_id '2', '3'"),
    ({}, "SELECT * FROM (VALUES (1, 'a', '100'), (2, 'b', 'lots'), (3, 'c', '1.5')) t(custom_id, prompt, max_tokens)",
     "2 row(s) have a max_tokens that is not a whole number ≥ 1: custom_id '2', '3'"),
    ({}, "SELECT 1 AS custom_id, 'a' AS prompt, 'turbo' AS reasoning_effort",
     "1 row(s) have a reasoning_effort that is not one of"),
    ({"endpoint": "/v1/embeddings", "model": "text-embedding-3-small"}, "SELECT 1 AS custom_id, 'x' AS input, 0.2 AS temperature",
     "column 'temperature' would override a request parameter, but 'temperature' is not a parameter of /v1/embeddings"),
    ({"endpoint": "/v1/moderations"}, "SELECT 1 AS custom_id, 'x' AS input, 'Be nice' AS system",
     "/v1/moderations takes no system prompt"),
])
def test_invalid_params_are_refused_before_upload(warehouse: Warehouse, tmp_path: Path, header: dict[str, Any],
                                                  query: str | None, message: str) -> None:
    job = write_job(tmp_path / "bad.sql", {"name": "bad", "model": "gpt-4o-mini", **header},
                    query or "SELECT 1 AS custom_id, 'Hello' AS prompt")
    result = warehouse.cli("run", str(job), *WAIT, expect=3)
    assert message in result.output, result.output
    counters = warehouse.counters()
    assert counters["files_uploaded"] == 0 and counters["batches_created"] == 0
    assert warehouse.sql("SELECT count(*) FROM warehouse_batch.requests") == [(0,)]


def test_body_column_is_sent_untouched_and_hashed_as_sent(warehouse: Warehouse, tmp_path: Path) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi"}], "temperature": 0.3,
            "logit_bias": {"50256": -100}, "custom_field": [1, 2]}
    job = write_job(tmp_path / "b.sql", {"name": "raw"}, f"SELECT 'x' AS custom_id, '{json.dumps(body)}'::JSON AS body")
    warehouse.cli("run", str(job), *KEEP)
    line = json.loads(_shard_lines(warehouse)[0])
    assert line["body"] == body and list(line["body"]) == list(body)  # same keys, same order
    minified = json.dumps(body, separators=(",", ":"))
    assert warehouse.sql("SELECT request_hash, status FROM raw") == [(hashlib.sha256(minified.encode()).hexdigest(), "completed")]
