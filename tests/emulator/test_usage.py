"""The emulator bills like the service and answers sentiment tasks plausibly, deterministically."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from warehouse_batch import tokens
from warehouse_batch.emulator import EmulatorConfig
from warehouse_batch.emulator.responder import respond

REVIEWS = Path(__file__).resolve().parents[2] / "examples" / "reviews" / "reviews.csv"
SENTIMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"sentiment": {"type": "string", "enum": ["Positive", "Neutral", "Negative"]},
                   "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
    "required": ["sentiment", "confidence"], "additionalProperties": False,
}
STARS = {"5": "Positive", "3": "Neutral", "1": "Negative"}


def _chat(body: dict[str, Any], custom_id: str = "c") -> dict[str, Any]:
    status, resp = respond(tokens.CHAT, body, custom_id, EmulatorConfig())
    assert status == 200
    return resp


def _reviews() -> list[dict[str, str]]:
    with REVIEWS.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_chat_usage_is_the_cookbook_count_and_the_answer_tokens() -> None:
    messages = [{"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
                {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."}]
    for model in ("gpt-4o-mini", "gpt-4"):
        resp = _chat({"model": model, "messages": messages})
        usage, content = resp["usage"], resp["choices"][0]["message"]["content"]
        assert usage["prompt_tokens"] == tokens.count_messages(messages, model)
        assert usage["completion_tokens"] == tokens.count_text(content, tokens.encoding_for_model(model))
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_structured_usage_counts_the_schema_and_a_label_is_short() -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Five stars, would buy again."}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "strict": True, "schema": SENTIMENT_SCHEMA}}}
    resp = _chat(body)
    assert resp["usage"]["prompt_tokens"] == tokens.count_request(body, tokens.CHAT)
    assert resp["usage"]["prompt_tokens"] > tokens.count_request({k: v for k, v in body.items() if k != "response_format"}, tokens.CHAT)
    assert json.loads(resp["choices"][0]["message"]["content"])["sentiment"] == "Positive"
    assert resp["usage"]["completion_tokens"] < 20


def test_responses_and_embeddings_usage() -> None:
    body = {"model": "gpt-4o-mini", "instructions": "Reply in a sentence.", "input": "Tell me about otters"}
    status, resp = respond(tokens.RESPONSES, body, "r", EmulatorConfig())
    text = resp["output"][0]["content"][0]["text"]
    assert resp["usage"]["input_tokens"] == tokens.count_request(body, tokens.RESPONSES)
    assert resp["usage"]["output_tokens"] == tokens.count_text(text)
    emb = {"model": "text-embedding-3-small", "input": ["hello world", "tiktoken is great!"]}
    status, resp = respond(tokens.EMBEDDINGS, emb, "e", EmulatorConfig())
    assert resp["usage"] == {"prompt_tokens": 2 + 6, "total_tokens": 2 + 6}  # cl100k counts, see tests/test_tokens.py


@pytest.mark.parametrize(("key", "endpoint"), [("max_tokens", tokens.CHAT), ("max_completion_tokens", tokens.CHAT),
                                               ("max_output_tokens", tokens.RESPONSES)])
def test_answers_are_bounded_by_the_token_limit(key: str, endpoint: str) -> None:
    schema_body: dict[str, Any]
    if endpoint == tokens.CHAT:
        schema_body = {"messages": [{"role": "user", "content": "Rate it"}],
                       "response_format": {"type": "json_schema", "json_schema": {"name": "s", "strict": True, "schema": SENTIMENT_SCHEMA}}}
    else:
        schema_body = {"input": "Rate it", "text": {"format": {"type": "json_schema", "name": "s", "strict": True, "schema": SENTIMENT_SCHEMA}}}
    status, resp = respond(endpoint, {"model": "gpt-4o-mini", key: 4, **schema_body}, "x", EmulatorConfig())
    if endpoint == tokens.CHAT:
        choice = resp["choices"][0]
        assert choice["finish_reason"] == "length" and resp["usage"]["completion_tokens"] == 4
        assert tokens.count_text(choice["message"]["content"]) == 4
    else:
        assert resp["status"] == "incomplete" and resp["incomplete_details"] == {"reason": "max_output_tokens"}
        assert resp["usage"]["output_tokens"] == 4
    # Free text keeps the sentences that fit, and stops normally.
    free = {"model": "gpt-4o-mini", key: 8, **({"messages": [{"role": "user", "content": "Tell me about otters"}]}
                                               if endpoint == tokens.CHAT else {"input": "Tell me about otters"})}
    status, resp = respond(endpoint, free, "y", EmulatorConfig())
    if endpoint == tokens.CHAT:
        assert resp["choices"][0]["finish_reason"] == "stop" and 0 < resp["usage"]["completion_tokens"] <= 8
    else:
        assert resp["status"] == "completed" and 0 < resp["usage"]["output_tokens"] <= 8


def test_free_text_is_a_sentence_or_two_and_deterministic() -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Tell me about otters and rivers"}]}
    content = _chat(body)["choices"][0]["message"]["content"]
    assert content == _chat(body)["choices"][0]["message"]["content"]
    assert 1 <= content.count(".") <= 3 and "Tell me about otters" in content
    assert 5 <= tokens.count_text(content) <= 40


@pytest.mark.parametrize("how", ["system options", "schema enum", "question in the prompt", "lower-case labels"])
def test_review_sentiment_follows_the_stars(how: str) -> None:
    """Every review of the example dataset gets the label its star rating implies."""
    wrong = []
    for row in _reviews():
        text = row["review_text"]
        if how == "system options":
            body = {"model": "gpt-4o-mini", "messages": [
                {"role": "system", "content": "Classify the sentiment of this product review as Positive, Neutral or Negative."},
                {"role": "user", "content": text}], "max_tokens": 5}
            answer = _chat(body, row["review_id"])["choices"][0]["message"]["content"]
        elif how == "schema enum":
            body = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "Classify the review."}, {"role": "user", "content": text}],
                    "response_format": {"type": "json_schema", "json_schema": {"name": "s", "strict": True, "schema": SENTIMENT_SCHEMA}}}
            answer = json.loads(_chat(body, row["review_id"])["choices"][0]["message"]["content"])["sentiment"]
        elif how == "question in the prompt":
            body = {"model": "gpt-4o-mini", "messages": [
                {"role": "user", "content": f"Classify the sentiment as Positive, Neutral or Negative: {text}"}]}
            answer = _chat(body, row["review_id"])["choices"][0]["message"]["content"]
        else:
            body = {"model": "gpt-4o-mini", "messages": [
                {"role": "system", "content": "Answer positive, neutral or negative."}, {"role": "user", "content": text}]}
            answer = _chat(body, row["review_id"])["choices"][0]["message"]["content"].capitalize()
        if answer != STARS[row["stars"]]:
            wrong.append((row["stars"], text, answer))
    assert not wrong, wrong[:5]


@pytest.mark.parametrize(("text", "expected"), [
    ("Five stars, would buy again", "Positive"),
    ("Cheap plastic, feels flimsy", "Negative"),
    ("I want a refund.", "Negative"),
    ("It's okay, nothing special.", "Neutral"),
])
def test_the_demo_phrases(text: str, expected: str) -> None:
    body = {"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "Classify the sentiment of this product review as Positive, Neutral or Negative."},
        {"role": "user", "content": text}]}
    assert _chat(body)["choices"][0]["message"]["content"] == expected


def test_labels_without_neutral_and_other_options() -> None:
    two = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "Answer either good or bad."},
                                                 {"role": "user", "content": "It broke after a day."}]}
    assert _chat(two)["choices"][0]["message"]["content"] == "bad"
    # Options that are not sentiment labels keep the seeded choice.
    colours = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "Reply with red, green or blue."},
                                                     {"role": "user", "content": "I love it"}]}
    assert _chat(colours)["choices"][0]["message"]["content"] in ("red", "green", "blue")
