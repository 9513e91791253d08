"""`flavor="azure"`: Azure OpenAI's paths, auth and limits, with both SDK clients Microsoft shows."""
from __future__ import annotations

from collections.abc import Iterator

import httpx2
import openai
import pytest
from openai import AzureOpenAI, OpenAI

from warehouse_batch.emulator import Emulator, EmulatorConfig
from warehouse_batch.emulator.validation import validate

from .conftest import chat_line, jsonl, read_lines

API_VERSION = "2024-10-21"


@pytest.fixture
def azure() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(flavor="azure")) as emu:
        yield emu


def _legacy(emu: Emulator) -> AzureOpenAI:
    return AzureOpenAI(azure_endpoint=emu.url, api_version=API_VERSION, api_key="azure-key", timeout=10.0)


def _v1(emu: Emulator) -> OpenAI:
    return OpenAI(base_url=emu.url + "/openai/v1/", api_key="azure-key", timeout=10.0)


@pytest.mark.parametrize("make_client", [_legacy, _v1], ids=["AzureOpenAI", "OpenAI-v1"])
def test_batch_round_trip(azure: Emulator, make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(azure)
    lines = [chat_line("a"), {**chat_line("b"), "url": "/chat/completions"}]  # Azure accepts both line urls
    f = client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint="/chat/completions", completion_window="24h")
    assert b.endpoint == "/chat/completions"
    got = client.batches.retrieve(b.id)
    assert got.status == "completed"
    assert sorted(x["custom_id"] for x in read_lines(client, got.output_file_id)) == ["a", "b"]
    # Azure writes an error file even when nothing failed: present and empty.
    assert got.error_file_id and client.files.content(got.error_file_id).content == b""
    assert [x.id for x in client.batches.list()] == [b.id]


def test_paths_are_absent_in_the_openai_flavor(emulator: Emulator) -> None:
    with pytest.raises(openai.NotFoundError):
        _v1(emulator).batches.list()
    with pytest.raises(openai.NotFoundError):
        _legacy(emulator).batches.list()


def test_api_version_is_required_and_checked(azure: Emulator) -> None:
    with httpx2.Client(base_url=azure.url, headers={"api-key": "k"}) as http:
        missing = http.get("/openai/batches")
        unknown = http.get("/openai/batches", params={"api-version": "2019-01-01"})
        ok = http.get("/openai/batches", params={"api-version": API_VERSION})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "MissingApiVersionParameter"
    assert unknown.status_code == 404 and unknown.json() == {"error": {"code": "404", "message": "Resource not found"}}
    assert ok.status_code == 200


def test_api_key_header_or_bearer(azure: Emulator) -> None:
    with httpx2.Client(base_url=azure.url) as http:
        assert http.get("/openai/v1/batches").status_code == 401
        assert http.get("/openai/v1/batches", headers={"api-key": "k"}).status_code == 200
        assert http.get("/openai/v1/batches", headers={"Authorization": "Bearer entra-token"}).status_code == 200
        assert http.get("/v1/batches", headers={"api-key": "k"}).status_code == 200


def test_embeddings_are_refused_for_batch(azure: Emulator) -> None:
    client = _v1(azure)
    f = client.files.create(file=("in.jsonl", jsonl([chat_line("a")])), purpose="batch")
    with pytest.raises(openai.BadRequestError) as err:
        client.batches.create(input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h")
    assert err.value.param == "endpoint"


def test_batches_do_not_expire(azure: Emulator) -> None:
    azure.configure(request_time=1000, completion_window_seconds=60)
    client = _legacy(azure)
    f = client.files.create(file=("in.jsonl", jsonl([chat_line("a"), chat_line("b")])), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint="/chat/completions", completion_window="24h")
    azure.advance(1500)
    assert client.batches.retrieve(b.id).status == "in_progress"
    azure.advance(600)
    assert client.batches.retrieve(b.id).status == "completed"


def test_100000_requests_per_file(azure: Emulator) -> None:
    def codes(n: int) -> set[str]:
        # `{}` lines are cheap to check: the line count is judged before their own faults.
        return {e["code"] for e in validate(b"{}\n" * n, "/v1/chat/completions", azure.engine.config).errors}

    assert "too_many_tasks" not in codes(100_000)
    assert codes(100_001) == {"too_many_tasks"}


def test_500_input_files_per_resource_without_expires_after(azure: Emulator) -> None:
    client = _v1(azure)
    data = jsonl([chat_line("a")])
    for i in range(499):  # in-process, to keep the test quick; the 500th and 501st go through the SDK
        azure.engine.upload(f"{i}.jsonl", "batch", data, None)
    client.files.create(file=("500.jsonl", data), purpose="batch")
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=("501.jsonl", data), purpose="batch")
    assert err.value.code == "quota_exceeded" and "500" in err.value.message
    # With expires_after (Azure: 14–30 days) the cap is 10,000.
    two_weeks = {"anchor": "created_at", "seconds": 1_209_600}
    assert client.files.create(file=("x.jsonl", data), purpose="batch", expires_after=two_weeks).expires_at
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("y.jsonl", data), purpose="batch", expires_after={"anchor": "created_at", "seconds": 3600})
