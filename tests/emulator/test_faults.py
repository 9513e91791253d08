from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from warehouse_batch.emulator import Emulator

from .conftest import chat_line, jsonl, run_batch, upload


def test_429_with_retry_after_is_retried(client: OpenAI, emulator: Emulator) -> None:
    emulator.inject_fault("create_batch", status=429, times=2, retry_after=0.05)
    file_id = upload(client, [chat_line("a")])
    b = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    assert b.status == "validating"
    c = emulator.counters()
    assert c["calls"]["POST /v1/batches"] == 3 and c["retries"] == 2 and c["faults_injected"] == 2
    assert c["batches_created"] == 1 and c["batch_create_calls"] == 1


def test_429_exhausts_retries(client: OpenAI, emulator: Emulator) -> None:
    emulator.inject_fault("retrieve_file", status=429, times=5, retry_after=0.01)
    fid = upload(client, [chat_line("a")])
    with pytest.raises(openai.RateLimitError) as err:
        client.files.retrieve(fid)
    assert err.value.response.headers["retry-after"] == "0.01"
    assert err.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert emulator.counters()["retries"] == 2


def test_500_without_retries(emulator: Emulator) -> None:
    client = OpenAI(api_key="k", base_url=emulator.base_url, max_retries=0)
    emulator.inject_fault("list_batches", status=503)
    with pytest.raises(openai.InternalServerError) as err:
        client.batches.list()
    assert err.value.status_code == 503
    assert set(err.value.body) == {"message", "type", "param", "code"}  # type: ignore[arg-type]
    assert client.batches.list().data == []  # the fault was one-shot


def test_drop_closes_connection_and_sdk_retries(client: OpenAI, emulator: Emulator) -> None:
    b = run_batch(client, [chat_line("a")])
    emulator.inject_fault("retrieve_batch", drop=True)
    assert client.batches.retrieve(b.id).status == "completed"
    assert emulator.counters()["calls"]["GET /v1/batches/{batch_id}"] == 2
    no_retry = OpenAI(api_key="k", base_url=emulator.base_url, max_retries=0)
    emulator.inject_fault("retrieve_batch", drop=True)
    with pytest.raises(openai.APIConnectionError):
        no_retry.batches.retrieve(b.id)


def test_truncated_download(client: OpenAI, emulator: Emulator) -> None:
    data = jsonl([chat_line(f"r{i}") for i in range(4)])
    fid = client.files.create(file=("in.jsonl", data), purpose="batch").id
    emulator.inject_fault("download_file", truncate=True)
    assert client.files.content(fid).content == data[: len(data) // 2]
    assert client.files.content(fid).content == data


def test_delay_then_normal_answer(client: OpenAI, emulator: Emulator) -> None:
    emulator.inject_fault("list_files", delay=0.2)
    assert client.files.list().data == []
    short = OpenAI(api_key="k", base_url=emulator.base_url, max_retries=0, timeout=0.05)
    emulator.inject_fault("list_files", delay=0.5)
    with pytest.raises(openai.APITimeoutError):
        short.files.list()


def test_unknown_fault_operation_rejected(emulator: Emulator) -> None:
    with pytest.raises(ValueError):
        emulator.inject_fault("nope")


def test_counters_track_calls_and_custom_ids(client: OpenAI, emulator: Emulator) -> None:
    run_batch(client, [chat_line("x"), chat_line("y")])
    c = emulator.counters()
    assert c["files_uploaded"] == 1 and c["bytes_uploaded"] > 0
    assert c["requests_received"] == 2 and c["custom_ids_received"] == {"x": 1, "y": 1}
    emulator.reset()
    assert emulator.counters()["calls"] == {}
    assert client.files.list().data == []
