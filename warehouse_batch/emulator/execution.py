"""Run a validated batch through the responder once, up front.

The responder is pure, so every answer can be computed up front, by the engine's
background worker right after the batch is created (parsing each line exactly once); the engine's clock then only decides how many
of these precomputed results are visible. Polls stay O(1) per batch, and the
output/error files are joined once when the batch reaches a terminal state.
"""
from __future__ import annotations

import json
import random
import secrets
from array import array
from dataclasses import dataclass, field
from typing import Any

from . import ids
from .config import EmulatorConfig
from .responder import respond, usage_of
from .errors import APIError
from .validation import EMBEDDINGS, batch_error, check_embedding_request, validate

UNRUN_MESSAGES = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
}


@dataclass
class Prepared:
    errors: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    tokens: int = 0
    received_lines: int = 0  # non-blank input lines, for counters
    received_ids: list[str] = field(default_factory=list)  # custom ids seen, for counters
    custom_ids: list[str] = field(default_factory=list)  # in processing order
    lines: list[bytes] = field(default_factory=list)  # result line per request, processing order
    ok: bytearray = field(default_factory=bytearray)  # 1 = 2xx (output file), 0 = error file
    # Prefix sums (length n + 1) so counts/usage after k requests are O(1).
    failed_prefix: array = field(default_factory=lambda: array("q", [0]))
    input_prefix: array = field(default_factory=lambda: array("q", [0]))
    output_prefix: array = field(default_factory=lambda: array("q", [0]))

    @property
    def n(self) -> int:
        return len(self.lines)

    def counts(self, k: int) -> dict[str, int]:
        failed = self.failed_prefix[k]
        return {"total": self.n, "completed": k - failed, "failed": failed}

    def usage(self, k: int) -> dict[str, Any]:
        inp, out = self.input_prefix[k], self.output_prefix[k]
        return {
            "input_tokens": inp,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": inp + out,
        }

    def result_files(self, k: int, unrun_code: str) -> tuple[bytes, bytes]:
        """(output bytes, error bytes) when the first k requests ran; the rest get `unrun_code` lines."""
        out: list[bytes] = []
        err: list[bytes] = []
        lines, ok = self.lines, self.ok
        for i in range(k):
            (out if ok[i] else err).append(lines[i])
        message = UNRUN_MESSAGES.get(unrun_code, unrun_code)
        for cid in self.custom_ids[k:]:
            err.append(_dumps({"id": ids.batch_request_id(), "custom_id": cid, "response": None,
                               "error": {"code": unrun_code, "message": message}}))
        return _join(out), _join(err)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _join(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n" if lines else b""


def cannot_find(file_id: str) -> str:
    return f"Cannot find file {file_id}, or organization org-emulator does not have access to it."


def missing_file(file_id: str) -> Prepared:
    return Prepared(errors=[batch_error("invalid_request", cannot_find(file_id), None, "file_id")])


def _answer(endpoint: str, body: dict[str, Any], custom_id: str, config: EmulatorConfig) -> tuple[int, dict[str, Any]]:
    """The responder's answer, unless the request breaks a per-request limit (it then ran and failed)."""
    if endpoint == EMBEDDINGS:
        try:
            check_embedding_request(body, config)
        except APIError as exc:
            return exc.status, exc.body()
    return respond(endpoint, body, custom_id, config)


def prepare(content: bytes, endpoint: str, batch_id: str, config: EmulatorConfig) -> Prepared:
    v = validate(content, endpoint, config)
    prep = Prepared(errors=v.errors, model=v.model, tokens=v.tokens, received_lines=v.n_lines, received_ids=v.seen_ids)
    if v.errors:
        return prep
    order = list(range(len(v.requests)))
    if config.shuffle_output:
        # Deterministic per batch, so clients that rely on input order are caught.
        random.Random(f"{config.seed}:{batch_id}").shuffle(order)
    failed = inp = outp = 0
    fp, ip, op = prep.failed_prefix, prep.input_prefix, prep.output_prefix
    for i in order:
        custom_id, body = v.requests[i]
        status, resp = _answer(endpoint, body, custom_id, config)
        is_ok = 200 <= status < 300
        if is_ok:
            a, b = usage_of(endpoint, resp)
            inp += a
            outp += b
        else:
            failed += 1
        prep.custom_ids.append(custom_id)
        prep.ok.append(1 if is_ok else 0)
        prep.lines.append(_dumps({
            "id": ids.batch_request_id(),
            "custom_id": custom_id,
            "response": {"status_code": status, "request_id": secrets.token_hex(16), "body": resp},
            "error": None,
        }))
        fp.append(failed)
        ip.append(inp)
        op.append(outp)
    return prep
