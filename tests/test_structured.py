"""Answers become typed columns; every kind of bad answer fails its own row, keeps its raw content,
and leaves the other rows alone. Through the real CLI, the real SDK and the emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Warehouse, write_job
from warehouse_batch import publish, results
from warehouse_batch.jobs import Job
from warehouse_batch.ledger import Ledger
from warehouse_batch.quoting import sql_literal
from warehouse_batch.warehouses import open_warehouse

pytestmark = pytest.mark.both_warehouses

GOLDEN = Path(__file__).parent / "golden" / "structured" / "answers"
SENTIMENT = (
    "sentiment ENUM('Positive','Neutral','Negative'), confidence DOUBLE CHECK (confidence BETWEEN 0 AND 1), "
    "key_phrases VARCHAR[] CHECK (len(key_phrases) <= 5)"
)
WAIT = ("--wait", "--poll-interval", "0.05")


def _values(rows: list[tuple[Any, ...]], names: str) -> str:
    body = ", ".join("(" + ", ".join(sql_literal(v) if isinstance(v, str) else str(v) for v in r) + ")" for r in rows)
    return f"SELECT * FROM (VALUES {body}) AS t({names})"


def _check_row(row: dict[str, Any], expected: dict[str, Any]) -> None:
    for key, want in expected.items():
        if key == "message_contains":
            assert want in (row["error_message"] or ""), (row["custom_id"], row["error_message"])
        elif "." in key:
            outer, inner = key.split(".")
            assert row[outer][inner] == pytest.approx(want), (row["custom_id"], key)
        elif isinstance(want, float) or (isinstance(want, list) and want and isinstance(want[0], float)):
            assert row[key] == pytest.approx(want), (row["custom_id"], key, row[key])
        else:
            got = row[key]
            got = got.isoformat() if hasattr(got, "isoformat") else got
            assert got == want, (row["custom_id"], key, got, want)


# -- end to end, chat and responses: each failure kind on its own row --------------------------
@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/v1/responses"])
def test_each_failure_kind_lands_on_its_row(warehouse: Warehouse, tmp_path: Path, endpoint: str) -> None:
    prompts = [
        ("ok-1", "Great desk, sturdy and quiet."),
        ("refused", "Tell me something [[emulator:refusal]]"),
        ("cut", "A long review [[emulator:truncate]]"),
        ("garbled", "Confusing text [[emulator:invalid_json]]"),
        ("http-400", "Way too long [[emulator:error_400]]"),
        ("ok-2", "Shoes fell apart after a week."),
    ]
    job = write_job(
        tmp_path / "sentiment.sql",
        {"name": "sentiment", "model": "gpt-4o-mini", "endpoint": endpoint,
         "system": "Classify the sentiment of the review.", "output_schema": SENTIMENT},
        _values(prompts, "custom_id, prompt"),
    )
    # Exit code: 5 here because of the HTTP 400 row. (The runner's report counts statuses from the results
    # cache, which does not know about answer-level failures; the output table is the truth.)
    warehouse.cli("run", str(job), *WAIT, expect=5)
    rows = {r["custom_id"]: r for r in warehouse.rows("SELECT * FROM sentiment")}
    assert len(rows) == 6

    for good in ("ok-1", "ok-2"):
        row = rows[good]
        assert row["status"] == "completed" and row["error_code"] is None and row["error_message"] is None
        assert row["sentiment"] in ("Positive", "Neutral", "Negative")
        assert 0 <= row["confidence"] <= 1 and 1 <= len(row["key_phrases"]) <= 5
        assert json.loads(row["content"])["sentiment"] == row["sentiment"]

    expected = {"refused": "refusal", "cut": "truncated", "garbled": "invalid_json", "http-400": "context_length_exceeded"}
    for custom_id, code in expected.items():
        row = rows[custom_id]
        assert (row["status"], row["error_code"]) == ("failed", code), row
        assert row["error_message"]
        assert row["sentiment"] is None and row["confidence"] is None and row["key_phrases"] is None
        assert row["completed_at"] is None
    # Raw answers are kept: the refusal text, the cut-off JSON, the garbled text.
    assert rows["refused"]["refusal"].startswith("I'm sorry") and rows["refused"]["content"] is None
    assert rows["cut"]["content"] and not rows["cut"]["content"].rstrip().endswith("}")
    assert rows["cut"]["finish_reason"] == ("length" if endpoint == "/v1/chat/completions" else "max_output_tokens")
    assert rows["garbled"]["content"].startswith("Here is the JSON")
    assert rows["http-400"]["content"] is None

    types = dict((r[0], r[1]) for r in warehouse.sql("DESCRIBE sentiment"))
    # Postgres has no inline enum type: the labels are text (checked against the enum above).
    assert types["sentiment"] == {"duckdb": "ENUM('Positive', 'Neutral', 'Negative')", "postgres": "VARCHAR"}[warehouse.kind]
    assert types["confidence"] == "DOUBLE" and types["key_phrases"] == "VARCHAR[]"


def test_schema_mismatch_from_a_body_that_asks_for_another_shape(warehouse: Warehouse, tmp_path: Path) -> None:
    """A `body` column is sent untouched; when its schema disagrees with output_schema, the answers
    that do not fit are failed rows naming the field, the ones that fit are typed."""
    def body(schema: dict[str, Any]) -> str:
        return json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Rate it"}],
                           "response_format": {"type": "json_schema",
                                               "json_schema": {"name": "r", "strict": True, "schema": schema}}})

    def obj(props: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}

    fits = obj({"label": {"type": "string", "enum": ["yes", "no"]}, "score": {"type": "number", "minimum": 0, "maximum": 1}})
    out_of_range = obj({"label": {"type": "string", "enum": ["yes"]}, "score": {"type": "number", "minimum": 5, "maximum": 9}})
    missing = obj({"label": {"type": "string", "enum": ["no"]}})
    warehouse.sql("CREATE TABLE bodies (id VARCHAR, body VARCHAR)")
    warehouse.sql("INSERT INTO bodies VALUES ('fits', ?), ('range', ?), ('missing', ?)",
                  [body(fits), body(out_of_range), body(missing)])
    job = write_job(tmp_path / "rated.sql",
                    {"name": "rated", "output_schema": "label ENUM('yes','no'), score DOUBLE CHECK (score BETWEEN 0 AND 1)"},
                    "SELECT id AS custom_id, body FROM bodies")
    warehouse.cli("run", str(job), *WAIT, expect=None)
    rows = {r["custom_id"]: r for r in warehouse.rows("SELECT * FROM rated")}
    assert rows["fits"]["status"] == "completed" and rows["fits"]["label"] in ("yes", "no")
    assert (rows["range"]["status"], rows["range"]["error_code"]) == ("failed", "schema_mismatch")
    assert 'field "score"' in rows["range"]["error_message"] and "≤ 1" in rows["range"]["error_message"]
    assert json.loads(rows["range"]["content"])["score"] >= 5  # the raw answer is kept
    assert (rows["missing"]["status"], rows["missing"]["error_code"]) == ("failed", "schema_mismatch")
    assert 'missing field "score"' in rows["missing"]["error_message"]
    assert rows["missing"]["label"] is None  # a failed row has no typed values, not half of them


@pytest.mark.duckdb_only  # answer parsing is the engine's, the same on both: DuckDB only, for time
def test_failure_rates_never_leave_a_silent_null(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.emulator.configure(refusal_rate=0.1, truncate_rate=0.1, invalid_json_rate=0.1)
    warehouse.sql("CREATE TABLE reviews AS SELECT i AS id, 'Review number ' || i AS text FROM range(200) t(i)")
    job = write_job(tmp_path / "s.sql", {"name": "s", "model": "gpt-4o-mini", "output_schema": SENTIMENT},
                    "SELECT id AS custom_id, text AS prompt FROM reviews")
    warehouse.cli("run", str(job), *WAIT, expect=None)
    by_code = dict(warehouse.sql("SELECT coalesce(error_code, 'ok'), count(*) FROM s GROUP BY ALL"))
    assert set(by_code) == {"ok", "refusal", "truncated", "invalid_json"}
    assert all(n >= 5 for n in by_code.values()) and sum(by_code.values()) == 200
    # Every row is either completed with every typed column filled, or failed with a code and a message.
    assert warehouse.sql(
        "SELECT count(*) FROM s WHERE NOT ((status = 'completed' AND error_code IS NULL AND sentiment IS NOT NULL "
        "AND confidence IS NOT NULL AND key_phrases IS NOT NULL) OR (status = 'failed' AND error_code IS NOT NULL "
        "AND error_message IS NOT NULL AND sentiment IS NULL))"
    ) == [(0,)]


# -- golden: output line → table row ----------------------------------------------------------
@pytest.mark.duckdb_only  # drives the ledger through DuckDB's own API
@pytest.mark.parametrize("case", sorted(p.stem for p in GOLDEN.glob("*.json")))
def test_golden_output_lines_become_rows(warehouse: Warehouse, tmp_path: Path, case: str) -> None:
    """Hand-written provider output lines, loaded by the real loader, published by the real publish."""
    golden = json.loads((GOLDEN / f"{case}.json").read_text(encoding="utf-8"))
    input_column = golden.get("input", "prompt")
    ids = [line["custom_id"] for line in golden["outputs"]]
    job_path = write_job(tmp_path / "golden.sql", golden["job"],
                         _values([(i, f"text of {i}") for i in ids], f"custom_id, {input_column}"))
    warehouse.cli("run", str(job_path))  # submitted, not collected: the golden lines stand in for the output file
    with open_warehouse(warehouse.db) as store:
        ledger = Ledger(store)
        hashes = dict(store.execute(f"SELECT custom_id, request_hash FROM {golden['job']['name']}").fetchall())
        shard_id = store.scalar("SELECT shard_id FROM warehouse_batch.batches")
        output = tmp_path / "output.jsonl"
        output.write_text("".join(
            json.dumps({**line, "id": f"batch_req_{i}", "custom_id": hashes[line["custom_id"]]}) + "\n"
            for i, line in enumerate(golden["outputs"])
        ), encoding="utf-8")
        with store.transaction():
            results.load(ledger, [{"shard_id": shard_id, "batch_id": "batch_golden", "status": "completed",
                                   "files": [output], "errors": []}])
        publish.publish(store, ledger, Job.from_file(job_path))
    rows = {r["custom_id"]: r for r in warehouse.rows(f"SELECT * FROM {golden['job']['name']}")}
    assert set(rows) == set(golden["expected"])
    for custom_id, expected in golden["expected"].items():
        _check_row(rows[custom_id], expected)
        row = rows[custom_id]
        # Never a silent NULL: a row is completed, or failed with a code and a message.
        assert row["status"] == "completed" or (row["status"] == "failed" and row["error_code"] and row["error_message"])


# -- the shipped examples run against the emulator, and the analyst's SQL of the docs works on them --
REPO = Path(__file__).resolve().parent.parent
EXAMPLES = {
    "reviews/review_sentiment_structured.sql": [
        "SELECT sentiment, count(*) AS reviews, round(avg(confidence), 2) AS avg_confidence, round(avg(stars), 2) AS avg_stars "
        "FROM review_sentiment_structured WHERE status = 'completed' GROUP BY sentiment ORDER BY reviews DESC",
        "SELECT phrase, count(*) AS n FROM (SELECT unnest(key_phrases) AS phrase FROM review_sentiment_structured "
        "WHERE sentiment = 'Negative') GROUP BY phrase ORDER BY n DESC LIMIT 10",
        "SELECT status, error_code, count(*) FROM review_sentiment_structured GROUP BY ALL",
    ],
    "reviews/review_sentiment_columns.sql": [
        "SELECT product, count_if(sentiment = 'Negative') AS negative, count(*) AS reviews "
        "FROM review_sentiment_columns GROUP BY product ORDER BY negative DESC",
    ],
    "extraction/extract_invoices.sql": [
        "SELECT custom_id AS doc_id, vendor, invoice_date, currency, total, len(line_items) AS items "
        "FROM invoice_fields WHERE status = 'completed' AND is_invoice ORDER BY invoice_date",
        "SELECT custom_id AS doc_id, unnest(line_items, recursive := true) FROM invoice_fields WHERE status = 'completed'",
        "SELECT currency, sum(total) AS total FROM invoice_fields WHERE is_invoice GROUP BY currency",
    ],
    "reviews/review_embeddings.sql": [
        "SELECT a.custom_id, b.custom_id AS similar, list_cosine_similarity(a.embedding, b.embedding) AS similarity "
        "FROM review_embeddings a JOIN review_embeddings b ON a.custom_id < b.custom_id ORDER BY similarity DESC LIMIT 5",
        "SELECT custom_id, embedding::FLOAT[256] AS vec FROM review_embeddings",
    ],
    "reviews/review_moderation.sql": [
        "SELECT custom_id, product, harassment, violence, category_scores.violence AS violence_score "
        "FROM review_moderation WHERE flagged",
        "SELECT count_if(flagged) AS flagged, count(*) AS reviews FROM review_moderation",
    ],
}


@pytest.mark.duckdb_only  # the examples read CSV files with DuckDB's read_csv
@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_examples_run_against_the_emulator(warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, example: str) -> None:
    monkeypatch.chdir(REPO)  # the example queries read their CSV relative to the repository root
    job = Job.from_file(REPO / "examples" / example)
    report = warehouse.cli_json("run", f"examples/{example}", "--wait", "--poll-interval", "0.05")[0]
    assert report["statuses"].get("completed", 0) >= 10, report["statuses"]
    table = job.target_table
    counts = warehouse.sql(f"SELECT count(*), count_if(status = 'completed') FROM {table}")[0]
    assert counts[0] == counts[1] and counts[0] >= 10  # the emulator answers every example row well
    for query in EXAMPLES[example]:
        assert warehouse.sql(query) is not None
