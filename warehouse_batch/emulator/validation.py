"""Input-file checks of §4: every bad line is reported with its 1-based physical line."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .config import EmulatorConfig
from .errors import APIError
from .flavors import canonical_endpoint, flavor
from .models import is_supported

# Endpoints whose body must carry these keys (besides `model`).
_REQUIRED_BODY_KEYS = {
    "/v1/chat/completions": ("messages",),
    "/v1/responses": ("input",),
    "/v1/embeddings": ("input",),
    "/v1/completions": ("prompt",),
    "/v1/moderations": ("input",),
}
_MODEL_OPTIONAL = {"/v1/moderations"}  # moderations default to omni-moderation-latest
EMBEDDINGS = "/v1/embeddings"

# A batch input: its bytes (small files kept in memory) or a file on disk, read line by line.
Input = bytes | Path
OnRequest = Callable[[str, dict[str, Any]], None]


def input_size(content: Input) -> int:
    return len(content) if isinstance(content, bytes) else content.stat().st_size


def input_lines(content: Input) -> Iterator[bytes]:
    """The physical lines (without their newline), as `content.split(b"\n")` gives them, streamed."""
    if isinstance(content, bytes):
        yield from content.split(b"\n")
        return
    with open(content, "rb") as handle:
        last = b"\n"
        for last in handle:
            yield last[:-1] if last.endswith(b"\n") else last
        if last.endswith(b"\n"):
            yield b""  # split() ends with an empty piece after a final newline


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


def line_tokens(body: Any) -> int:
    """Enqueued tokens of one request: what the quota counts (a stand-in for a tokenizer)."""
    return math.ceil(len(json.dumps(body, ensure_ascii=False)) / 4)


def enqueued_tokens(content: Input) -> tuple[str | None, int]:
    """(model of the first request, tokens of all parseable requests) without full validation:
    a fail-fast quota answers at create, before the batch is validated."""
    model: str | None = None
    tokens = 0
    for raw in input_lines(content):
        if not raw.strip():
            continue
        try:
            body = json.loads(raw).get("body")
        except (ValueError, AttributeError):
            continue
        if isinstance(body, dict):
            model = model or body.get("model")
            tokens += line_tokens(body)
    return model, tokens


def embedding_inputs(body: dict[str, Any]) -> int:
    """How many embeddings one request asks for: a string or a token array is one input,
    a list of them is one per item."""
    value = body.get("input")
    if isinstance(value, list) and value and not all(isinstance(v, int) for v in value):
        return len(value)
    return 1


def check_embedding_request(body: dict[str, Any], config: EmulatorConfig) -> None:
    """Raise the 400 an embeddings request with too many inputs gets, in a batch (its line goes
    to the error file) as synchronously."""
    n = embedding_inputs(body)
    if n > config.max_embedding_inputs_per_request:
        raise APIError(400, f"Invalid 'input': array too long. Expected an array with maximum length "
                            f"{config.max_embedding_inputs_per_request}, but got an array with length {n} instead.",
                       param="input", code="array_above_max_length")


def validate(content: Input, endpoint: str, config: EmulatorConfig, on_request: OnRequest | None = None) -> Validated:
    """Check every line of the input. Each request is handed to `on_request(custom_id, body)` while the
    file is still valid (default: kept in `requests`), so a caller can answer requests as they are read,
    in one pass, and drop its work if a later line turns out bad (`errors` is then non-empty)."""
    out = Validated()
    keep = on_request or (lambda custom_id, body: out.requests.append((custom_id, body)))
    max_requests = config.max_requests_per_file or flavor(config.flavor).max_requests_per_file
    if input_size(content) > config.max_file_bytes:
        mb = config.max_file_bytes / (1024 * 1024)
        out.errors.append(batch_error("file_too_large", f"The input file is larger than the maximum of {mb:g} MB.", None, "input_file_id"))
        return out
    n_requests = sum(1 for raw in input_lines(content) if raw.strip())
    out.n_lines = n_requests
    if n_requests == 0:
        out.errors.append(batch_error("empty_file", "The input file is empty.", None, "input_file_id"))
        return out
    if n_requests > max_requests:
        out.errors.append(batch_error(
            "too_many_tasks",
            f"The input file contains {n_requests} requests; the maximum is {max_requests}.",
            None, "input_file_id"))
        return out
    seen: set[str] = set()
    first_model: str | None = None
    errors = out.errors
    tokens = 0
    inputs = 0  # embedding inputs across the batch
    for number, raw in enumerate(input_lines(content), start=1):
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
        if canonical_endpoint(str(obj["url"]), config.flavor) != endpoint:
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
            if not isinstance(model, str) or not is_supported(model, config.supported_models):
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
        if endpoint == EMBEDDINGS:
            inputs += embedding_inputs(body)
        if not errors:
            # Only pass bodies on while the file is still valid: a failed batch needs none.
            keep(custom_id, body)
            tokens += line_tokens(body)
    if inputs > config.max_embedding_inputs_per_batch:
        # No documented OpenAI code for this one; too_many_tasks is Azure's name for an oversized batch.
        errors.append(batch_error(
            "too_many_tasks",
            f"The batch contains {inputs:,} embedding inputs; the maximum is "
            f"{config.max_embedding_inputs_per_batch:,} across all requests of a batch.",
            None, "input_file_id"))
    out.model = first_model
    out.tokens = tokens
    if errors:
        out.requests = []
    return out
