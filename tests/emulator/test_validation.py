"""Every §4 validation error code, with its 1-based physical line."""
from __future__ import annotations

import json
from typing import Any

from openai import OpenAI

from warehouse_batch.emulator import Emulator, EmulatorConfig
from warehouse_batch.emulator.validation import validate

from .conftest import CHAT, chat_line, upload


def _fail(client: OpenAI, lines: list[Any], endpoint: str = CHAT) -> list[tuple[str | None, int | None, str | None]]:
    b = client.batches.create(input_file_id=upload(client, lines), endpoint=endpoint, completion_window="24h")  # type: ignore[arg-type]
    b = client.batches.retrieve(b.id)
    assert b.status == "failed" and b.failed_at is not None
    assert b.output_file_id is None and b.error_file_id is None and b.in_progress_at is None
    assert b.errors is not None and b.errors.object == "list"
    return [(e.code, e.line, e.param) for e in b.errors.data]


def test_invalid_json_lines_are_all_listed(client: OpenAI) -> None:
    lines = [chat_line("a"), "{not json", chat_line("b"), "[1, 2]", chat_line("c")]
    assert _fail(client, lines) == [("invalid_json_line", 2, None), ("invalid_json_line", 4, None)]


def test_blank_lines_keep_physical_numbering(client: OpenAI) -> None:
    lines = [chat_line("a"), "", "{oops", chat_line("b")]
    assert _fail(client, lines) == [("invalid_json_line", 3, None)]


def test_missing_required_parameters(client: OpenAI) -> None:
    good = chat_line("a")
    no_cid = {k: v for k, v in good.items() if k != "custom_id"}
    no_body = {**chat_line("b")}
    del no_body["body"]
    assert _fail(client, [good, no_cid, no_body]) == [
        ("missing_required_parameter", 2, "custom_id"),
        ("missing_required_parameter", 3, "body"),
    ]


def test_streaming_url_model_and_messages(client: OpenAI) -> None:
    stream = chat_line("s", stream=True)
    wrong_url = {**chat_line("u"), "url": "/v1/embeddings"}
    no_model = chat_line("m")
    del no_model["body"]["model"]
    no_messages = chat_line("n")
    del no_messages["body"]["messages"]
    errors = _fail(client, [chat_line("ok"), stream, wrong_url, no_model, no_messages])
    assert errors == [
        ("streaming_unsupported", 2, "body.stream"),
        ("invalid_url", 3, "url"),
        ("invalid_request", 4, "body.model"),
        ("invalid_request", 5, "body.messages"),
    ]


def test_duplicate_custom_id_and_model_mismatch(client: OpenAI) -> None:
    lines = [chat_line("a"), chat_line("b"), chat_line("a"), chat_line("c", model="gpt-4o")]
    assert _fail(client, lines) == [("duplicate_custom_id", 3, "custom_id"), ("model_mismatch", 4, "body.model")]


def test_model_not_found(client: OpenAI, emulator: Emulator) -> None:
    emulator.configure(supported_models=("gpt-4o-mini",))
    lines = [chat_line("a"), chat_line("b", model="nonexistent-model-xyz")]
    assert _fail(client, lines) == [("model_not_found", 2, "body.model")]


def test_too_many_tasks_and_too_large(client: OpenAI, emulator: Emulator) -> None:
    emulator.configure(max_requests_per_file=3)
    assert [e[0] for e in _fail(client, [chat_line(str(i)) for i in range(4)])] == ["too_many_tasks"]
    emulator.configure(max_requests_per_file=50000, max_file_bytes=100)
    assert [e[0] for e in _fail(client, [chat_line(str(i)) for i in range(4)])] == ["file_too_large"]


def test_empty_file() -> None:
    # Uploads already refuse empty batch files (400), so an empty input can only reach
    # batch validation through a store that skipped that check: test the check itself.
    v = validate(b"\n \n", CHAT, EmulatorConfig())
    assert [(e["code"], e["line"]) for e in v.errors] == [("empty_file", None)]


def test_unknown_input_file_fails_later(client: OpenAI) -> None:
    b = client.batches.create(input_file_id="file-doesnotexist", endpoint=CHAT, completion_window="24h")
    assert b.status == "validating"
    assert client.batches.retrieve(b.id).status == "failed"
    errors = client.batches.retrieve(b.id).errors
    assert errors is not None
    e = errors.data[0]
    assert (e.code, e.line, e.param) == ("invalid_request", None, "file_id")
    assert "Cannot find file file-doesnotexist" in (e.message or "")


def test_token_limit_exceeded(client: OpenAI, emulator: Emulator) -> None:
    body_tokens = -(-len(json.dumps(chat_line("x")["body"])) // 4)
    emulator.configure(enqueued_token_limit=body_tokens * 3, validation_delay=1, request_time=100)
    first = client.batches.create(input_file_id=upload(client, [chat_line("a"), chat_line("b")]), endpoint=CHAT, completion_window="24h")
    emulator.advance(1)
    assert client.batches.retrieve(first.id).status == "in_progress"
    second = client.batches.create(input_file_id=upload(client, [chat_line("c"), chat_line("d")]), endpoint=CHAT, completion_window="24h")
    emulator.advance(1)
    failed = client.batches.retrieve(second.id)
    assert failed.status == "failed"
    assert [(e.code, e.line) for e in failed.errors.data] == [("token_limit_exceeded", None)]  # type: ignore[union-attr]
    # Another model has its own quota.
    third = client.batches.create(input_file_id=upload(client, [chat_line("e", model="gpt-4o")]), endpoint=CHAT, completion_window="24h")
    emulator.advance(1)
    assert client.batches.retrieve(third.id).status == "in_progress"
