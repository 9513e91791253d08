"""Token counts: published tokenizer outputs, the cookbook's chat overhead, endpoints, bulk counts, estimates."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest

from warehouse_batch import tokens

# Sources of the numbers below (each row names one):
#   [cookbook] openai/openai-cookbook, examples/How_to_count_tokens_with_tiktoken.ipynb, §3 and §5
#              ("Comparing encodings": the token lists printed for cl100k_base and o200k_base)
#   [tiktoken] openai/tiktoken, tests/test_encoding.py (test_simple, test_simple_regex,
#              test_basic_encode, test_encode_surrogate_pairs) — cl100k_base only
#   [vectors]  reference vectors of two tiktoken ports checked against tiktoken: a JS verifier's
#              o200kCases / cl100kCases and turbotoken's tests/test_core.py
#              ("hello 👋 world 🌍", "This is some text")
GOLDEN: list[tuple[str, str, int, int]] = [
    # (what, text, o200k_base, cl100k_base)
    ("ascii", "hello world", 2, 2),  # o200k [24912, 2375] [vectors]; cl100k [15339, 1917] [tiktoken]
    ("ascii", "tiktoken is great!", 6, 6),  # o200k [83, 8251, 2488, 382, 2212, 0]; cl100k [83, 1609, 5963, 374, 2294, 0] [cookbook]
    ("ascii", "antidisestablishmentarianism", 6, 6),  # [cookbook] §5
    ("ascii", "This is some text", 4, 4),  # o200k [2500, 382, 1236, 2201]; cl100k [2028, 374, 1063, 1495] [vectors]
    ("code", "2 + 2 = 4", 7, 7),  # o200k [17, 659, 220, 17, 314, 220, 19]; cl100k [17, 489, 220, 17, 284, 220, 19] [cookbook]
    ("code", "<|endoftext|>", 7, 7),  # special-token text counted as ordinary text: 7 pieces in both [vectors]
    ("cjk", "お誕生日おめでとう", 8, 9),  # [cookbook] §5
    ("cjk", " 日本語とEnglish 12345!\n", 8, 10),  # o200k [17428, …, 4175]; cl100k [76502, …, 4999] [vectors]
    ("emoji", "hello 👋 world 🌍", 6, 7),  # o200k [24912, 61138, 233, 2375, 130321, 235]; cl100k 7 ids [vectors]
    ("whitespace", "a\n\n", 2, 2),  # o200k [64, 279]; cl100k [64, 271] [vectors]
    ("whitespace", "\u001ca", 2, 2),  # [216, 64] in both [vectors]
    ("empty", "", 0, 0),  # [vectors]; tiktoken test_encode_empty
]
CL100K_ONLY: list[tuple[str, int]] = [
    ("👍", 3),  # [9468, 239, 235] [tiktoken] test_encode_surrogate_pairs
    ("today\n \n", 2),  # [31213, 27907] [tiktoken] test_simple_regex
    ("today\n  \n", 2),  # [31213, 14211] [tiktoken]
    ("today\n ", 3),  # [31213, 198, 220] [tiktoken]
    ("'rer", 2),  # [2351, 81] [tiktoken]
    (" \x850", 4),  # [220, 126, 227, 15] [tiktoken] test_basic_encode
    ("!hello1234567", 5),  # [0, 15339, 4513, 10961, 22] [vectors]
]


@pytest.mark.parametrize(("what", "text", "o200k", "cl100k"), GOLDEN, ids=[f"{g[0]}:{g[1]!r}" for g in GOLDEN])
def test_published_counts(what: str, text: str, o200k: int, cl100k: int) -> None:
    assert tokens.count_text(text, tokens.O200K) == o200k
    assert tokens.count_text(text, tokens.CL100K) == cl100k


@pytest.mark.parametrize(("text", "expected"), CL100K_ONLY)
def test_published_counts_cl100k(text: str, expected: int) -> None:
    assert tokens.count_text(text, tokens.CL100K) == expected


def test_long_text() -> None:
    # " world" is one token in both vocabularies (2375 / 1917 above) and the pre-tokenizer splits a
    # run of them at every space, so 100,000 repeats are 100,000 tokens.
    text = " world" * 100_000
    assert tokens.count_text(text, tokens.O200K) == 100_000
    assert tokens.count_text(text, tokens.CL100K) == 100_000


def test_lone_surrogate_counts_like_the_replacement_character() -> None:
    # tiktoken test_encode_surrogate_pairs: a lone surrogate encodes like "�".
    assert tokens.count_text("\ud83d", tokens.CL100K) == tokens.count_text("�", tokens.CL100K)
    assert tokens.count_text("\ud83d\udc4d", tokens.CL100K) == 3


# The cookbook's example conversation (§6) and the prompt_tokens the OpenAI API reported for it.
COOKBOOK_MESSAGES: list[dict[str, str]] = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
    {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
]
COOKBOOK_PROMPT_TOKENS = {  # "N prompt tokens counted by the OpenAI API." [cookbook] §6
    "gpt-3.5-turbo": 129, "gpt-4-0613": 129, "gpt-4": 129, "gpt-4o": 124, "gpt-4o-mini": 124,
}


@pytest.mark.parametrize(("model", "expected"), COOKBOOK_PROMPT_TOKENS.items())
def test_chat_overhead_matches_the_api_on_the_cookbook_conversation(model: str, expected: int) -> None:
    assert tokens.count_messages(COOKBOOK_MESSAGES, model) == expected
    assert tokens.count_request({"model": model, "messages": COOKBOOK_MESSAGES}, tokens.CHAT) == expected


@pytest.mark.parametrize(("model", "encoding"), [
    ("gpt-4o", "o200k_base"), ("gpt-4o-mini-2024-07-18", "o200k_base"), ("chatgpt-4o-latest", "o200k_base"),
    ("gpt-4.1-nano", "o200k_base"), ("gpt-4.5-preview", "o200k_base"), ("gpt-5-mini", "o200k_base"),
    ("o1", "o200k_base"), ("o3-mini", "o200k_base"), ("o4-mini", "o200k_base"), ("ft:gpt-4o-mini:acme::abc", "o200k_base"),
    ("gpt-4", "cl100k_base"), ("gpt-4-turbo", "cl100k_base"), ("gpt-4-0613", "cl100k_base"),
    ("gpt-3.5-turbo", "cl100k_base"), ("gpt-35-turbo", "cl100k_base"),
    ("text-embedding-3-small", "cl100k_base"), ("text-embedding-3-large", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
    ("my-azure-deployment", tokens.DEFAULT_ENCODING), ("", tokens.DEFAULT_ENCODING), (None, tokens.DEFAULT_ENCODING),
])
def test_encoding_for_model(model: str | None, encoding: str) -> None:
    assert tokens.encoding_for_model(model) == encoding


def _t(text: str) -> int:
    return tokens.count_text(text, tokens.O200K)


def test_chat_rules() -> None:
    one = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello world"}]}
    assert tokens.count_request(one, tokens.CHAT) == 3 + _t("user") + 2 + 3
    parts = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hello world"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}
    assert tokens.count_request(parts, tokens.CHAT) == tokens.count_request(one, tokens.CHAT)  # images are not text tokens
    named = {"model": "gpt-4o-mini", "messages": [{"role": "user", "name": "ann", "content": "hello world"}]}
    assert tokens.count_request(named, tokens.CHAT) == tokens.count_request(one, tokens.CHAT) + _t("ann") + 1


def test_structured_output_adds_the_schema() -> None:
    schema = {"type": "object", "properties": {"sentiment": {"type": "string", "enum": ["Positive", "Negative"]}},
              "required": ["sentiment"], "additionalProperties": False}
    plain = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello world"}]}
    rf = {"type": "json_schema", "json_schema": {"name": "out", "strict": True, "schema": schema}}
    added = _t(json.dumps(schema, separators=(",", ":"))) + _t("out") + tokens.SCHEMA_OVERHEAD
    assert tokens.count_request({**plain, "response_format": rf}, tokens.CHAT) == tokens.count_request(plain, tokens.CHAT) + added
    assert tokens.count_request({**plain, "response_format": {"type": "json_object"}}, tokens.CHAT) == tokens.count_request(plain, tokens.CHAT)
    # The responses endpoint carries the same format under text.format.
    resp = {"model": "gpt-4o-mini", "input": "hello world"}
    fmt = {"type": "json_schema", "name": "out", "strict": True, "schema": schema}
    assert tokens.count_request({**resp, "text": {"format": fmt}}, tokens.RESPONSES) == tokens.count_request(resp, tokens.RESPONSES) + added


def test_responses_rules() -> None:
    as_string = {"model": "gpt-4o", "instructions": "Be brief.", "input": "hello world"}
    as_messages = {"model": "gpt-4o", "input": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello world"}]}
    expected = tokens.count_messages([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello world"}], "gpt-4o")
    assert tokens.count_request(as_string, tokens.RESPONSES) == tokens.count_request(as_messages, tokens.RESPONSES) == expected


@pytest.mark.parametrize(("endpoint", "body", "expected"), [
    (tokens.EMBEDDINGS, {"model": "text-embedding-3-small", "input": "hello world"}, 2),
    (tokens.EMBEDDINGS, {"model": "text-embedding-3-small", "input": ["hello world", "tiktoken is great!"]}, 2 + 6),
    (tokens.EMBEDDINGS, {"model": "text-embedding-3-small", "input": [15339, 1917, 0]}, 3),  # token ids count their length
    (tokens.EMBEDDINGS, {"model": "text-embedding-3-small", "input": [[15339, 1917], [0]]}, 3),
    (tokens.MODERATIONS, {"model": "omni-moderation-latest", "input": "hello world"}, 2),
    (tokens.MODERATIONS, {"model": "omni-moderation-latest", "input": [{"type": "text", "text": "hello world"},
                                                                        {"type": "image_url", "image_url": {"url": "u"}}]}, 2),
    (tokens.COMPLETIONS, {"model": "gpt-3.5-turbo-instruct", "prompt": ["hello world", "2 + 2 = 4"]}, 2 + 7),
])
def test_inputs_without_framing(endpoint: str, body: dict[str, Any], expected: int) -> None:
    assert tokens.count_request(body, endpoint) == expected


def test_unknown_endpoint_is_refused() -> None:
    with pytest.raises(ValueError, match="/v1/images"):
        tokens.count_request({"model": "gpt-4o"}, "/v1/images")


# ------------------------------------------------------------------------------------ bulk + estimates

def _bodies(n: int) -> list[str]:
    return [json.dumps({"model": "gpt-4o-mini" if i % 3 else "gpt-4",
                        "messages": [{"role": "system", "content": "Classify the review."},
                                     {"role": "user", "content": "great value " * (i % 17 + 1) + f"#{i} 😀"}]},
                       ensure_ascii=False) for i in range(n)]


def test_count_bodies_equals_count_request_for_every_input_shape() -> None:
    raw = _bodies(500) + [None]  # type: ignore[list-item]
    expected = [tokens.count_request(json.loads(b), tokens.CHAT) for b in raw[:-1]] + [None]
    array = pa.array(raw, type=pa.string())
    assert tokens.count_bodies(array, tokens.CHAT).to_pylist() == expected
    chunked = pa.chunked_array([array[:123], array[123:]])
    assert tokens.count_bodies(chunked, tokens.CHAT).type == pa.int64()
    assert tokens.count_bodies(chunked, tokens.CHAT).to_pylist() == expected
    table = pa.table({"custom_id": [str(i) for i in range(len(raw))], "body": array})
    assert tokens.count_bodies(table.to_batches(max_chunksize=100), tokens.CHAT).to_pylist() == expected
    assert tokens.count_bodies(table.to_reader(max_chunksize=64), tokens.CHAT).to_pylist() == expected
    assert tokens.count_bodies(pa.array(raw, type=pa.large_string()), tokens.CHAT).to_pylist() == expected
    # The model picks the encoding per body: gpt-4 rows are counted with cl100k_base.
    assert expected[0] == tokens.count_request(json.loads(raw[0]), tokens.CHAT, encoding=tokens.CL100K)


def test_estimate_exact_and_sampled() -> None:
    array = pa.array(_bodies(3000))
    exact = tokens.estimate(array, tokens.CHAT)
    assert exact.method == "exact" and exact.exact and exact.rows == exact.counted == 3000
    assert exact.input_tokens == sum(tokens.count_bodies(array, tokens.CHAT).to_pylist())

    sampled = tokens.estimate(array, tokens.CHAT, sample=400, seed=7)
    assert sampled.counted == 400 and sampled.rows == 3000 and not sampled.exact
    assert sampled.method.startswith("sample of 400, ±") and sampled.method.endswith("%")
    assert sampled.low <= exact.input_tokens <= sampled.high  # seed 7 is one of the 95% that cover
    assert 0 < sampled.relative_error < 0.1
    # Seeded: the same rows whatever the chunking, another seed another sample.
    rechunked = pa.chunked_array([array[:1000], array[1000:1001], array[1001:]])
    assert tokens.estimate(rechunked, tokens.CHAT, sample=400, seed=7) == sampled
    assert tokens.estimate(array, tokens.CHAT, sample=400, seed=8) != sampled
    # A sample as large as the job is the exact count.
    assert tokens.estimate(array, tokens.CHAT, sample=5000, seed=7) == exact


def test_estimate_interval_covers_the_truth_about_95_percent_of_the_time() -> None:
    array = pa.array(_bodies(2000))
    truth = tokens.estimate(array, tokens.CHAT).input_tokens
    covered = sum(e.low <= truth <= e.high for e in (tokens.estimate(array, tokens.CHAT, sample=100, seed=s) for s in range(200)))
    assert 175 <= covered <= 200  # binomial(200, 0.95): below 175 is far outside chance


def test_estimate_skips_nulls_and_refuses_a_sample_of_one() -> None:
    array = pa.array([None] + _bodies(10) + [None])
    assert tokens.estimate(array, tokens.CHAT).rows == 10
    assert tokens.estimate(array, tokens.CHAT, sample=3, seed=1).rows == 10
    with pytest.raises(ValueError):
        tokens.estimate(array, tokens.CHAT, sample=1)


def test_truncate_text() -> None:
    assert tokens.truncate_text("tiktoken is great!", 3, tokens.O200K) == "tiktoken"  # [83, 8251, 2488]
    assert tokens.truncate_text("hello world", 10) == "hello world"
    assert tokens.truncate_text("hello world", 0) == ""
