"""Bad input gets a clear error naming the rows or options, exit code 3, nothing uploaded, no state left."""

from __future__ import annotations

import pytest

from tests.conftest import Warehouse

pytestmark = pytest.mark.both_warehouses

SETUP = """
CREATE TABLE items AS SELECT * FROM (VALUES
    (1, 'first', 'gpt-4o-mini'), (2, 'second', 'gpt-4o-mini'), (3, 'third', 'gpt-4o-mini'),
    (NULL, 'no id', 'gpt-4o-mini'), (5, NULL, 'gpt-4o-mini'), (6, '   ', 'gpt-4o-mini'),
    (7, 'dup a', 'gpt-4o-mini'), (7, 'dup b', 'gpt-4o-mini'), (9, 'no model', NULL)
) t(id, txt, mdl)
"""

NO_JOB_MODEL = "<no --model flag>"

# (query, extra flags, fragments the error must contain)
CASES = {
    "null custom_id": ("SELECT id AS custom_id, txt AS prompt FROM items WHERE id IS NULL OR id = 1", [],
                       ["1 row(s) have a NULL custom_id"]),
    "duplicate custom_id": ("SELECT id AS custom_id, txt AS prompt FROM items WHERE id = 7 OR id = 1", [],
                            ["1 custom_id value(s) appear more than once: '7' (×2)"]),
    "null prompt": ("SELECT id AS custom_id, txt AS prompt FROM items WHERE id IN (1, 5)", [],
                    ["1 row(s) have a NULL or empty prompt: custom_id '5'"]),
    "empty prompt": ("SELECT id AS custom_id, txt AS prompt FROM items WHERE id IN (1, 6)", [],
                     ["1 row(s) have a NULL or empty prompt: custom_id '6'"]),
    "several problems at once": ("SELECT id AS custom_id, txt AS prompt FROM items", [],
                                 ["NULL custom_id", "'7' (×2)", "custom_id '5', '6'"]),
    "no model": ("SELECT id AS custom_id, txt AS prompt, mdl AS model FROM items WHERE id IN (1, 9)", ["--model", ""],
                 ["option 'model' must be a model name"]),
    "no model for a row": ("SELECT id AS custom_id, txt AS prompt, mdl AS model FROM items WHERE id IN (1, 9)", [NO_JOB_MODEL],
                           ["1 row(s) have no model", "custom_id '9'"]),
    "missing custom_id column": ("SELECT txt AS prompt FROM items", [], ["no custom_id column", "columns found: prompt"]),
    "missing prompt column": ("SELECT id AS custom_id, txt FROM items", [], ["needs a column named one of prompt, messages, body"]),
    "two input columns": ("SELECT id AS custom_id, txt AS prompt, txt AS messages FROM items", [], ["several input columns"]),
    "output column clash": ("SELECT id AS custom_id, txt AS prompt, 'x' AS status FROM items", [], ["status", "rename"]),
    "syntax error": ("SELECT id AS custom_id, txt AS prompt FROM items WHERE (", [], ["does not parse"]),
    "not a query": ("DELETE FROM items", [], ["must be a SELECT", "DELETE"]),
    "two statements": ("SELECT 1 AS custom_id, 'a' AS prompt; SELECT 2", [], ["one statement, found 2"]),
    "unknown table": ("SELECT id AS custom_id, txt AS prompt FROM nope", [], ["query fails in DuckDB", "nope"]),
    "unknown column": ("SELECT idx AS custom_id, txt AS prompt FROM items", [], ["query fails in DuckDB", "idx"]),
    "bad messages": ("SELECT id AS custom_id, '{\"not\": \"a list\"}' AS messages FROM items WHERE id = 1", [],
                     ["not a non-empty JSON array", "custom_id '1'"]),
    "request over the file limit": ("SELECT id AS custom_id, repeat('x', 5000) AS prompt FROM items WHERE id = 1",
                                    ["--max-bytes-per-shard", "2000"], ["larger than the shard limit of 2,000 bytes", "'1'"]),
    "bad endpoint": ("SELECT id AS custom_id, txt AS prompt FROM items WHERE id = 1", ["--endpoint", "/v1/nope"],
                     ["endpoint", "not supported"]),
    "bad window": ("SELECT id AS custom_id, txt AS prompt FROM items WHERE id = 1", ["--completion-window", "1h"],
                   ["completion_window", "24h"]),
    "reserved param": ("SELECT id AS custom_id, txt AS prompt FROM items WHERE id = 1", ["--param", "stream=true"],
                       ["stream", "cannot be set"]),
}


