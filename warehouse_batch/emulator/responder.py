"""Deterministic fake model: the same request body always gets the same answer.

`respond(endpoint, body, custom_id, config) -> (status_code, response_body)` serves
both batch lines and the synchronous endpoints.

Token counts are estimates, not a tokenizer: prompt/input tokens =
ceil(characters of all message/input text / 4); completion/output tokens =
ceil(characters of the answer / 4). That keeps usage plausible and reproducible.

Misbehaviour for tests, per request:
  markers in the request text: [[emulator:error_400]] [[emulator:error_500]]
  [[emulator:refusal]] [[emulator:truncate]] [[emulator:invalid_json]]
  [[emulator:flagged]] (moderations only);
  config.*_rate: a deterministic fraction of requests chosen by hash(custom_id + seed).
"""
from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import random
import re
import struct
from typing import Any, Protocol

from .schema_fake import fake_from_schema

MARKERS = ("error_400", "error_500", "refusal", "truncate", "invalid_json")
_MARKER_RE = re.compile(r"\[\[emulator:([a-z0-9_]+)\]\]")
# "A, B or C" / "A, B, or C" (optionally quoted words), or "either A or B".
_WORD = r"""["'`]?[\w][\w-]*["'`]?"""
_OPTIONS_RE = re.compile(rf"({_WORD}(?:\s*,\s*{_WORD})+),?\s+or\s+({_WORD})|\beither\s+({_WORD})\s+or\s+({_WORD})")
_EPOCH = 1_700_000_000
REFUSAL_TEXT = "I'm sorry, but I can't help with that request."
_MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors",
    "violence", "violence/graphic",
)


class _Cfg(Protocol):
    seed: int
    error_rate: float
    refusal_rate: float
    truncate_rate: float
    invalid_json_rate: float


def canonical(body: Any) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(*parts: str) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.digest()


def estimate_tokens(chars: int) -> int:
    return math.ceil(chars / 4)


# ---------------------------------------------------------------- text extraction

def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                t = part.get("text")
                if isinstance(t, str):
                    parts.append(t)
        return "\n".join(parts)
    return ""


def _chat_texts(messages: Any) -> tuple[str, str, int]:
    """(system text, user text, characters of all contents)."""
    system, user, total = [], [], 0
    for m in messages if isinstance(messages, list) else []:
        if not isinstance(m, dict):
            continue
        text = _content_text(m.get("content"))
        total += len(text)
        if m.get("role") in ("system", "developer"):
            system.append(text)
        elif m.get("role") == "user":
            user.append(text)
    return "\n".join(system), "\n".join(user), total


def _responses_texts(body: dict[str, Any]) -> tuple[str, str, int]:
    instructions = body.get("instructions") if isinstance(body.get("instructions"), str) else ""
    inp = body.get("input")
    if isinstance(inp, str):
        return instructions, inp, len(instructions) + len(inp)
    system, user, total = _chat_texts(inp)
    return "\n".join(t for t in (instructions, system) if t), user, total + len(instructions)


# ---------------------------------------------------------------- behaviour choice

def _behaviour(text: str, custom_id: str, body_key: str, config: _Cfg) -> str | None:
    """Which misbehaviour applies: a marker in the text wins, then the configured rates."""
    if "[[emulator:" in text:
        for name in _MARKER_RE.findall(text):
            if name in MARKERS:
                return name
    rates = (
        ("error_500", config.error_rate),
        ("refusal", config.refusal_rate),
        ("truncate", config.truncate_rate),
        ("invalid_json", config.invalid_json_rate),
    )
    if not any(r > 0 for _, r in rates):
        return None
    # One uniform number per request, split into disjoint ranges, so each rate is
    # the fraction of requests with that behaviour.
    u = int.from_bytes(_digest(custom_id or body_key, str(config.seed), "rate")[:8], "big") / 2**64
    edge = 0.0
    for name, rate in rates:
        edge += max(rate, 0.0)
        if u < edge:
            return name
    return None


