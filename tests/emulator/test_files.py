from __future__ import annotations

import json

import httpx2
import openai
import pytest
from openai import OpenAI

from warehouse_batch.emulator import Emulator

from .conftest import AUTH, chat_line, jsonl


def test_upload_retrieve_content_delete(client: OpenAI) -> None:
    data = jsonl([chat_line("a"), chat_line("b")])
    f = client.files.create(file=("in.jsonl", data), purpose="batch")
    assert f.id.startswith("file-")
    assert (f.object, f.purpose, f.status, f.filename, f.bytes) == ("file", "batch", "processed", "in.jsonl", len(data))
    assert f.expires_at == f.created_at + 30 * 86400  # batch inputs expire after 30 days by default
    assert client.files.retrieve(f.id) == f
    assert client.files.content(f.id).content == data
    deleted = client.files.delete(f.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (f.id, "file", True)
    with pytest.raises(openai.NotFoundError) as err:
        client.files.retrieve(f.id)
    assert err.value.status_code == 404
    assert err.value.body == {"message": f"No such File object: {f.id}", "type": "invalid_request_error", "param": "id", "code": None}
    assert err.value.request_id and err.value.request_id.startswith("req_")


def test_expires_after_bracket_form_from_sdk(client: OpenAI) -> None:
    f = client.files.create(file=("in.jsonl", jsonl([chat_line("a")])), purpose="batch",
                            expires_after={"anchor": "created_at", "seconds": 7200})
    assert f.expires_at == f.created_at + 7200


def test_expires_after_dotted_form(emulator: Emulator) -> None:
    with httpx2.Client(headers=AUTH) as http:
        r = http.post(emulator.base_url + "/files",
                      data={"purpose": "user_data", "expires_after.anchor": "created_at", "expires_after.seconds": "3600"},
                      files={"file": ("notes.txt", b"hello", "text/plain")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["expires_at"] == body["created_at"] + 3600
    assert body["purpose"] == "user_data"
    assert r.headers["x-request-id"]


def test_expired_file_disappears_with_clock(client: OpenAI, emulator: Emulator) -> None:
    f = client.files.create(file=("in.jsonl", jsonl([chat_line("a")])), purpose="batch",
                            expires_after={"anchor": "created_at", "seconds": 3600})
    emulator.advance(3601)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(f.id)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"this is not json\nnor this\n", b"\xff\xfe\x00garbage"])
def test_batch_upload_rejects_empty_or_non_jsonl(client: OpenAI, content: bytes) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=("in.jsonl", content), purpose="batch")
    assert "jsonl" in err.value.message.lower()


def test_upload_rejects_bad_purpose_and_expiry(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("a.txt", b"x"), purpose="nonsense")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("a.jsonl", jsonl([chat_line("a")])), purpose="batch",
                            expires_after={"anchor": "created_at", "seconds": 60})


def test_list_files_pagination_order_and_purpose(client: OpenAI) -> None:
    ids = [client.files.create(file=(f"{i}.jsonl", jsonl([chat_line(str(i))])), purpose="batch").id for i in range(5)]
    other = client.files.create(file=("x.txt", b"plain"), purpose="user_data").id
    page = client.files.list(limit=2, purpose="batch")
    assert [f.id for f in page.data] == ids[::-1][:2]
    assert page.has_more is True
    assert [f.id for f in page] == ids[::-1]  # auto-pagination follows `after`
    assert [f.id for f in client.files.list(order="asc", purpose="batch")] == ids
    assert other in [f.id for f in client.files.list()]


def test_empty_file_list_omits_first_and_last_id(emulator: Emulator) -> None:
    with httpx2.Client(headers=AUTH) as http:
        body = http.get(emulator.base_url + "/files").json()
    assert body == {"object": "list", "data": [], "has_more": False}


def test_unknown_route_uses_envelope(emulator: Emulator) -> None:
    with httpx2.Client(headers=AUTH) as http:
        r = http.get(emulator.base_url + "/nothing/here")
    assert r.status_code == 404
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert r.headers["x-request-id"]
    # The content endpoint serves raw bytes, not JSON.
    with httpx2.Client(headers=AUTH) as http:
        up = http.post(emulator.base_url + "/files", data={"purpose": "user_data"}, files={"file": ("a.bin", b"\x00\x01raw")})
        raw = http.get(emulator.base_url + f"/files/{up.json()['id']}/content")
    assert raw.content == b"\x00\x01raw"
    json.dumps(up.json())
