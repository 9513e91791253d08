"""Output-token priors: how long an answer is expected to be, and at most, before any answer exists.

Once a job (or another job with the same endpoint, model and schema) has answers, their mean
output is the expected figure (`estimates.py`); these priors are for the first run. Each is a
documented rule, not a fit to any model:

* **Embeddings, moderations**: 0 (output is not billed).
* **A structured-output schema**: the tokens of a *typical answer* of the schema (`typical_answer`):
  every property present; an enum its longest option; a string a three-word phrase (or a value of
  its `format`, cut to `maxLength`); a number two decimals inside its bounds; an array
  `clamp(3, minItems, maxItems)` items; the first non-null branch of an `anyOf`. Written as compact
  JSON, as the service's structured outputs are.
* **A classification prompt**: a system prompt that lists the answers ("… as Positive, Neutral or
  Negative") expects one of them: the tokens of the longest.
* **Free text**: `FREE_TEXT_TOKENS`.
* **Reasoning models** (o1, o3, o4, gpt-5, gpt-oss): `REASONING_TOKENS[reasoning_effort]` more,
  expected and (×`REASONING_UPPER_FACTOR`) at most, since reasoning tokens are billed as output.

Upper bound of a request: its `max_tokens` / `max_completion_tokens` / `max_output_tokens`; else,
for a schema whose every value is bounded (enums, `maxLength` strings, `maxItems` arrays,
numbers), the schema's bound (`schema_bound`: a token is at least one byte, so the bytes of the
longest possible answer bound its tokens); else the endpoint's `default_output_tokens` (256 for
text; the service's real ceiling is the model's maximum output, far higher).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from warehouse_batch import endpoints, tokens

#: Expected tokens of a free-text answer with no history (a paragraph).
FREE_TEXT_TOKENS = 150
#: Expected reasoning tokens per request of a reasoning model, by reasoning_effort (default medium).
REASONING_TOKENS = {"none": 0, "minimal": 0, "low": 300, "medium": 1000, "high": 3000, "xhigh": 6000}
REASONING_UPPER_FACTOR = 4
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5", "gpt-oss")
_PHRASE = "typical short phrase"
_FORMATS = {"date": "2024-05-17", "date-time": "2024-05-17T09:30:00Z", "time": "09:30:00Z",
            "email": "name@example.com", "uuid": "123e4567-e89b-42d3-a456-426614174000",
            "uri": "https://example.com/page", "url": "https://example.com/page"}
_MAX_DEPTH = 8
_NUMBER_BYTES = 24  # the longest JSON float a model writes: -1.7976931348623157e+308
_CHAR_BYTES = 6  # a string character at worst: a \uXXXX escape
# "as A, B or C" / "A, B, or C" / "either A or B" — optionally quoted single words.
_LABEL = r"[\"'`]?([A-Za-z][\w-]*)[\"'`]?"
_LIST_RE = re.compile(rf"{_LABEL}((?:\s*,\s*{_LABEL})+),?\s+or\s+{_LABEL}")
_EITHER_RE = re.compile(rf"\beither\s+{_LABEL}\s+or\s+{_LABEL}", re.IGNORECASE)


def is_reasoning_model(model: str | None) -> bool:
    name = (model or "").lower().removeprefix("ft:")
    return name.startswith(_REASONING_PREFIXES)


def reasoning_tokens(model: str | None, params: dict[str, Any]) -> int:
    """Expected reasoning tokens of one request (0 for models that do not reason)."""
    if not is_reasoning_model(model):
        return 0
    effort = params.get("reasoning_effort")
    if isinstance(params.get("reasoning"), dict):
        effort = params["reasoning"].get("effort", effort)
    return REASONING_TOKENS.get(str(effort or "medium"), REASONING_TOKENS["medium"])


# -- schemas ------------------------------------------------------------------------------
def _resolve(node: Any, root: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(node, dict):
        return {}
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        target: Any = root
        for part in ref.lstrip("#/").split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(target, dict) else {}
        return {**(target if isinstance(target, dict) else {}), **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _branches(node: dict[str, Any]) -> list[Any]:
    return node.get("anyOf") or node.get("oneOf") or []


def _kind(node: dict[str, Any]) -> str:
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in node else "array" if "items" in node else "string"
    return str(kind)


def _bounds(node: dict[str, Any]) -> tuple[float, float]:
    lo = node.get("minimum", node.get("exclusiveMinimum"))
    hi = node.get("maximum", node.get("exclusiveMaximum"))
    lo = lo if isinstance(lo, (int, float)) and not isinstance(lo, bool) else None
    hi = hi if isinstance(hi, (int, float)) and not isinstance(hi, bool) else None
    if lo is None and hi is None:
        return 0.0, 100.0
    if lo is None:
        return hi - 100.0, hi  # type: ignore[operator]
    if hi is None:
        return lo, lo + 100.0
    return lo, hi


def typical_answer(schema: dict[str, Any]) -> Any:
    """A typical value of a structured-output JSON Schema (the rules are in the module docstring)."""
    return _typical(schema, schema, 0)


def _typical(node: Any, root: dict[str, Any], depth: int) -> Any:
    node = _resolve(node, root)
    if depth > _MAX_DEPTH or not node:
        return None
    if "const" in node:
        return node["const"]
    if node.get("enum"):
        return max(node["enum"], key=lambda v: len(orjson.dumps(v)))
    branches = _branches(node)
    if branches:
        useful = [b for b in branches if _kind(_resolve(b, root)) != "null"] or branches
        return _typical(useful[0], root, depth + 1)
    kind = _kind(node)
    if kind == "object":
        return {name: _typical(sub, root, depth + 1) for name, sub in (node.get("properties") or {}).items()}
    if kind == "array":
        lo, hi = int(node.get("minItems", 0)), node.get("maxItems")
        n = max(lo, 3 if hi is None else min(3, int(hi)))
        return [_typical(node.get("items", {}), root, depth + 1) for _ in range(n)]
    if kind in ("number", "integer"):
        lo, hi = _bounds(node)
        value = lo + 0.85 * (hi - lo)
        return round(value) if kind == "integer" else round(value, 2)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    text = _FORMATS.get(str(node.get("format")), _PHRASE)
    if isinstance(node.get("maxLength"), int):
        text = text[: node["maxLength"]]
    return text + "x" * max(0, int(node.get("minLength", 0)) - len(text))


def schema_bound(schema: dict[str, Any]) -> int | None:
    """Output tokens no answer of the schema can exceed, or None when some value is unbounded.

    A token covers at least one byte, so the bytes of the longest possible answer bound its tokens."""
    return _max_bytes(schema, schema, 0)


def _max_bytes(node: Any, root: dict[str, Any], depth: int) -> int | None:
    node = _resolve(node, root)
    if depth > _MAX_DEPTH:
        return None  # a recursive schema has no bound
    if not node:
        return None
    if "const" in node:
        return len(orjson.dumps(node["const"]))
    if node.get("enum"):
        return max(len(orjson.dumps(v)) for v in node["enum"]) * 2  # escapes may double a value's bytes
    branches = _branches(node)
    if branches:
        sizes = [_max_bytes(b, root, depth + 1) for b in branches]
        return None if any(s is None for s in sizes) else max(sizes)  # type: ignore[type-var]
    kind = _kind(node)
    if kind == "object":
        total = 2
        for name, sub in (node.get("properties") or {}).items():
            size = _max_bytes(sub, root, depth + 1)
            if size is None:
                return None
            total += len(orjson.dumps(name)) * 2 + 2 + size
        return total
    if kind == "array":
        item = _max_bytes(node.get("items", {}), root, depth + 1)
        if item is None or not isinstance(node.get("maxItems"), int):
            return None
        return 2 + node["maxItems"] * (item + 1)
    if kind in ("number", "integer"):
        return _NUMBER_BYTES
    if kind == "boolean":
        return 5
    if kind == "null":
        return 4
    if isinstance(node.get("maxLength"), int):
        return 2 + node["maxLength"] * _CHAR_BYTES
    return len(_FORMATS[node["format"]]) + 2 if node.get("format") in _FORMATS else None


# -- prompts ------------------------------------------------------------------------------
def label_options(system: str | None) -> tuple[str, ...] | None:
    """The answers a classification prompt lists ("… as Positive, Neutral or Negative"), if any."""
    if not system:
        return None
    found = _LIST_RE.search(system)
    if found:
        middle = [w.strip().strip("\"'`") for w in found.group(2).split(",") if w.strip()]
        return (found.group(1), *middle, found.group(found.lastindex or 1))
    either = _EITHER_RE.search(system)
    return (either.group(1), either.group(2)) if either else None


# -- the priors ---------------------------------------------------------------------------
def expected_output(endpoint: str, model: str | None, *, system: str | None, schema: dict[str, Any] | None,
                    params: dict[str, Any]) -> tuple[int, str]:
    """(expected output tokens of one request, which rule gave them) with no answers to learn from."""
    if endpoints.get(endpoint).default_output_tokens == 0:
        return 0, "none (output is not billed)"
    encoding = tokens.encoding_for_model(model)
    reasoning = reasoning_tokens(model, params)
    extra = f" + {reasoning:,} reasoning" if reasoning else ""
    if schema is not None:
        text = orjson.dumps(typical_answer(schema)).decode()
        return tokens.count_text(text, encoding) + reasoning, f"prior: a typical answer of the schema{extra}"
    labels = label_options(system)
    if labels:
        longest = max(tokens.count_text(label, encoding) for label in labels)
        return longest + reasoning, f"prior: one of the labels the system prompt lists{extra}"
    return FREE_TEXT_TOKENS + reasoning, f"prior: free text, {FREE_TEXT_TOKENS} tokens{extra}"


def upper_output(endpoint: str, model: str | None, *, schema: dict[str, Any] | None,
                 params: dict[str, Any]) -> int:
    """Output tokens a request without max_tokens & co. is counted at, at most (see the module docstring)."""
    default = endpoints.get(endpoint).default_output_tokens
    if default == 0:
        return 0
    bound = schema_bound(schema) if schema is not None else None
    visible = bound if bound is not None else default
    return visible + REASONING_UPPER_FACTOR * reasoning_tokens(model, params)


__all__ = ["FREE_TEXT_TOKENS", "REASONING_TOKENS", "expected_output", "is_reasoning_model", "label_options",
           "reasoning_tokens", "schema_bound", "typical_answer", "upper_output"]
