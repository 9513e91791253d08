from __future__ import annotations

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion

from warehouse_batch.emulator import Emulator

from .conftest import CHAT, chat_line, read_lines, run_batch, upload


def test_create_then_completed_with_counts_usage_and_line_shape(client: OpenAI, emulator: Emulator) -> None:
    lines = [chat_line(f"r{i}", f"question {i}") for i in range(3)] + [chat_line("bad", "boom [[emulator:error_400]]")]
    created = run_batch(client, lines, metadata={"job": "t1"})
    assert created.status == "validating"
    assert created.request_counts is not None and created.request_counts.total == 0
    assert created.expires_at == created.created_at + 86400
    assert created.metadata == {"job": "t1"}
    assert created.id.startswith("batch_") and len(created.id) == len("batch_") + 32

    done = client.batches.retrieve(created.id)  # all delays are 0: done on the first poll
    assert done.status == "completed"
    assert done.model == "gpt-4o-mini"
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (4, 3, 1)
    for ts in (done.in_progress_at, done.finalizing_at, done.completed_at):
        assert ts is not None and ts >= done.created_at
    assert done.failed_at is None and done.cancelled_at is None and done.errors is None

    out = read_lines(client, done.output_file_id)
    assert sorted(o["custom_id"] for o in out) == ["r0", "r1", "r2"]
    first = out[0]
    assert set(first) == {"id", "custom_id", "response", "error"}
    assert first["id"].startswith("batch_req_") and first["error"] is None
    assert set(first["response"]) == {"status_code", "request_id", "body"}
    assert first["response"]["status_code"] == 200 and len(first["response"]["request_id"]) == 32
    body = ChatCompletion.model_validate(first["response"]["body"])
    assert body.object == "chat.completion" and body.choices[0].finish_reason == "stop"
    assert body.choices[0].message.refusal is None

    usage = done.usage
    assert usage is not None
    assert usage.input_tokens == sum(o["response"]["body"]["usage"]["prompt_tokens"] for o in out)
    assert usage.output_tokens == sum(o["response"]["body"]["usage"]["completion_tokens"] for o in out)
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens

    errors = read_lines(client, done.error_file_id)
    assert len(errors) == 1
    assert errors[0]["custom_id"] == "bad" and errors[0]["error"] is None
    assert errors[0]["response"]["status_code"] == 400
    assert errors[0]["response"]["body"]["error"]["code"] == "context_length_exceeded"

    for fid, suffix in ((done.output_file_id, "_output.jsonl"), (done.error_file_id, "_error.jsonl")):
        meta = client.files.retrieve(fid)  # type: ignore[arg-type]
        assert meta.purpose == "batch_output" and meta.filename == f"{done.id}{suffix}"


def test_no_failures_means_no_error_file(client: OpenAI) -> None:
    b = client.batches.retrieve(run_batch(client, [chat_line("a")]).id)
    assert b.status == "completed" and b.output_file_id and b.error_file_id is None


def test_counts_move_with_the_clock(client: OpenAI, emulator: Emulator) -> None:
    emulator.configure(validation_delay=10, request_time=5, finalize_delay=20)
    b = run_batch(client, [chat_line(f"r{i}") for i in range(4)])
    assert client.batches.retrieve(b.id).status == "validating"
    emulator.advance(10)
    b1 = client.batches.retrieve(b.id)
    assert b1.status == "in_progress" and b1.request_counts.total == 4 and b1.request_counts.completed == 0  # type: ignore[union-attr]
    emulator.advance(10)
    assert client.batches.retrieve(b.id).request_counts.completed == 2  # type: ignore[union-attr]
    emulator.advance(10)
    b2 = client.batches.retrieve(b.id)
    assert b2.status == "finalizing" and b2.request_counts.completed == 4 and b2.output_file_id is None  # type: ignore[union-attr]
    emulator.advance(20)
    b3 = client.batches.retrieve(b.id)
    assert b3.status == "completed"
    assert b3.in_progress_at - b3.created_at in (10, 11)  # type: ignore[operator]
    assert b3.completed_at - b3.finalizing_at == 20  # type: ignore[operator]


def test_shuffle_output_changes_order_but_not_content(client: OpenAI, emulator: Emulator) -> None:
    lines = [chat_line(f"r{i:02d}", f"q{i}") for i in range(30)]
    plain = read_lines(client, client.batches.retrieve(run_batch(client, lines).id).output_file_id)
    emulator.configure(shuffle_output=True)
    shuffled = read_lines(client, client.batches.retrieve(run_batch(client, lines).id).output_file_id)
    assert [o["custom_id"] for o in plain] == [f"r{i:02d}" for i in range(30)]
    assert [o["custom_id"] for o in shuffled] != [o["custom_id"] for o in plain]
    by_id = {o["custom_id"]: o["response"]["body"]["choices"] for o in plain}
    assert all(by_id[o["custom_id"]] == o["response"]["body"]["choices"] for o in shuffled)  # deterministic answers


def test_list_batches_newest_first_with_cursor(client: OpenAI) -> None:
    file_id = upload(client, [chat_line("a")])
    ids = [client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h").id for _ in range(5)]
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2]
    assert page.has_more is True
    assert [b.id for b in client.batches.list(limit=2)] == ids[::-1]  # SDK follows after=last id
    last = client.batches.list(limit=2, after=ids[1])
    assert [b.id for b in last.data] == [ids[0]] and last.has_more is False


def test_sync_create_errors(client: OpenAI) -> None:
    file_id = upload(client, [chat_line("a")])
    with pytest.raises(openai.BadRequestError) as err:
        client.batches.create(input_file_id=file_id, endpoint="/v1/invalid/endpoint", completion_window="24h")  # type: ignore[arg-type]
    assert err.value.param == "endpoint" and err.value.code == "invalid_value"  # type: ignore[attr-defined]
    with pytest.raises(openai.BadRequestError) as err:
        client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="48h")  # type: ignore[arg-type]
    assert err.value.param == "completion_window"  # type: ignore[attr-defined]
    with pytest.raises(openai.BadRequestError) as err:
        client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h", metadata={"tags": ["x"]})  # type: ignore[dict-item]
    assert err.value.param == "metadata.tags" and err.value.code == "invalid_type"  # type: ignore[attr-defined]
    assert "expected a string, but got an array" in err.value.message
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h",
                              metadata={f"k{i}": "v" for i in range(17)})
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h", metadata={"k": "v" * 513})
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h", metadata={"k" * 65: "v"})


def test_unknown_batch_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.batches.retrieve("batch_nope")
    assert err.value.body == {"message": "No such Batch object: batch_nope", "type": "invalid_request_error", "param": "id", "code": None}
    with pytest.raises(openai.NotFoundError):
        client.batches.cancel("batch_nope")


def test_output_expires_after_sets_output_file_expiry(client: OpenAI) -> None:
    b = run_batch(client, [chat_line("a")], output_expires_after={"anchor": "created_at", "seconds": 3600})
    done = client.batches.retrieve(b.id)
    out = client.files.retrieve(done.output_file_id)  # type: ignore[arg-type]
    assert out.expires_at == out.created_at + 3600


def test_embeddings_batch(client: OpenAI) -> None:
    lines = [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": "text-embedding-3-small", "input": f"text {i}", "dimensions": 8}} for i in range(3)]
    b = client.batches.retrieve(run_batch(client, lines, endpoint="/v1/embeddings").id)
    assert b.status == "completed"
    out = read_lines(client, b.output_file_id)
    vec = out[0]["response"]["body"]["data"][0]["embedding"]
    assert len(vec) == 8 and abs(sum(v * v for v in vec) - 1) < 1e-6