#: On PostgreSQL: the query-level cases (Postgres judges the query) and a few row rules.
PG_CASES = ("syntax error", "not a query", "two statements", "unknown table", "unknown column", "several problems at once",
            "bad messages")


@pytest.mark.parametrize(("warehouse_kind", "case"),
                         [("duckdb", c) for c in sorted(CASES)] + [("postgres", c) for c in PG_CASES],
                         indirect=["warehouse_kind"])
def test_bad_input_is_refused_before_anything_is_sent(warehouse: Warehouse, case: str) -> None:
    warehouse.sql(SETUP)
    query, flags, fragments = CASES[case]
    if flags == [NO_JOB_MODEL]:
        flags = []  # only the rows' model column names a model
    elif "--model" not in flags:
        flags = ["--model", "gpt-4o-mini", *flags]
    result = warehouse.cli("run", "--name", "bad", *flags, "--query", query, expect=3)
    engine = {"duckdb": "DuckDB", "postgres": "PostgreSQL"}[warehouse.kind]  # the warehouse that ran the query
    for fragment in (f.replace("DuckDB", engine) for f in fragments):
        assert fragment in result.output, result.output
    assert "nothing was uploaded" in result.output or "error:" in result.output
    counters = warehouse.counters()
    assert counters["files_uploaded"] == 0 and counters["batches_created"] == 0
    # No half-written state: no job, no run, no requests, no output table.
    if warehouse.sql("SELECT count(*) FROM duckdb_schemas() WHERE schema_name = 'warehouse_batch'") != [(0,)]:
        assert warehouse.sql("SELECT (SELECT count(*) FROM warehouse_batch.jobs), (SELECT count(*) FROM warehouse_batch.runs),"
                             " (SELECT count(*) FROM warehouse_batch.requests)") == [(0, 0, 0)]
    assert warehouse.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name IN ('bad', 'bad__rows')") == [(0,)]


def test_unknown_job_option_lists_the_valid_ones(warehouse: Warehouse, tmp_path) -> None:
    job = tmp_path / "typo.sql"
    job.write_text("-- name: typo\n-- modle: gpt-4o-mini\nSELECT 1 AS custom_id, 'hi' AS prompt\n")
    result = warehouse.cli("run", str(job), expect=3)
    assert "unknown job option(s): modle" in result.output
    assert "Valid options:" in result.output and "model" in result.output
    assert warehouse.counters()["files_uploaded"] == 0


def test_header_that_is_not_yaml(warehouse: Warehouse, tmp_path) -> None:
    job = tmp_path / "broken.sql"
    job.write_text("-- name: [unclosed\nSELECT 1 AS custom_id, 'hi' AS prompt\n")
    result = warehouse.cli("run", str(job), expect=3)
    assert "header is not valid YAML" in result.output


def test_missing_api_key_is_a_configuration_error(warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    result = warehouse.cli("run", "--name", "nokey", "--model", "m", "--query", "SELECT 1 AS custom_id, 'hi' AS prompt",
                           expect=2)
    assert "OPENAI_API_KEY" in result.output
    assert warehouse.counters()["files_uploaded"] == 0


def test_collect_of_an_unknown_job(warehouse: Warehouse) -> None:
    result = warehouse.cli("collect", "nope", expect=3)
    assert "no job named 'nope'" in result.output
