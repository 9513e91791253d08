"""Fixtures: a fresh in-process emulator on 127.0.0.1 and a real `openai` client for it."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai import OpenAI

from warehouse_batch.emulator import Emulator, EmulatorConfig

CHAT = "/v1/chat/completions"
API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}  # raw httpx2 calls: /v1 needs a key like production


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(), host="127.0.0.1", port=0) as emu:
        yield emu


@pytest.fixture
def client(emulator: Emulator) -> OpenAI:
    # Short timeouts: everything is local; retries stay on (the SDK default of 2).
    return OpenAI(api_key=API_KEY, base_url=emulator.base_url, timeout=10.0)


def chat_line(custom_id: str, text: str = "Hello", model: str = "gpt-4o-mini", **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": model, "messages": [{"role": "user", "content": text}], **body},
    }


def jsonl(lines: list[Any]) -> bytes:
    return ("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n").encode()


def upload(client: OpenAI, lines: list[Any], name: str = "input.jsonl") -> str:
    return client.files.create(file=(name, jsonl(lines)), purpose="batch").id


def run_batch(client: OpenAI, lines: list[Any], endpoint: str = CHAT, **kwargs: Any) -> Any:
    file_id = upload(client, lines)
    return client.batches.create(input_file_id=file_id, endpoint=endpoint, completion_window="24h", **kwargs)  # type: ignore[arg-type]


def read_lines(client: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if not file_id:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines() if line.strip()]
