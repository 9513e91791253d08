"""The admin endpoints over real HTTP (loopback only), as a separate process would use them."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import openai
import pytest
from openai import OpenAI

from warehouse_batch.emulator import Emulator

from .conftest import chat_line, run_batch


def _call(emu: Emulator, path: str, payload: dict[str, Any] | None = None) -> Any:
    assert emu.url.startswith("http://127.0.0.1:")
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(emu.url + path, data=data, method="POST" if data is not None else "GET",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.headers["x-request-id"]
        return json.loads(resp.read())


def test_admin_counters_config_advance_faults_reset(client: OpenAI, emulator: Emulator) -> None:
    assert _call(emulator, "/_emulator/config", {"request_time": 10})["request_time"] == 10
    b = run_batch(client, [chat_line("a"), chat_line("b")])
    assert client.batches.retrieve(b.id).status == "in_progress"
    before = client.batches.retrieve(b.id).created_at
    now = _call(emulator, "/_emulator/advance", {"seconds": 20})["now"]
    assert now >= before + 20
    assert client.batches.retrieve(b.id).status == "completed"

    counters = _call(emulator, "/_emulator/counters")
    assert counters["batches_created"] == 1 and counters["requests_received"] == 2
    assert counters["custom_ids_received"] == {"a": 1, "b": 1}
    assert counters["calls"]["GET /v1/batches/{batch_id}"] == 3

    pending = _call(emulator, "/_emulator/faults", {"op": "list_batches", "status": 429, "times": 1, "retry_after": 0.01})
    assert pending["pending"][0]["op"] == "list_batches"
    client.batches.list()
    assert _call(emulator, "/_emulator/counters")["retries"] == 1

    _call(emulator, "/_emulator/faults", {"op": "retrieve_batch", "status": 500, "times": 5})
    with pytest.raises(openai.InternalServerError):
        OpenAI(api_key="k", base_url=emulator.base_url, max_retries=0).batches.retrieve(b.id)

    assert _call(emulator, "/_emulator/reset", {}) == {"reset": True}
    assert _call(emulator, "/_emulator/counters")["calls"] == {}
    assert _call(emulator, "/_emulator/faults")["pending"] == []
    assert client.batches.list().data == []


def test_admin_rejects_bad_input(emulator: Emulator) -> None:
    for path, payload in (("/_emulator/config", {"no_such_field": 1}), ("/_emulator/faults", {"op": "bogus"}),
                          ("/_emulator/advance", {"seconds": -5})):
        with pytest.raises(urllib.error.HTTPError) as err:
            _call(emulator, path, payload)
        assert err.value.code == 400
        assert set(json.loads(err.value.read())["error"]) == {"message", "type", "param", "code"}
