"""Input-file checks of §4: every bad line is reported with its 1-based physical line."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from .config import EmulatorConfig

# Endpoints whose body must carry these keys (besides `model`).
_REQUIRED_BODY_KEYS = {
    "/v1/chat/completions": ("messages",),
    "/v1/responses": ("input",),
    "/v1/embeddings": ("input",),
    "/v1/completions": ("prompt",),
    "/v1/moderations": ("input",),
}
_MODEL_OPTIONAL = {"/v1/moderations"}  # moderations default to omni-moderation-latest


@dataclass
class Validated:
    errors: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (custom_id, body)
    model: str | None = None
    n_lines: int = 0  # non-blank lines
    seen_ids: list[str] = field(default_factory=list)  # every string custom_id, for counters
    tokens: int = 0  # estimated enqueued tokens: sum over lines of ceil(len(json.dumps(body)) / 4)


def batch_error(code: str, message: str, line: int | None = None, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def validate(content: bytes, endpoint: str, config: EmulatorConfig) -> Validated:
    out = Validated()
    if len(content) > config.max_file_bytes:
        mb = config.max_file_bytes / (1024 * 1024)
        out.errors.append(batch_error("file_too_large", f"The input file is larger than the maximum of {mb:g} MB.", None, "input_file_id"))
        return out
    lines = content.split(b"\n")
    n_requests = sum(1 for raw in lines if raw.strip())
    out.n_lines = n_requests
    if n_requests == 0:
        out.errors.append(batch_error("empty_file", "The input file is empty.", None, "input_file_id"))
        return out
    if n_requests > config.max_requests_per_file:
        out.errors.append(batch_error(
            "too_many_tasks",
            f"The input file contains {n_requests} requests; the maximum is {config.max_requests_per_file}.",
            None, "input_file_id"))
        return out
    seen: set[str] = set()
    first_model: str | None = None
    supported = set(config.supported_models) if config.supported_models is not None else None
    errors = out.errors
    tokens = 0
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue  # blank lines (e.g. the trailing newline) are not requests
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            errors.append(batch_error("invalid_json_line", "This line is not parseable as valid JSON.", number))
            continue
        bad = False
        for key in ("custom_id", "method", "url", "body"):
            if key not in obj or obj[key] is None:
                errors.append(batch_error("missing_required_parameter", f"Missing required parameter: '{key}'.", number, key))
                bad = True
        if bad:
            continue
        custom_id, body = obj["custom_id"], obj["body"]
        if not isinstance(custom_id, str):
            errors.append(batch_error("invalid_request", "custom_id must be a string.", number, "custom_id"))
            continue
        out.seen_ids.append(custom_id)
        if custom_id in seen:
            errors.append(batch_error("duplicate_custom_id", f"The custom_id '{custom_id}' is used more than once in this file.", number, "custom_id"))
        seen.add(custom_id)
        if str(obj["method"]).upper() != "POST":
            errors.append(batch_error("invalid_request", "Only the POST method is supported in the Batch API.", number, "method"))
        if obj["url"] != endpoint:
            errors.append(batch_error("invalid_url", "The URL provided for this request does not match the batch endpoint.", number, "url"))
        if not isinstance(body, dict):
            errors.append(batch_error("invalid_request", "The request body must be a JSON object.", number, "body"))
            continue
        if body.get("stream") is True:
            errors.append(batch_error("streaming_unsupported", "Chat Completions: Streaming is not supported in the Batch API.", number, "body.stream"))
        model = body.get("model")
        if model is None and endpoint not in _MODEL_OPTIONAL:
            errors.append(batch_error("invalid_request", "Model parameter is required.", number, "body.model"))
        elif model is not None:
            if supported is not None and model not in supported:
                errors.append(batch_error("model_not_found", f"The provided model '{model}' is not supported by the Batch API.", number, "body.model"))
            elif first_model is None:
                first_model = model
            elif model != first_model:
                errors.append(batch_error(
                    "model_mismatch",
                    f"The model '{model}' does not match the model '{first_model}' of the other requests; a batch must use one model.",
                    number, "body.model"))
        for key in _REQUIRED_BODY_KEYS.get(endpoint, ()):
            if key not in body:
                errors.append(batch_error("invalid_request", f"{key.capitalize()} parameter is required.", number, f"body.{key}"))
        if not errors:
            # Only keep bodies while the file is still valid: a failed batch needs none.
            out.requests.append((custom_id, body))
            tokens += math.ceil(len(json.dumps(body, ensure_ascii=False)) / 4)
    out.model = first_model
    out.tokens = tokens
    if errors:
        out.requests = []
    return out
