"""Production's rules the emulator enforces (issue #11): auth, models, quota, spurious misses,
retention and embedding limits, each driven through the real `openai` SDK (raw httpx2 where the
SDK cannot express the request)."""
from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pytest
from openai import OpenAI

from warehouse_batch.emulator import Emulator

from .conftest import AUTH, CHAT, chat_line, read_lines, run_batch, upload

EMB = "/v1/embeddings"


def emb_line(custom_id: str, inputs: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": EMB,
            "body": {"model": "text-embedding-3-small", "input": inputs}}


# ------------------------------------------------------------------ authentication

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}, {"api-key": "k"}])
def test_v1_without_a_bearer_key_is_401(emulator: Emulator, headers: dict[str, str]) -> None:
    with httpx2.Client(base_url=emulator.base_url, headers=headers) as http:
        r = http.get("/batches")
    assert r.status_code == 401
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert r.headers["x-request-id"]
    with httpx2.Client(base_url=emulator.url) as http:  # admin needs no key
        assert http.get("/_emulator/health").status_code == 200


def test_exact_api_key(emulator: Emulator) -> None:
    emulator.configure(api_key="sk-the-right-one")
    with pytest.raises(openai.AuthenticationError) as err:
        OpenAI(api_key="sk-a-wrong-key-123", base_url=emulator.base_url, max_retries=0).batches.list()
    assert err.value.code == "invalid_api_key"
    assert "sk-a-wrong-key-123" not in str(err.value)  # keys are masked, never echoed
    assert OpenAI(api_key="sk-the-right-one", base_url=emulator.base_url).batches.list().data == []


def test_auth_can_be_turned_off(emulator: Emulator) -> None:
    emulator.configure(require_auth=False)
    with httpx2.Client(base_url=emulator.base_url) as http:
        assert http.get("/batches").status_code == 200


# ------------------------------------------------------------------ models

def test_unknown_model_fails_per_line(client: OpenAI, emulator: Emulator) -> None:
    emulator.configure(supported_models=["@openai"])
    b = run_batch(client, [chat_line("a", model="gpt-4o-mini-2024-07-18"), chat_line("b", model="gpt-4o-mini-2024-07-18"),
                           chat_line("c", model="gpt-4o-typo")])
    got = client.batches.retrieve(b.id)
    assert got.status == "failed"
    assert [(e.code, e.line, e.param) for e in got.errors.data] == [("model_not_found", 3, "body.model")]
    assert "gpt-4o-typo" in got.errors.data[0].message


def test_snapshots_fine_tunes_and_any_model(client: OpenAI, emulator: Emulator) -> None:
    emulator.configure(supported_models=["gpt-4o-mini"])
    for model in ("gpt-4o-mini-2024-07-18", "ft:gpt-4o-mini:org:tuned:abc123"):
        assert client.batches.retrieve(run_batch(client, [chat_line("a", model=model)]).id).status == "completed"
    emulator.configure(supported_models=["*"])
    assert client.batches.retrieve(run_batch(client, [chat_line("a", model="my-finetune")]).id).status == "completed"


# ------------------------------------------------------------------ enqueued-token quota

