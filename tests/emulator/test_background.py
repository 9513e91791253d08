"""Batch creation answers at once; parsing, validation and answers are prepared by a worker thread."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from warehouse_batch.emulator import Emulator, EmulatorConfig
from warehouse_batch.emulator import engine as engine_module

from .conftest import CHAT, chat_line, run_batch, upload


@pytest.fixture
def held_prepare(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Block the background preparation until the returned event is set."""
    release = threading.Event()
    real = engine_module.prepare

    def blocked(*args: Any, **kwargs: Any) -> Any:
        assert release.wait(10), "test forgot to release the preparation"
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_module, "prepare", blocked)
    yield release
    release.set()


def test_create_answers_while_preparation_has_not_run(client: OpenAI, emulator: Emulator,
                                                      held_prepare: threading.Event) -> None:
    batch = run_batch(client, [chat_line("a"), chat_line("b")])
    assert batch.status == "validating"  # answered although the input was not even parsed yet
    # File calls do not wait for the pending batch either.
    assert upload(client, [chat_line("c")]).startswith("file-")
    held_prepare.set()
    got = client.batches.retrieve(batch.id)  # delays 0: the first retrieve still sees the end state
    assert got.status == "completed"
    assert got.request_counts is not None and got.request_counts.completed == 2
    assert emulator.counters()["requests_received"] == 2


def test_large_batch_created_at_once_then_completed(client: OpenAI, emulator: Emulator) -> None:
    n = 50_000
    emulator.configure(validation_delay=10, time_scale=0)
    lines = [chat_line(f"r{i}", f"q{i}") for i in range(n)]
    file_id = client.files.create(file=("big.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode()),
                                  purpose="batch").id
    del lines
    batch = client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
    assert batch.status == "validating"
    # Before validation_delay has passed a poll answers at once, still validating.
    assert client.batches.retrieve(batch.id).status == "validating"
    emulator.advance(10)
    got = client.batches.retrieve(batch.id)
    assert got.status == "completed"
    assert got.request_counts is not None
    assert (got.request_counts.total, got.request_counts.completed, got.request_counts.failed) == (n, n, 0)
    assert got.in_progress_at == batch.created_at + 10  # event times are unchanged by the background work
    out = client.files.content(got.output_file_id or "").text.splitlines()
    assert len(out) == n
    assert emulator.counters()["requests_received"] == n


def test_unknown_file_is_created_then_failed(client: OpenAI) -> None:
    batch = client.batches.create(input_file_id="file-nope", endpoint=CHAT, completion_window="24h")
    assert batch.status == "validating"
    got = client.batches.retrieve(batch.id)
    assert got.status == "failed" and got.errors is not None and got.errors.data
    assert got.errors.data[0].param == "file_id"


def test_cancel_while_preparing(client: OpenAI, emulator: Emulator, held_prepare: threading.Event) -> None:
    emulator.configure(validation_delay=5, time_scale=0)
    batch = run_batch(client, [chat_line("a"), chat_line("b")])
    assert client.batches.cancel(batch.id).status == "cancelling"  # answered while the input is unparsed
    held_prepare.set()
    got = client.batches.retrieve(batch.id)
    assert got.status == "cancelled"
    assert got.request_counts is not None
    assert (got.request_counts.total, got.request_counts.completed, got.request_counts.failed) == (2, 0, 2)
    assert got.error_file_id and got.output_file_id is None


def test_restart_finishes_a_batch_whose_preparation_never_ran(tmp_path: Path,
                                                             held_prepare: threading.Event) -> None:
    config = EmulatorConfig(state_dir=str(tmp_path / "state"))
    with Emulator(config) as emu:
        client = OpenAI(api_key="k", base_url=emu.base_url, timeout=10.0)
        batch = run_batch(client, [chat_line("a"), chat_line("b"), chat_line("c")])
        assert batch.status == "validating"
    held_prepare.set()  # the old engine's worker finishes into the stopped emulator; the new one redoes it
    with Emulator(config) as emu2:
        client = OpenAI(api_key="k", base_url=emu2.base_url, timeout=10.0)
        got = client.batches.retrieve(batch.id)
        assert got.status == "completed"
        assert got.request_counts is not None and got.request_counts.completed == 3


def test_reset_drops_pending_work(client: OpenAI, emulator: Emulator, held_prepare: threading.Event) -> None:
    batch = run_batch(client, [chat_line("a")])
    emulator.reset()
    held_prepare.set()
    assert emulator.counters()["requests_received"] == 0
    assert client.batches.list().data == []
    assert batch.status == "validating"
