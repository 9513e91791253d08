"""The responder as a pure function: determinism, schema-valid JSON, markers, rates."""
from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from warehouse_batch.emulator import EmulatorConfig
from warehouse_batch.emulator.responder import respond

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "rank": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 4},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
        "author": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "born": {"type": "string", "format": "date"},
                           "seen": {"type": "string", "format": "date-time"}},
            "required": ["name", "born", "seen"], "additionalProperties": False,
        },
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "flag": {"type": "boolean"},
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "maxItems": 3},
    },
    "required": ["sentiment", "score", "rank", "tags", "author", "note", "flag", "items"],
    "additionalProperties": False,
    "$defs": {"item": {"type": "object", "properties": {"qty": {"type": "integer", "minimum": 1, "maximum": 9}},
                       "required": ["qty"], "additionalProperties": False}},
}


def _chat(text: str, schema: dict[str, Any] | None = None, system: str | None = None, **cfg: Any) -> tuple[int, dict[str, Any]]:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": messages}
    if schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "out", "strict": True, "schema": schema}}
    return respond("/v1/chat/completions", body, "cid-" + text, EmulatorConfig(**cfg))


@pytest.mark.parametrize("i", range(25))
def test_chat_json_is_schema_valid(i: int) -> None:
    status, body = _chat(f"review number {i}", SCHEMA)
    assert status == 200
    value = json.loads(body["choices"][0]["message"]["content"])
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(value)


def test_responses_json_is_schema_valid() -> None:
    body = {"model": "gpt-4o-mini", "instructions": "Extract.", "input": [{"role": "user", "content": "text"}],
            "text": {"format": {"type": "json_schema", "name": "out", "strict": True, "schema": SCHEMA}}}
    status, resp = respond("/v1/responses", body, "c", EmulatorConfig())
    assert status == 200 and resp["object"] == "response" and resp["instructions"] == "Extract."
    message = next(o for o in resp["output"] if o["type"] == "message")
    text = next(c for c in message["content"] if c["type"] == "output_text")["text"]
    jsonschema.Draft202012Validator(SCHEMA).validate(json.loads(text))


def test_deterministic_and_seeded() -> None:
    assert _chat("same", SCHEMA) == _chat("same", SCHEMA)
    assert _chat("same", SCHEMA)[1]["choices"] != _chat("same", SCHEMA, seed=7)[1]["choices"]


@pytest.mark.parametrize(("system", "words"), [
    ("Classify as positive, negative or neutral.", {"positive", "negative", "neutral"}),
    ("Label: 'cat', 'dog', or 'bird'", {"cat", "dog", "bird"}),
])
def test_options_in_system_prompt(system: str, words: set[str]) -> None:
    answers = {_chat(f"text {i}", system=system)[1]["choices"][0]["message"]["content"] for i in range(30)}
    assert answers <= set(words) and len(answers) > 1


def test_markers() -> None:
    s, b = _chat("x [[emulator:error_500]]")
    assert s == 500 and b["error"]["type"] == "server_error"
    s, b = _chat("x [[emulator:error_400]]")
    assert s == 400 and b["error"]["code"] == "context_length_exceeded"
    s, b = _chat("x [[emulator:refusal]]", SCHEMA)
    msg = b["choices"][0]["message"]
    assert s == 200 and msg["content"] is None and msg["refusal"]
    full = _chat("x", SCHEMA)[1]["choices"][0]["message"]["content"]
    s, b = _chat("x [[emulator:truncate]]", SCHEMA)
    assert b["choices"][0]["finish_reason"] == "length"
    with pytest.raises(ValueError):
        json.loads(b["choices"][0]["message"]["content"])
    assert len(b["choices"][0]["message"]["content"]) < len(full)
    s, b = _chat("x [[emulator:invalid_json]]", SCHEMA)
    with pytest.raises(ValueError):
        json.loads(b["choices"][0]["message"]["content"])


def test_rates_are_deterministic_fractions() -> None:
    cfg = EmulatorConfig(error_rate=0.2, refusal_rate=0.1)
    results = [respond("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "q"}]}, f"id{i}", cfg)
               for i in range(1000)]
    errors = sum(1 for s, _ in results if s == 500)
    refusals = sum(1 for s, b in results if s == 200 and b["choices"][0]["message"]["refusal"])
    assert 150 < errors < 250 and 60 < refusals < 140
    again = [respond("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "q"}]}, f"id{i}", cfg)[0]
             for i in range(1000)]
    assert again == [s for s, _ in results]


@pytest.mark.parametrize("text", [
    "Would definitely buy it AGAIN, five stars", "It BROKE after a week. Refunded.", "Don’t recommend: a ſcam",
    "İsn't great, isn’t bad", "so-so, 3 stars, okay", "looks fine", "Returned it; RETURNE it", "naïve Ωmega über-GOOD",
])
def test_sentiment_lexicon_matches_every_cue_case_insensitively(text: str) -> None:
    # The fast path (cues skipped when their text is absent, lower-cased matching) must score as
    # running every case-insensitive cue regex over the text does.
    from warehouse_batch.emulator import responder

    score = {p: sum(w * len(rx.findall(text)) for w, rx, _, _ in cues) for p, cues in responder._CUE_RES.items()}
    expected = None
    if any(score.values()):
        net = score["positive"] - score["negative"]
        expected = ("neutral" if score["neutral"] >= max(score["positive"], score["negative"])
                    else "positive" if net > 0 else "negative" if net < 0 else "neutral")
    assert responder._polarity(text) == expected
