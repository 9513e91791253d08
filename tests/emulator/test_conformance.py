"""Emulator responses against the official OpenAPI component schemas.

tests/fixtures/openapi/components.json holds the schemas copied unchanged from the
spec (see its README). Spec quirk 1 (§15): fields the spec types non-nullable
(`model`, `errors`, `*_at`, `output_file_id`, `usage`, FileObject `expires_at`,
`status_details`) are `null` in real responses. We do not loosen the schema:
we validate the object after dropping keys whose value is null and that the
schema does not list as required, which is exactly what a real response
without those keys would look like. A null *required* key would still fail.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from jsonschema import Draft202012Validator
from openai import OpenAI
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from warehouse_batch.emulator import Emulator

from .conftest import AUTH, chat_line, upload

SPEC = json.loads((Path(__file__).parents[1] / "fixtures" / "openapi" / "components.json").read_text())
REGISTRY = Registry().with_resource("urn:components", DRAFT202012.create_resource(SPEC))


def _validator(name: str) -> Draft202012Validator:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": f"urn:components#/components/schemas/{name}"}
    return Draft202012Validator(schema, registry=REGISTRY)


def _drop_null_optionals(obj: dict[str, Any], name: str) -> dict[str, Any]:
    required = set(SPEC["components"]["schemas"][name].get("required", []))
    return {k: v for k, v in obj.items() if v is not None or k in required}


def _check(name: str, obj: dict[str, Any]) -> None:
    errors = sorted(_validator(name).iter_errors(obj), key=str)
    assert not errors, [e.message for e in errors]


def _raw(emu: Emulator, method: str, path: str, **kw: Any) -> Any:
    with httpx2.Client(base_url=emu.base_url, headers=AUTH) as http:
        r = http.request(method, path, **kw)
    assert r.status_code == 200, r.text
    return r.json()


def test_quirk_is_real_raw_batch_with_nulls_fails(client: OpenAI, emulator: Emulator) -> None:
    b = _raw(emulator, "POST", "/batches", json={"input_file_id": upload(client, [chat_line("a")]),
                                                 "endpoint": "/v1/chat/completions", "completion_window": "24h"})
    assert list(_validator("Batch").iter_errors(b))  # documents quirk 1; see module docstring
    _check("Batch", _drop_null_optionals(b, "Batch"))


@pytest.mark.parametrize("setup", ["validating", "in_progress", "completed", "failed", "cancelling", "cancelled", "expired"])
def test_batch_states_conform(client: OpenAI, emulator: Emulator, setup: str) -> None:
    lines = [chat_line("a"), chat_line("b", "x [[emulator:error_500]]")]
    if setup == "failed":
        lines = [chat_line("a"), "{broken"]
    if setup in ("validating", "cancelling", "cancelled"):
        emulator.configure(validation_delay=10, cancel_delay=0 if setup == "cancelled" else 10)
    if setup in ("in_progress", "expired"):
        emulator.configure(request_time=50, completion_window_seconds=60)
    b = _raw(emulator, "POST", "/batches", json={"input_file_id": upload(client, lines), "endpoint": "/v1/chat/completions",
                                                 "completion_window": "24h", "metadata": {"k": "v"}})
    if setup in ("cancelling", "cancelled"):
        _raw(emulator, "POST", f"/batches/{b['id']}/cancel")
    if setup == "expired":
        emulator.advance(61)
    got = _raw(emulator, "GET", f"/batches/{b['id']}")
    assert got["status"] == setup
    _check("Batch", _drop_null_optionals(got, "Batch"))
    page = _raw(emulator, "GET", "/batches")
    page["data"] = [_drop_null_optionals(x, "Batch") for x in page["data"]]
    _check("ListBatchesResponse", page)


def test_files_conform(client: OpenAI, emulator: Emulator) -> None:
    fid = upload(client, [chat_line("a")])
    _check("OpenAIFile", _drop_null_optionals(_raw(emulator, "GET", f"/files/{fid}"), "OpenAIFile"))
    page = _raw(emulator, "GET", "/files")
    page["data"] = [_drop_null_optionals(x, "OpenAIFile") for x in page["data"]]
    _check("ListFilesResponse", page)
    _check("DeleteFileResponse", _raw(emulator, "DELETE", f"/files/{fid}"))
    # Quirk 2: an empty file list omits first_id/last_id and so cannot satisfy
    # ListFilesResponse (which requires them); the batches list allows omission.
    empty = _raw(emulator, "GET", "/files")
    assert empty == {"object": "list", "data": [], "has_more": False}
    assert list(_validator("ListFilesResponse").iter_errors(empty))
    _check("ListBatchesResponse", _raw(emulator, "GET", "/batches"))


def test_error_envelope_conforms(emulator: Emulator) -> None:
    with httpx2.Client(base_url=emulator.base_url, headers=AUTH) as http:
        for path in ("/batches/batch_x", "/files/file-x", "/unknown"):
            r = http.get(path)
            assert r.status_code == 404
            _check("ErrorResponse", r.json())


# ------------------------------------------------------------------ production rules (issue #11)

def _status(emu: Emulator, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
    with httpx2.Client(base_url=emu.base_url, headers=AUTH if headers is None else headers) as http:
        return http.request(method, path, **kw)


def test_new_errors_conform(client: OpenAI, emulator: Emulator) -> None:
    """401 (no key, wrong key), fail-fast quota 400, sync 'Cannot find file' 400, expiry 400."""
    emulator.configure(api_key="right")
    answers = [_status(emulator, "GET", "/batches", headers={}),
               _status(emulator, "GET", "/batches", headers={"Authorization": "Bearer wrong"})]
    emulator.configure(api_key=None, enqueued_token_limit=1, token_limit_style="fail-fast")
    create = {"input_file_id": upload(client, [chat_line("a")]), "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    answers.append(_status(emulator, "POST", "/batches", json=create))
    emulator.configure(enqueued_token_limit=None, file_not_found_rate=1.0, file_not_found_style="sync")
    answers.append(_status(emulator, "POST", "/batches", json=create))
    answers.append(_status(emulator, "POST", "/batches", json={**create, "output_expires_after": {"anchor": "created_at", "seconds": 5}}))
    assert [r.status_code for r in answers] == [401, 401, 400, 400, 400]
    for r in answers:
        _check("ErrorResponse", r.json())


def test_create_request_with_output_expires_after_conforms(client: OpenAI, emulator: Emulator) -> None:
    """The spec has output_expires_after on CreateBatchRequest only: the Batch does not echo it,
    its result files carry expires_at (OpenAIFile)."""
    create = {"input_file_id": upload(client, [chat_line("a")]), "endpoint": "/v1/chat/completions",
              "completion_window": "24h", "output_expires_after": {"anchor": "created_at", "seconds": 3600}}
    _check("CreateBatchRequest", create)
    b = _raw(emulator, "POST", "/batches", json=create)
    done = _raw(emulator, "GET", f"/batches/{b['id']}")
    _check("Batch", _drop_null_optionals(done, "Batch"))
    out = _raw(emulator, "GET", f"/files/{done['output_file_id']}")
    assert out["expires_at"] == done["completed_at"] + 3600
    _check("OpenAIFile", _drop_null_optionals(out, "OpenAIFile"))


def test_uploaded_file_with_expires_after_conforms(emulator: Emulator) -> None:
    with httpx2.Client(base_url=emulator.base_url, headers=AUTH) as http:
        r = http.post("/files", data={"purpose": "batch", "expires_after[anchor]": "created_at",
                                      "expires_after[seconds]": "3600"},
                      files={"file": ("a.jsonl", json.dumps(chat_line("a")).encode())})
    f = r.json()
    _check("FileExpirationAfter", {"anchor": "created_at", "seconds": 3600})
    assert f["expires_at"] == f["created_at"] + 3600
    _check("OpenAIFile", _drop_null_optionals(f, "OpenAIFile"))


@pytest.mark.parametrize("cause", ["token_limit_exceeded", "file_not_found", "embedding_inputs"])
def test_new_failed_batches_conform(client: OpenAI, emulator: Emulator, cause: str) -> None:
    lines = [chat_line("a")]
    endpoint = "/v1/chat/completions"
    if cause == "token_limit_exceeded":
        emulator.configure(enqueued_token_limit=1)
    elif cause == "file_not_found":
        emulator.configure(file_not_found_rate=1.0)
    else:
        emulator.configure(max_embedding_inputs_per_batch=1)
        endpoint = "/v1/embeddings"
        lines = [{"custom_id": "e", "method": "POST", "url": endpoint,
                  "body": {"model": "text-embedding-3-small", "input": ["x", "y"]}}]
    b = _raw(emulator, "POST", "/batches", json={"input_file_id": upload(client, lines), "endpoint": endpoint,
                                                 "completion_window": "24h"})
    got = _raw(emulator, "GET", f"/batches/{b['id']}")
    assert got["status"] == "failed" and got["errors"]["data"][0]["line"] is None
    _check("Batch", _drop_null_optionals(got, "Batch"))


def test_azure_error_file_conforms(emulator: Emulator) -> None:
    emulator.configure(flavor="azure")
    with httpx2.Client(base_url=emulator.url + "/openai/v1", headers={"api-key": "k"}) as http:
        f = http.post("/files", data={"purpose": "batch"}, files={"file": ("a.jsonl", json.dumps(chat_line("a")).encode())}).json()
        b = http.post("/batches", json={"input_file_id": f["id"], "endpoint": "/chat/completions", "completion_window": "24h"}).json()
        done = http.get(f"/batches/{b['id']}").json()
        err = http.get(f"/files/{done['error_file_id']}").json()
    _check("Batch", _drop_null_optionals(done, "Batch"))
    assert err["bytes"] == 0
    _check("OpenAIFile", _drop_null_optionals(err, "OpenAIFile"))
