"""Hostile input in a shared warehouse (issue #14): each case is refused with a message that says
how to fix it, the documented exit code, and nothing sent or written — or, for input that is
valid after all (a trailing comment, token arrays), it simply works."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Warehouse, write_job

SETUP = """
CREATE TABLE items AS SELECT i AS id, 'text ' || i AS txt, i * 1.5 AS score, i % 2 = 0 AS even
FROM range(1, 13) t(i)
"""
ONE = "FROM items WHERE id = 1"


def _nothing_sent_or_written(warehouse: Warehouse, job: str = "bad") -> None:
    counters = warehouse.counters()
    assert counters["files_uploaded"] == 0 and counters["batches_created"] == 0
    assert not list(warehouse.db.parent.rglob("*.jsonl*")), "no shard file, not even a temp file"
    assert warehouse.sql(f"SELECT count(*) FROM duckdb_tables() WHERE table_name IN ('{job}', '{job}__rows')") == [(0,)]


# -- 1. rows that cannot be sent ----------------------------------------------------------------
# name: (query, extra flags, fragments of the message)
ROW_CASES = {
    "integer prompt": ("SELECT id AS custom_id, id AS prompt FROM items", [],
                       ["12 row(s) have a prompt of type BIGINT, but prompt takes text",
                        "CAST(x AS VARCHAR) AS prompt", "custom_id '1', '10', '11', '12', '2'", "and 2 more"]),
    "double prompt": (f"SELECT id AS custom_id, score AS prompt {ONE}", [], ["prompt of type DECIMAL", "custom_id '1'"]),
    "boolean prompt": (f"SELECT id AS custom_id, even AS prompt {ONE}", [], ["prompt of type BOOLEAN", "CAST(x AS VARCHAR)"]),
    "list prompt": (f"SELECT id AS custom_id, [txt] AS prompt {ONE}", [], ["prompt of type VARCHAR[]", "custom_id '1'"]),
    "boolean embedding input": (f"SELECT id AS custom_id, even AS input {ONE}", ["--endpoint", "/v1/embeddings"],
                                ["input of type BOOLEAN", "text or a list of texts (VARCHAR[]), or token ids"]),
    "token ids for moderation": (f"SELECT id AS custom_id, [1, 2] AS input {ONE}", ["--endpoint", "/v1/moderations"],
                                 ["input of type INTEGER[]", "takes text or a list of texts (VARCHAR[]) (cast"]),
    "empty text in an input list": (f"SELECT id AS custom_id, [txt, ''] AS input {ONE}", ["--endpoint", "/v1/embeddings"],
                                    ["NULL or empty item in it: custom_id '1'"]),
    "json message with an unknown role": (
        f"""SELECT id AS custom_id, '[{{"role": "robot", "content": "hi"}}]' AS messages {ONE}""", [],
        ["1 row(s) have a message without a valid role (one of system, developer, user, assistant, tool, function)",
         "custom_id '1'"]),
    "json message without a role": (f"""SELECT id AS custom_id, '[{{"content": "hi"}}]' AS messages {ONE}""", [],
                                    ["without a valid role"]),
    "json message that is not an object": (f"""SELECT id AS custom_id, '["hi"]' AS messages {ONE}""", [],
                                           ["without a valid role"]),
    "json message without content": (
        f"""SELECT id AS custom_id, '[{{"role": "user"}}]' AS messages FROM items WHERE id IN (1, 2)""", [],
        ["2 row(s) have a message without content (missing, NULL or empty): custom_id '1', '2'"]),
    "json message with empty content": (f"""SELECT id AS custom_id, '[{{"role": "user", "content": " "}}]' AS messages {ONE}""",
                                        [], ["without content"]),
    "struct message with an unknown role": (f"SELECT id AS custom_id, [{{'role': 'robot', 'content': txt}}] AS messages {ONE}",
                                            [], ["without a valid role", "custom_id '1'"]),
    "struct message with NULL content": (
        f"SELECT id AS custom_id, [{{'role': 'user', 'content': NULL::VARCHAR}}] AS messages {ONE}", [],
        ["without content", "custom_id '1'"]),
    "responses message with a chat-only role": (
        f"""SELECT id AS custom_id, '[{{"role": "tool", "content": "x"}}]' AS messages {ONE}""",
        ["--endpoint", "/v1/responses"], ["(one of system, developer, user, assistant)"]),
    "messages that are not json": (
        """SELECT id AS custom_id, CASE WHEN id = 2 THEN '[{"role": "user", "content": "ok"}]' ELSE 'hello' END AS messages
           FROM items WHERE id <= 3""", [],
        ["2 row(s) have messages that are not a non-empty JSON array of chat messages (or not JSON at all): custom_id '1', '3'"]),
    "messages of a scalar type": (f"SELECT id AS custom_id, id AS messages {ONE}", [],
                                  ["messages of type BIGINT, but messages takes JSON text or a list of STRUCT(role, content)"]),
    "body that is not json": (f"SELECT id AS custom_id, 'model=gpt-4o-mini' AS body {ONE}", [],
                              ["1 row(s) have a body that is not a JSON object (or not JSON at all): custom_id '1'"]),
}


@pytest.mark.parametrize("case", sorted(ROW_CASES))
def test_rows_that_cannot_be_sent_are_named_before_anything_is_written(warehouse: Warehouse, case: str) -> None:
    warehouse.sql(SETUP)
    query, flags, fragments = ROW_CASES[case]
    result = warehouse.cli("run", "--name", "bad", "--model", "gpt-4o-mini", *flags, "--query", query, expect=3)
    assert "nothing was uploaded" in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output
    assert "Traceback" not in result.output and "Binder Error" not in result.output
    _nothing_sent_or_written(warehouse)


# Valid by the OpenAI spec: a token-id array is one input (one vector), a list of token arrays several;
# an assistant message that only calls tools has no content.
VALID_CASES = {
    "token ids": ("/v1/embeddings", "SELECT 1 AS custom_id, [1212, 318, 257] AS input", "embedding", "FLOAT[]"),
    "lists of token ids": ("/v1/embeddings", "SELECT 1 AS custom_id, [[1, 2], [3]] AS input", "embeddings", "FLOAT[][]"),
    "assistant tool call": (
        "/v1/chat/completions",
        """SELECT 1 AS custom_id, '[{"role": "user", "content": "weather?"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]' AS messages""", "content", "VARCHAR"),
}


@pytest.mark.parametrize("case", sorted(VALID_CASES))
def test_inputs_the_spec_allows_are_sent(warehouse: Warehouse, case: str) -> None:
    endpoint, query, column, column_type = VALID_CASES[case]
    model = "text-embedding-3-small" if endpoint == "/v1/embeddings" else "gpt-4o-mini"
    warehouse.cli("run", "--name", "ok", "--model", model, "--endpoint", endpoint, "--query", query,
                  "--wait", "--poll-interval", "0.05")
    assert warehouse.sql("SELECT status FROM ok") == [("completed",)]
    assert dict(warehouse.sql("SELECT column_name, column_type FROM (DESCRIBE ok)"))[column] == column_type


# -- 2. a query ending in a comment or a semicolon ------------------------------------------------
QUERY_TAILS = {
    "line comment": "FROM items -- all rows",
    "semicolon": "FROM items;",
    "semicolon then comment": "FROM items; -- done",
    "block comment": "FROM items /* every row */ ;",
    "comment on its own line": "FROM items\n-- the end\n",
    "quoted dashes stay": "FROM items WHERE txt <> '-- not a comment;' -- but this is",
}


@pytest.mark.parametrize("case", sorted(QUERY_TAILS))
def test_a_trailing_comment_or_semicolon_is_not_part_of_the_query(warehouse: Warehouse, tmp_path: Path, case: str) -> None:
    warehouse.sql(SETUP)
    tail = QUERY_TAILS[case]
    base = "SELECT id AS custom_id, txt AS prompt "
    # The same rows without the tail were answered before: the tail changes no request hash.
    warehouse.cli("run", "--name", "plain", "--model", "gpt-4o-mini", "--query", base + "FROM items",
                  "--wait", "--poll-interval", "0.05")
    job = write_job(tmp_path / "tail.sql", {"name": "tail", "model": "gpt-4o-mini"}, base + tail)
    report = warehouse.cli_json("run", str(job), "--wait", "--poll-interval", "0.05")[0]
    assert report["statuses"] == {"completed": 12}
    assert warehouse.counters()["files_uploaded"] == 1, "every answer of the second job came from the cache"
    assert warehouse.sql("SELECT count(*) FROM tail t JOIN plain p USING (custom_id, request_hash)") == [(12,)]
    # --query and plan take the same text.
    warehouse.cli("plan", "--name", "tail2", "--model", "gpt-4o-mini", "--query", base + tail)


# -- 3. a full disk while writing shards ---------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: a real ENOSPC from the kernel, not a simulated one."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_while_writing_shards_is_a_clear_error_and_the_run_resumes(
        warehouse: Warehouse, small_disk: Path) -> None:
    warehouse.sql("CREATE TABLE big_texts AS SELECT i AS id, repeat('x', 500) || i AS txt FROM range(1000) t(i)")
    args = ["run", "--name", "big", "--model", "gpt-4o-mini", "--work-dir", str(small_disk),
            "--query", "SELECT id AS custom_id, txt AS prompt FROM big_texts"]
    result = warehouse.cli(*args, expect=2)
    message = " ".join(result.output.split())
    assert f"No space left on device writing shards to {small_disk / 'big' / 'shards'}" in message, message
    assert "MB needed" in message and "MB free) — free space or pass --work-dir on a larger disk" in message
    assert "Traceback" not in result.output and "ResourceInUse" not in result.output
    assert list(small_disk.rglob("*.jsonl*")) == [], "temp and unrecorded shard files are removed"
    assert warehouse.sql("SELECT count(*) FROM warehouse_batch.batches") == [(0,)]
    assert warehouse.counters()["files_uploaded"] == 0
    # Free space, run the same command: every request is sent exactly once.
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    warehouse.cli(*args, "--wait", "--poll-interval", "0.05")
    assert warehouse.sql("SELECT status, count(*) FROM big GROUP BY ALL") == [("completed", 1000)]
    counters = warehouse.counters()
    assert counters["files_uploaded"] == 1 and counters["batches_created"] == 1
    assert warehouse.sql("SELECT sum(line_count) FROM warehouse_batch.batches") == [(1000,)]


# -- 4. a bad prices file ------------------------------------------------------------------------
# name: (file content, or None for no file; fragments of the message)
PRICE_CASES = {
    "missing file": (None, ["does not exist"]),
    "not json": ("models: gpt-4o-mini", ["is not JSON (line 1, column 1"]),
    "a list": ("[1, 2]", ["has the wrong shape; expected {\"batch_discount\""]),
    "models not a mapping": ('{"models": ["gpt-4o-mini"]}', ["has the wrong shape"]),
    "price not a mapping": ('{"models": {"gpt-4o-mini": 0.15}}', ["model 'gpt-4o-mini' needs a mapping like"]),
    "negative price": ('{"models": {"gpt-4o-mini": {"input": -0.15, "output": 0.6}}}',
                       ["model 'gpt-4o-mini' needs 'input' as a number ≥ 0 (USD per 1M tokens), got -0.15"]),
    "non-numeric price": ('{"models": {"gpt-4o-mini": {"input": 0.15, "output": "cheap"}}}', ["needs 'output' as a number"]),
    "boolean price": ('{"models": {"gpt-4o-mini": {"input": true}}}', ["needs 'input' as a number"]),
    "bad discount": ('{"batch_discount": 50, "models": {}}', ["batch_discount must be a number above 0 and at most 1, got 50"]),
}


@pytest.mark.parametrize("via", ["flag", "env"])
@pytest.mark.parametrize("case", sorted(PRICE_CASES))
def test_a_bad_prices_file_is_named_with_its_problem(warehouse: Warehouse, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, case: str, via: str) -> None:
    content, fragments = PRICE_CASES[case]
    prices = tmp_path / "my prices.json"
    if content is not None:
        prices.write_text(content, encoding="utf-8")
    flags = ["--prices", str(prices)] if via == "flag" else []
    if via == "env":
        monkeypatch.setenv("WAREHOUSE_BATCH_PRICES", str(prices))
    result = warehouse.cli("run", "--name", "priced", "--model", "gpt-4o-mini", *flags,
                           "--query", "SELECT 1 AS custom_id, 'hi' AS prompt", expect=2)
    message = " ".join(result.output.split())
    assert f"prices file {prices}" in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert "Traceback" not in result.output
    _nothing_sent_or_written(warehouse, "priced")


# -- 5. --json prints an error object ------------------------------------------------------------
# name: (argv, exit code, error type, fragment of the message)
JSON_ERROR_CASES = {
    "invalid rows": (["run", "--name", "bad", "--model", "m", "--query", "SELECT 1 AS custom_id, 5 AS prompt"],
                     3, "ValidationError", "prompt of type INTEGER"),
    "bad prices": (["plan", "--name", "bad", "--model", "m", "--prices", "/nonexistent/prices.json",
                    "--query", "SELECT 1 AS custom_id, 'hi' AS prompt"], 2, "ConfigError", "does not exist"),
    "unknown job": (["collect", "nope"], 3, "NotFoundError", "no job named 'nope'"),
    "query that does not parse": (["plan", "--name", "bad", "--model", "m", "--query", "SELECT FROM WHERE ("],
                                  3, "JobError", "does not parse"),
}


@pytest.mark.parametrize("case", sorted(JSON_ERROR_CASES))
def test_json_mode_prints_an_error_object_on_failure(warehouse: Warehouse, case: str) -> None:
    argv, code, kind, fragment = JSON_ERROR_CASES[case]
    result = warehouse.cli(*argv, "--json", expect=code)
    error = json.loads(result.stdout)["error"]
    assert error["type"] == kind and error["exit_code"] == code and fragment in error["message"]
    assert set(error) == {"type", "message", "exit_code"}
    assert "error:" in result.stderr and fragment in " ".join(result.stderr.split()), "humans still get the message"
    assert warehouse.counters()["files_uploaded"] == 0


def test_markup_in_a_custom_id_is_printed_as_is(warehouse: Warehouse) -> None:
    result = warehouse.cli("run", "--name", "bad", "--model", "m", "--query",
                           "SELECT '[bold]x[/]' AS custom_id, '' AS prompt", expect=3)
    assert "custom_id '[bold]x[/]'" in result.output

