from __future__ import annotations

import base64
import struct

import httpx2
import openai
import pytest
from openai import OpenAI

from warehouse_batch.emulator import Emulator

from .conftest import AUTH


def test_chat_completion(client: OpenAI, emulator: Emulator) -> None:
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[
        {"role": "system", "content": "Answer with one word: yes, no, or maybe."},
        {"role": "user", "content": "Is water wet?"}])
    assert r.object == "chat.completion" and r.model == "gpt-4o-mini"
    assert r.choices[0].message.content in ("yes", "no", "maybe")
    # o200k_base: system 12 + user 4 content tokens, + 2 × (3 framing + 1 role) + 3 reply priming
    assert r.usage is not None and r.usage.prompt_tokens == 12 + 4 + 2 * 4 + 3 and r.usage.completion_tokens == 1
    assert emulator.counters()["sync_requests"] == 1


def test_chat_is_deterministic(client: OpenAI) -> None:
    kwargs = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": "Tell me about otters"}])
    a = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    b = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    assert a.choices[0].message.content == b.choices[0].message.content and a.id == b.id
    assert "Tell me about otters" in (a.choices[0].message.content or "")


def test_responses_endpoint(client: OpenAI) -> None:
    r = client.responses.create(model="gpt-4o-mini", instructions="Reply with red, green or blue.", input="Pick a colour")
    assert r.status == "completed" and r.output_text in ("red", "green", "blue")
    assert r.usage is not None and r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens


def test_embeddings_default_base64(client: OpenAI, emulator: Emulator) -> None:
    # The SDK sends encoding_format=base64 when none is given, and decodes it.
    r = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert [d.index for d in r.data] == [0, 1]
    assert len(r.data[0].embedding) == 1536
    assert abs(sum(v * v for v in r.data[0].embedding) - 1) < 1e-5
    floats = client.embeddings.create(model="text-embedding-3-small", input="alpha", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(r.data[0].embedding, abs=1e-6)
    large = client.embeddings.create(model="text-embedding-3-large", input="alpha", encoding_format="float")
    assert len(large.data[0].embedding) == 3072
    small = client.embeddings.create(model="text-embedding-3-small", input="alpha", dimensions=64, encoding_format="float")
    assert len(small.data[0].embedding) == 64


def test_embeddings_base64_wire_format(emulator: Emulator) -> None:
    with httpx2.Client(headers=AUTH) as http:
        body = http.post(emulator.base_url + "/embeddings",
                         json={"model": "text-embedding-3-small", "input": "x", "encoding_format": "base64", "dimensions": 4}).json()
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert len(struct.unpack("<4f", raw)) == 4


def test_moderations(client: OpenAI) -> None:
    r = client.moderations.create(input=["a friendly note", "bad [[emulator:flagged]]"])
    assert [x.flagged for x in r.results] == [False, True]
    assert r.results[1].categories.harassment is True
    assert 0 <= r.results[0].category_scores.violence < 0.02


def test_sync_marker_errors_and_unknown_model(client: OpenAI, emulator: Emulator) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x [[emulator:error_400]]"}])
    assert err.value.code == "context_length_exceeded"  # type: ignore[attr-defined]
    emulator.configure(supported_models=("gpt-4o-mini",))
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])
    assert nf.value.code == "model_not_found"  # type: ignore[attr-defined]
