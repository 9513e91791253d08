from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from warehouse_batch.emulator import Emulator

from .conftest import chat_line, read_lines, run_batch


def test_cancel_keeps_partial_results(client: OpenAI, emulator: Emulator) -> None:
    emulator.configure(request_time=10, cancel_delay=30)
    b = run_batch(client, [chat_line(f"r{i}") for i in range(5)])
    emulator.advance(25)  # r0, r1 done
    cancelling = client.batches.cancel(b.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    assert cancelling.request_counts.completed == 2  # type: ignore[union-attr]
    assert client.batches.cancel(b.id).status == "cancelling"  # idempotent
    emulator.advance(29)
    assert client.batches.retrieve(b.id).status == "cancelling"
    emulator.advance(1)
    done = client.batches.retrieve(b.id)
    assert done.status == "cancelled" and done.cancelled_at - done.cancelling_at == 30  # type: ignore[operator]
    assert client.batches.cancel(b.id).status == "cancelled"  # still idempotent
    out = read_lines(client, done.output_file_id)
    assert [o["custom_id"] for o in out] == ["r0", "r1"]
    errors = read_lines(client, done.error_file_id)
    assert [e["custom_id"] for e in errors] == ["r2", "r3", "r4"]
    assert all(e["response"] is None and e["error"]["code"] == "batch_cancelled" for e in errors)
    assert done.request_counts.completed == 2 and done.request_counts.failed == 3  # type: ignore[union-attr]
    assert done.usage is not None and done.usage.input_tokens > 0
    assert emulator.counters()["batches_cancelled"] == 1


def test_cancel_while_validating_runs_nothing(client: OpenAI, emulator: Emulator) -> None:
    emulator.configure(validation_delay=100)
    b = run_batch(client, [chat_line("a"), chat_line("b")])
    assert client.batches.cancel(b.id).status == "cancelling"
    done = client.batches.retrieve(b.id)
    assert done.status == "cancelled" and done.output_file_id is None
    assert [e["error"]["code"] for e in read_lines(client, done.error_file_id)] == ["batch_cancelled"] * 2


def test_cancel_completed_is_409_and_not_retried(client: OpenAI, emulator: Emulator) -> None:
    b = run_batch(client, [chat_line("a")])
    assert client.batches.retrieve(b.id).status == "completed"
    with pytest.raises(openai.ConflictError) as err:
        client.batches.cancel(b.id)
    assert err.value.status_code == 409
    assert err.value.response.headers["x-should-retry"] == "false"
    assert err.value.body["message"] == "Cannot cancel a batch with status 'completed'."  # type: ignore[index]
    assert emulator.counters()["calls"]["POST /v1/batches/{batch_id}/cancel"] == 1  # no SDK retry


def test_expiry_keeps_finished_requests(client: OpenAI, emulator: Emulator) -> None:
    emulator.configure(request_time=1000, completion_window_seconds=3500)
    b = run_batch(client, [chat_line(f"r{i}") for i in range(5)])
    emulator.advance(3000)
    assert client.batches.retrieve(b.id).status == "in_progress"
    emulator.advance(600)
    done = client.batches.retrieve(b.id)
    assert done.status == "expired" and done.expired_at == done.expires_at
    assert [o["custom_id"] for o in read_lines(client, done.output_file_id)] == ["r0", "r1", "r2"]
    errors = read_lines(client, done.error_file_id)
    assert [e["custom_id"] for e in errors] == ["r3", "r4"]
    assert errors[0] == {
        "id": errors[0]["id"], "custom_id": "r3", "response": None,
        "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."},
    }
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(b.id)


def test_default_24h_window_expiry(client: OpenAI, emulator: Emulator) -> None:
    emulator.configure(validation_delay=90000)
    b = run_batch(client, [chat_line("a")])
    emulator.advance(86400)
    done = client.batches.retrieve(b.id)
    assert done.status == "expired" and done.output_file_id is None
    assert [e["error"]["code"] for e in read_lines(client, done.error_file_id)] == ["batch_expired"]
