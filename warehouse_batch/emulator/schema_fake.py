"""Make a JSON value that validates against a (structured-output style) JSON Schema.

Deterministic: the caller passes a seeded `random.Random`. Covers what structured
outputs allow: object/properties/required, enum/const, string formats (date,
date-time), number/integer bounds (incl. exclusive), boolean, arrays with
items/minItems/maxItems, anyOf/oneOf (e.g. with null), type lists, $defs/$ref.
"""
from __future__ import annotations

import math
import random
from typing import Any

_WORDS = ["alpha", "beta", "gamma", "delta", "omega", "amber", "cobalt", "maple", "river", "stone"]
_MAX_DEPTH = 12  # recursive $ref schemas must terminate


def fake_from_schema(schema: dict[str, Any], rng: random.Random) -> Any:
    return _fake(schema, schema, rng, 0)


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#"):
        return {}
    node: Any = root
    for part in ref.lstrip("#/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def _fake(schema: Any, root: dict[str, Any], rng: random.Random, depth: int) -> Any:
    if schema is True or not isinstance(schema, dict):
        return None if depth > 0 else {}
    if "$ref" in schema:
        target = _resolve(schema["$ref"], root)
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _fake(merged, root, rng, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = schema[key]
            # Prefer a non-null branch so the answer carries content; fall back to null
            # when nesting is deep (recursive schemas).
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            if depth >= _MAX_DEPTH and len(non_null) < len(options):
                return None
            return _fake(rng.choice(non_null or options), root, rng, depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            part = _resolve(part["$ref"], root) if isinstance(part, dict) and "$ref" in part else part
            if isinstance(part, dict):
                merged.update(part)
        return _fake(merged, root, rng, depth + 1)
    typ = schema.get("type")
    if isinstance(typ, list):
        non_null = [t for t in typ if t != "null"]
        typ = rng.choice(non_null) if non_null else "null"
    if typ is None:
        typ = "object" if "properties" in schema else "array" if "items" in schema else "string"
    return _BY_TYPE.get(typ, _fake_string)(schema, root, rng, depth)


def _fake_object(schema: dict[str, Any], root: dict[str, Any], rng: random.Random, depth: int) -> Any:
    props: dict[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    out: dict[str, Any] = {}
    for name, sub in props.items():
        # Strict mode requires every property; non-strict optional ones are included
        # too unless we are deep in a recursive schema.
        if name in required or depth < _MAX_DEPTH:
            out[name] = _fake(sub, root, rng, depth + 1)
    return out


def _fake_array(schema: dict[str, Any], root: dict[str, Any], rng: random.Random, depth: int) -> Any:
    lo = int(schema.get("minItems", 0))
    hi = int(schema.get("maxItems", max(lo, 3)))
    if depth >= _MAX_DEPTH:
        hi = lo
    n = rng.randint(lo, max(lo, hi)) if hi >= lo else lo
    if n == 0 and lo == 0 and hi > 0:
        n = 1  # an empty list is valid but makes a poor fake answer
    items = schema.get("items", {})
    values = [_fake(items, root, rng, depth + 1) for _ in range(n)]
    if schema.get("uniqueItems"):
        unique: list[Any] = []
        for v in values:
            if v not in unique:
                unique.append(v)
        values = unique if len(unique) >= lo else values
    return values


def _bounds(schema: dict[str, Any], integer: bool) -> tuple[float, float]:
    lo = schema.get("minimum", -math.inf)
    hi = schema.get("maximum", math.inf)
    step = 1 if integer else 1e-6
    if "exclusiveMinimum" in schema:
        em = schema["exclusiveMinimum"]
        lo = max(lo, em + step) if not isinstance(em, bool) else (lo + step if em else lo)
    if "exclusiveMaximum" in schema:
        ex = schema["exclusiveMaximum"]
        hi = min(hi, ex - step) if not isinstance(ex, bool) else (hi - step if ex else hi)
    if lo == -math.inf and hi == math.inf:
        lo, hi = 0, 100
    elif lo == -math.inf:
        lo = hi - 100
    elif hi == math.inf:
        hi = lo + 100
    return lo, hi


def _fake_integer(schema: dict[str, Any], root: dict[str, Any], rng: random.Random, depth: int) -> Any:
    lo, hi = _bounds(schema, True)
    lo_i, hi_i = math.ceil(lo), math.floor(hi)
    value = rng.randint(lo_i, max(lo_i, hi_i))
    mult = schema.get("multipleOf")
    if isinstance(mult, int) and mult > 0:
        value = (value // mult) * mult
        if value < lo_i:
            value += mult
    return value


def _fake_number(schema: dict[str, Any], root: dict[str, Any], rng: random.Random, depth: int) -> Any:
    lo, hi = _bounds(schema, False)
    value = round(rng.uniform(lo, hi), 4)
    return min(max(value, lo), hi)  # rounding must not step outside the bounds


def _fake_string(schema: dict[str, Any], root: dict[str, Any], rng: random.Random, depth: int) -> Any:
    fmt = schema.get("format")
    if fmt == "date":
        return f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if fmt == "date-time":
        return f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
    if fmt == "time":
        return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
    if fmt == "email":
        return f"{rng.choice(_WORDS)}@example.com"
    if fmt == "uuid":
        return "%08x-%04x-4%03x-8%03x-%012x" % (rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12), rng.getrandbits(12), rng.getrandbits(48))
    if fmt in ("uri", "url"):
        return f"https://example.com/{rng.choice(_WORDS)}"
    text = " ".join(rng.choice(_WORDS) for _ in range(2))
    lo = int(schema.get("minLength", 0))
    hi = schema.get("maxLength")
    if len(text) < lo:
        text = text + "x" * (lo - len(text))
    if hi is not None:
        text = text[: int(hi)]
    return text


def _fake_boolean(schema: dict[str, Any], root: dict[str, Any], rng: random.Random, depth: int) -> Any:
    return rng.random() < 0.5


def _fake_null(schema: dict[str, Any], root: dict[str, Any], rng: random.Random, depth: int) -> Any:
    return None


_BY_TYPE = {
    "object": _fake_object,
    "array": _fake_array,
    "integer": _fake_integer,
    "number": _fake_number,
    "string": _fake_string,
    "boolean": _fake_boolean,
    "null": _fake_null,
}