def _error(status: int) -> tuple[int, dict[str, Any]]:
    if status == 400:
        return 400, {"error": {
            "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}
    return 500, {"error": {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error", "param": None, "code": "server_error"}}


# ---------------------------------------------------------------- answer text

@functools.lru_cache(maxsize=256)  # batches repeat one system prompt on every line
def _options(system: str) -> tuple[str, ...] | None:
    m = _OPTIONS_RE.search(system)
    if not m:
        return None
    if m.group(1):
        words = [w.strip().strip("\"'`") for w in m.group(1).split(",")] + [m.group(2).strip("\"'`")]
    else:
        words = [m.group(3).strip("\"'`"), m.group(4).strip("\"'`")]
    return tuple(w for w in words if w)


def _answer(system: str, user: str, schema: dict[str, Any] | None, json_object: bool, rng: random.Random, behaviour: str | None) -> str:
    if behaviour == "invalid_json":
        return 'Here is the JSON you asked for: {"answer": "unterminated'
    if schema is not None:
        return json.dumps(fake_from_schema(schema, rng), ensure_ascii=False)
    if json_object:
        return json.dumps({"answer": user[:40]}, ensure_ascii=False)
    options = _options(system)
    if options:
        return rng.choice(options)
    start = " ".join(_MARKER_RE.sub("", user).split()[:6])
    return f'Emulated answer #{rng.randint(1000, 9999)} about "{start}".'


def _truncate(text: str) -> str:
    return text[: len(text) // 2]


# ---------------------------------------------------------------- endpoints

def _chat(body: dict[str, Any], custom_id: str, config: _Cfg, digest: bytes, rng: random.Random) -> tuple[int, dict[str, Any]]:
    system, user, chars = _chat_texts(body.get("messages"))
    behaviour = _behaviour(system + user, custom_id, digest.hex(), config)
    if behaviour == "error_400":
        return _error(400)
    if behaviour == "error_500":
        return _error(500)
    rf = body.get("response_format") if isinstance(body.get("response_format"), dict) else {}
    schema = None
    if rf.get("type") == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema") or {}
    content: str | None = _answer(system, user, schema, rf.get("type") == "json_object", rng, behaviour)
    refusal, finish = None, "stop"
    if behaviour == "refusal":
        refusal, content = REFUSAL_TEXT, None
    elif behaviour == "truncate":
        content, finish = _truncate(content or ""), "length"
    prompt = estimate_tokens(chars)
    completion = estimate_tokens(len(content or refusal or ""))
    return 200, {
        "id": "chatcmpl-" + digest.hex()[:29],
        "object": "chat.completion",
        "created": _EPOCH + int.from_bytes(digest[15:18], "big"),
        "model": body.get("model"),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": refusal, "annotations": []},
            "logprobs": None,
            "finish_reason": finish,
        }],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        },
        "system_fingerprint": "fp_emulator",
        "service_tier": "default",
    }


def _responses(body: dict[str, Any], custom_id: str, config: _Cfg, digest: bytes, rng: random.Random) -> tuple[int, dict[str, Any]]:
    system, user, chars = _responses_texts(body)
    behaviour = _behaviour(system + user, custom_id, digest.hex(), config)
    if behaviour == "error_400":
        return _error(400)
    if behaviour == "error_500":
        return _error(500)
    text_cfg = body.get("text") if isinstance(body.get("text"), dict) else {}
    fmt = text_cfg.get("format") if isinstance(text_cfg.get("format"), dict) else {"type": "text"}
    schema = (fmt.get("schema") or {}) if fmt.get("type") == "json_schema" else None
    text = _answer(system, user, schema, fmt.get("type") == "json_object", rng, behaviour)
    status, incomplete = "completed", None
    if behaviour == "refusal":
        part: dict[str, Any] = {"type": "refusal", "refusal": REFUSAL_TEXT}
        text = REFUSAL_TEXT
    else:
        if behaviour == "truncate":
            text = _truncate(text)
            status, incomplete = "incomplete", {"reason": "max_output_tokens"}
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    hexid = digest.hex()
    inp, out = estimate_tokens(chars), estimate_tokens(len(text))
    return 200, {
        "id": "resp_" + hexid[:48],
        "object": "response",
        "created_at": _EPOCH + int.from_bytes(digest[24:27], "big"),
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model"),
        "output": [{
            "type": "message",
            "id": "msg_" + hexid[16:64],
            "status": "completed" if status == "completed" else "incomplete",
            "role": "assistant",
            "content": [part],
        }],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": bool(body.get("store", True)),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": fmt},
        "tool_choice": "auto",
        "tools": [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": {
            "input_tokens": inp,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": inp + out,
        },
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def _completions(body: dict[str, Any], custom_id: str, config: _Cfg, digest: bytes, rng: random.Random) -> tuple[int, dict[str, Any]]:
    prompt = body.get("prompt")
    text_in = prompt if isinstance(prompt, str) else "\n".join(p for p in prompt or [] if isinstance(p, str))
    behaviour = _behaviour(text_in, custom_id, digest.hex(), config)
    if behaviour in ("error_400", "error_500"):
        return _error(400 if behaviour == "error_400" else 500)
    text = _answer("", text_in, None, False, rng, behaviour)
    finish = "stop"
    if behaviour == "truncate":
        text, finish = _truncate(text), "length"
    p, c = estimate_tokens(len(text_in)), estimate_tokens(len(text))
    return 200, {
        "id": "cmpl-" + digest.hex()[:29], "object": "text_completion",
        "created": _EPOCH + int.from_bytes(digest[15:18], "big"), "model": body.get("model"),
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
    }


def _inputs(value: Any) -> list[str]:
    """Embedding/moderation inputs as strings (token arrays are hashed via their JSON)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return [json.dumps(value)]
        return [v if isinstance(v, str) else json.dumps(v) if not isinstance(v, dict) else _content_text([v]) for v in value]
    return []


def embedding_vector(text: str, dims: int, seed: int = 0) -> list[float]:
    """A stable unit-length vector derived from the text's hash."""
    raw = hashlib.shake_256(f"{seed}\x00{text}".encode("utf-8", "surrogatepass")).digest(dims * 2)
    values = [(v - 32767.5) / 32767.5 for v in struct.unpack(f"<{dims}H", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _embeddings(body: dict[str, Any], custom_id: str, config: _Cfg, digest: bytes, rng: random.Random) -> tuple[int, dict[str, Any]]:
    model = str(body.get("model") or "")
    texts = _inputs(body.get("input"))
    behaviour = _behaviour("\n".join(texts), custom_id, digest.hex(), config)
    if behaviour in ("error_400", "error_500"):
        return _error(400 if behaviour == "error_400" else 500)
    if not texts or any(t == "" for t in texts):
        return 400, {"error": {"message": "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
                               "type": "invalid_request_error", "param": None, "code": None}}
    default = 3072 if "3-large" in model else 1536
    dims = body.get("dimensions") or default
    b64 = body.get("encoding_format") == "base64"
    data = []
    for i, t in enumerate(texts):
        vec = embedding_vector(t, int(dims), config.seed)
        emb: Any = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode() if b64 else vec
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = estimate_tokens(sum(len(t) for t in texts))
    return 200, {"object": "list", "data": data, "model": model,
                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _moderations(body: dict[str, Any], custom_id: str, config: _Cfg, digest: bytes, rng: random.Random) -> tuple[int, dict[str, Any]]:
    texts = _inputs(body.get("input"))
    behaviour = _behaviour("\n".join(texts), custom_id, digest.hex(), config)
    if behaviour in ("error_400", "error_500"):
        return _error(400 if behaviour == "error_400" else 500)
    results = []
    for t in texts:
        d = _digest(t, str(config.seed), "moderation")
        flagged = "[[emulator:flagged]]" in t
        scores = {c: round(d[i] / 255 * 0.01, 6) for i, c in enumerate(_MODERATION_CATEGORIES)}
        if flagged:
            scores["harassment"] = 0.97
        categories = {c: scores[c] > 0.5 for c in _MODERATION_CATEGORIES}
        results.append({
            "flagged": flagged,
            "categories": categories,
            "category_scores": scores,
            "category_applied_input_types": {c: ["text"] for c in _MODERATION_CATEGORIES},
        })
    return 200, {"id": "modr-" + digest.hex()[:24], "model": body.get("model") or "omni-moderation-latest", "results": results}


_HANDLERS = {
    "/v1/chat/completions": _chat,
    "/v1/responses": _responses,
    "/v1/completions": _completions,
    "/v1/embeddings": _embeddings,
    "/v1/moderations": _moderations,
}
SUPPORTED_ENDPOINTS = tuple(_HANDLERS)


def respond(endpoint: str, body: dict[str, Any], custom_id: str, config: _Cfg) -> tuple[int, dict[str, Any]]:
    """(status_code, response body) for one request; pure and deterministic."""
    handler = _HANDLERS.get(endpoint)
    if handler is None:
        return 404, {"error": {"message": f"Invalid URL (POST {endpoint})", "type": "invalid_request_error", "param": None, "code": None}}
    digest = _digest(canonical(body), str(config.seed))
    rng = random.Random(int.from_bytes(digest[:16], "big"))  # int seeds are much cheaper than bytes
    return handler(body, custom_id, config, digest, rng)


def usage_of(endpoint: str, body: dict[str, Any]) -> tuple[int, int]:
    """(input tokens, output tokens) of a 2xx response body, for batch usage totals."""
    u = body.get("usage") or {}
    if "input_tokens" in u:
        return int(u.get("input_tokens") or 0), int(u.get("output_tokens") or 0)
    return int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