def _tokens_of_one_line() -> int:
    return -(-len(json.dumps(chat_line("x")["body"])) // 4)


def test_quota_async_fails_the_second_batch_until_the_first_is_terminal(client: OpenAI, emulator: Emulator) -> None:
    emulator.configure(enqueued_token_limit=_tokens_of_one_line() * 3, request_time=100)
    first = run_batch(client, [chat_line("a"), chat_line("b")])
    assert client.batches.retrieve(first.id).status == "in_progress"
    second = run_batch(client, [chat_line("c"), chat_line("d")])
    assert second.status == "validating"  # create succeeds ...
    failed = client.batches.retrieve(second.id)
    assert failed.status == "failed"  # ... then the batch fails, nothing run, nothing billed
    err = failed.errors.data[0]
    assert (err.code, err.line) == ("token_limit_exceeded", None)
    assert failed.output_file_id is None and failed.usage is None
    client.batches.cancel(first.id)  # cancelling still holds quota until cancelled
    emulator.advance(1)
    assert client.batches.retrieve(first.id).status == "cancelled"
    assert client.batches.retrieve(run_batch(client, [chat_line("e"), chat_line("f")]).id).status == "in_progress"


def test_quota_fail_fast_answers_400_at_create(client: OpenAI, emulator: Emulator) -> None:
    emulator.configure(enqueued_token_limit=_tokens_of_one_line() * 3, request_time=100, token_limit_style="fail-fast")
    first = run_batch(client, [chat_line("a"), chat_line("b")])
    assert first.status == "validating"  # counted from create, while still validating
    before = emulator.counters()["batches_created"]
    with pytest.raises(openai.BadRequestError) as err:
        run_batch(client, [chat_line("c"), chat_line("d")])
    assert err.value.code == "token_limit_exceeded"
    assert "token_limit_exceeded" in err.value.message
    assert emulator.counters()["batches_created"] == before


# ------------------------------------------------------------------ spurious "Cannot find file"

def test_spurious_file_not_found_async_then_retry_passes(client: OpenAI, emulator: Emulator) -> None:
    emulator.configure(file_not_found_rate=1.0)
    file_id = upload(client, [chat_line("a")])
    first = client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
    failed = client.batches.retrieve(first.id)
    assert failed.status == "failed"
    err = failed.errors.data[0]
    assert err.code == "invalid_request" and err.line is None
    assert err.message.startswith(f"Cannot find file {file_id}, or organization ")
    assert client.files.retrieve(file_id).id == file_id  # the file is there all along
    retry = client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
    assert client.batches.retrieve(retry.id).status == "completed"


def test_spurious_file_not_found_sync_style(client: OpenAI, emulator: Emulator) -> None:
    emulator.configure(file_not_found_rate=1.0, file_not_found_style="sync")
    file_id = upload(client, [chat_line("a")])
    with pytest.raises(openai.BadRequestError) as err:
        client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
    assert f"Cannot find file {file_id}" in err.value.message
    assert client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h").status == "validating"


def test_spurious_rate_is_a_deterministic_fraction(client: OpenAI, emulator: Emulator) -> None:
    emulator.configure(file_not_found_rate=0.5, file_not_found_style="sync", seed=7)

    def outcomes() -> list[bool]:
        files = [upload(client, [chat_line(f"r{i}")]) for i in range(20)]
        got = []
        for f in files:
            try:
                client.batches.create(input_file_id=f, endpoint=CHAT, completion_window="24h")
                got.append(True)
            except openai.BadRequestError:
                got.append(False)
        return got

    got = outcomes()
    assert 0 < got.count(False) < 20


# ------------------------------------------------------------------ retention

def test_output_files_expire_after_default_retention(client: OpenAI, emulator: Emulator) -> None:
    emulator.configure(output_retention=7200)
    b = client.batches.retrieve(run_batch(client, [chat_line("a")]).id)
    out = client.files.retrieve(b.output_file_id)
    assert out.expires_at == b.completed_at + 7200
    emulator.advance(7201)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(b.output_file_id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(b.output_file_id)
    assert b.output_file_id not in [f.id for f in client.files.list()]


def test_default_retention_is_30_days(client: OpenAI) -> None:
    b = client.batches.retrieve(run_batch(client, [chat_line("a")]).id)
    assert client.files.retrieve(b.output_file_id).expires_at == b.completed_at + 30 * 86400


def test_output_expires_after_sets_result_file_expiry(client: OpenAI, emulator: Emulator) -> None:
    b = run_batch(client, [chat_line("a"), chat_line("b", "x [[emulator:error_500]]")],
                  extra_body={"output_expires_after": {"anchor": "created_at", "seconds": 3600}})
    got = client.batches.retrieve(b.id)
    for file_id in (got.output_file_id, got.error_file_id):
        assert client.files.retrieve(file_id).expires_at == got.completed_at + 3600
    emulator.advance(3601)
    with pytest.raises(openai.NotFoundError):
        client.files.content(got.error_file_id)


@pytest.mark.parametrize("bad", [{"anchor": "created_at", "seconds": 60}, {"anchor": "completed_at", "seconds": 3600},
                                 {"anchor": "created_at", "seconds": 2_592_001}, {"anchor": "created_at"}])
def test_output_expires_after_is_validated(client: OpenAI, bad: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        run_batch(client, [chat_line("a")], extra_body={"output_expires_after": bad})
    assert err.value.param.startswith("output_expires_after")


def test_upload_expires_after_sets_expires_at_and_deletes(client: OpenAI, emulator: Emulator) -> None:
    f = client.files.create(file=("a.jsonl", json.dumps(chat_line("a")).encode()), purpose="batch",
                            expires_after={"anchor": "created_at", "seconds": 3600})
    assert f.expires_at == f.created_at + 3600
    emulator.advance(3601)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(f.id)
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("a.jsonl", b"{}\n"), purpose="batch",
                            expires_after={"anchor": "created_at", "seconds": 10})


# ------------------------------------------------------------------ embedding inputs

def test_embedding_request_over_2048_inputs_fails_its_line(client: OpenAI) -> None:
    b = client.batches.retrieve(run_batch(client, [emb_line("ok", ["a", "b"]), emb_line("big", ["x"] * 2049)],
                                          endpoint=EMB).id)
    assert b.status == "completed"
    assert (b.request_counts.completed, b.request_counts.failed) == (1, 1)
    [line] = read_lines(client, b.error_file_id)
    assert line["custom_id"] == "big" and line["error"] is None
    assert line["response"]["status_code"] == 400
    assert line["response"]["body"]["error"]["code"] == "array_above_max_length"


def test_embedding_batch_over_50000_inputs_fails_validation(client: OpenAI, emulator: Emulator) -> None:
    emulator.configure(max_embedding_inputs_per_batch=5)
    b = client.batches.retrieve(run_batch(client, [emb_line("a", ["x"] * 3), emb_line("b", ["y"] * 3)], endpoint=EMB).id)
    assert b.status == "failed"
    [err] = b.errors.data
    assert err.code == "too_many_tasks" and err.line is None and "embedding inputs" in err.message


def test_sync_embeddings_over_2048_inputs_is_400(emulator: Emulator) -> None:
    with httpx2.Client(base_url=emulator.base_url, headers=AUTH) as http:
        r = http.post("/embeddings", json={"model": "text-embedding-3-small", "input": ["x"] * 2049})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"


# ------------------------------------------------------------------ runtime config

def test_every_rule_is_settable_over_http(emulator: Emulator) -> None:
    fields = {"require_auth": False, "api_key": "k", "supported_models": ["m1"], "enqueued_token_limit": 10,
              "token_limit_style": "fail-fast", "file_not_found_rate": 0.1, "file_not_found_style": "sync",
              "output_retention": 3600, "max_embedding_inputs_per_batch": 9, "max_embedding_inputs_per_request": 3,
              "flavor": "azure"}
    with httpx2.Client(base_url=emulator.url) as http:
        got = http.post("/_emulator/config", json=fields).json()
        assert {k: got[k] for k in fields} == fields
        bad = http.post("/_emulator/config", json={"token_limit_style": "later"})
        assert bad.status_code == 400 and "token_limit_style" in bad.json()["error"]["message"]
