"""Deterministic fake model: the same request body always gets the same answer.

`respond(endpoint, body, custom_id, config) -> (status_code, response_body)` serves
both batch lines and the synchronous endpoints.

Usage is billed like the service: prompt/input tokens are counted by `warehouse_batch.tokens`
(the real o200k_base / cl100k_base tokenizers and the chat framing), completion/output tokens are
the tokens of the answer text returned. Answers are as long as the task asks: a label for a
classification (enum schema, or options offered in the prompt), a sentence or two for free text.
`max_tokens` / `max_completion_tokens` / `max_output_tokens` bound an answer: free text keeps the
sentences that fit, and an answer that does not fit is cut (finish_reason "length", or an
incomplete response), as the service does.

Sentiment-like labels (Positive / Neutral / Negative and the like, offered by an enum or by the
prompt) are chosen from the text with a small lexicon, so a five-star review reads Positive; a
text with no cue gets the seeded choice.

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

from warehouse_batch import tokens

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


def _chat_texts(messages: Any) -> tuple[str, str]:
    """(system text, user text)."""
    system, user = [], []
    for m in messages if isinstance(messages, list) else []:
        if not isinstance(m, dict):
            continue
        text = _content_text(m.get("content"))
        if m.get("role") in ("system", "developer"):
            system.append(text)
        elif m.get("role") == "user":
            user.append(text)
    return "\n".join(system), "\n".join(user)


def _responses_texts(body: dict[str, Any]) -> tuple[str, str]:
    instructions = body.get("instructions") if isinstance(body.get("instructions"), str) else ""
    inp = body.get("input")
    if isinstance(inp, str):
        return instructions, inp
    system, user = _chat_texts(inp)
    return "\n".join(t for t in (instructions, system) if t), user


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


# Sentiment cues, weighted: 3 = a verdict on its own ("broke", "would buy again"), 1 = a mild remark
# that a verdict outweighs ("a bit overpriced" in a five-star review). Neutral cues name a middling
# verdict. Reviews mix both kinds, so the weights, not the first cue found, decide.
_CUES: dict[str, tuple[tuple[int, str], ...]] = {
    "positive": (
        (3, r"would (?:definitely )?buy (?:it )?again"), (3, r"(?:five|5|four|4)[ -]stars?"), (3, r"love[sd]?"),
        (3, r"best (?:purchase|buy)"), (3, r"exceed(?:s|ed)? (?:my )?expectations"), (3, r"excellent"),
        (3, r"amazing"), (3, r"fantastic"), (3, r"perfect(?:ly)?"), (3, r"well made"), (3, r"highly recommend"),
        (3, r"works (?:exactly|great|perfectly)"), (3, r"outstanding"), (3, r"delighted"),
        (1, r"great"), (1, r"good"), (1, r"nice"), (1, r"happy"), (1, r"sturdy"), (1, r"awesome"),
        (1, r"recommend(?:ed)?"), (1, r"just what i needed"), (1, r"lighter than expected"), (1, r"helpful"),
        (1, r"comfortable"), (1, r"worth it"), (1, r"thanks?"),
    ),
    "negative": (
        (3, r"broke(?:n)?"), (3, r"refund(?:ed)?"), (3, r"flimsy"), (3, r"damaged"), (3, r"defective"),
        (3, r"stopped working"), (3, r"never (?:replied|arrived|worked)"), (3, r"not worth"), (3, r"waste of"),
        (3, r"terrible"), (3, r"awful"), (3, r"horrible"), (3, r"worst"), (3, r"(?:one|1|two|2)[ -]stars?"),
        (3, r"cheap plastic"), (3, r"returned? it"), (3, r"(?:would not|wouldn't|wouldn’t|do not|don't|don’t) recommend"),
        (3, r"not recommend"), (3, r"useless"), (3, r"scam"), (3, r"disappoint(?:ed|ing)"),
        (1, r"overpriced"), (1, r"too loud"), (1, r"hard to set up"), (1, r"bad"), (1, r"poor"), (1, r"slow"),
        (1, r"isn't|isn’t"), (1, r"cheap"), (1, r"rude"), (1, r"confusing"), (1, r"smaller than"),
    ),
    "neutral": (
        (3, r"okay"), (3, r"ok"), (3, r"average"), (3, r"nothing special"), (3, r"mixed feelings"),
        (3, r"fine for the price"), (3, r"does the job"), (3, r"meh"), (3, r"(?:three|3)[ -]stars?"),
        (3, r"so-so"), (3, r"neither good nor bad"),
    ),
}


def _required_literal(pattern: str) -> str | None:
    """A lower-case piece of text every match of `pattern` contains (None if none is obvious), so a
    cue whose piece is absent is skipped without running its regex (70 regexes per answer were most
    of a batch's preparation time)."""
    if "|" in re.sub(r"\([^()]*\)", "", pattern):
        return None  # alternatives at the top level
    rest = re.sub(r"\([^()]*\)\??|\[[^\]]*\]\??|.\?", "\0", pattern)  # groups, classes, optional chars
    if any(c in rest for c in "\\.*+{}^$()[]|?"):
        return None
    pieces = [piece for piece in rest.split("\0") if piece.strip()]
    return max(pieces, key=len).lower() if pieces else None


# (weight, case-insensitive regex, the same for lower-case text (faster), required literal) per cue.
_CUE_RES = {polarity: tuple((w, re.compile(rf"\b(?:{p})\b", re.IGNORECASE), re.compile(rf"\b(?:{p})\b"),
                             _required_literal(p)) for w, p in cues)
            for polarity, cues in _CUES.items()}
# Characters that IGNORECASE matches to ASCII letters although str.lower() does not map them there.
_FOLDS_TO_ASCII = frozenset("\u0130\u0131\u017f\u212a")
# Label words that mean each polarity; matched case-insensitively against the offered options.
_POLARITY_LABELS = {
    "positive": {"positive", "pos", "good", "favorable", "favourable", "happy", "satisfied"},
    "negative": {"negative", "neg", "bad", "unfavorable", "unfavourable", "unhappy", "dissatisfied"},
    "neutral": {"neutral", "mixed", "neither", "indifferent"},
}


def _sentiment_labels(options: Any) -> dict[str, str] | None:
    """polarity → the offered label, when the options include a positive-like and a negative-like label."""
    if not isinstance(options, (list, tuple)):
        return None
    found: dict[str, str] = {}
    for option in options:
        if isinstance(option, str):
            for polarity, words in _POLARITY_LABELS.items():
                if option.strip().lower() in words:
                    found.setdefault(polarity, option)
    return found if "positive" in found and "negative" in found else None


def _polarity(text: str) -> str | None:
    """The text's sentiment from the cue lexicon; None when it has no cue at all."""
    lowered = text.lower()
    if len(lowered) != len(text) or not _FOLDS_TO_ASCII.isdisjoint(text):
        # lower() and IGNORECASE may disagree on this text: every case-insensitive regex
        score = {p: sum(w * len(rx.findall(text)) for w, rx, _, _ in cues) for p, cues in _CUE_RES.items()}
    else:
        score = {p: sum(w * len(rx.findall(lowered)) for w, _, rx, literal in cues
                        if literal is None or literal in lowered)
                 for p, cues in _CUE_RES.items()}
    if not any(score.values()):
        return None
    if score["neutral"] >= max(score["positive"], score["negative"]):
        return "neutral"
    net = score["positive"] - score["negative"]
    return "positive" if net > 0 else "negative" if net < 0 else "neutral"


def _choose(options: Any, text: str, rng: random.Random) -> Any:
    """One of the options: by sentiment when they are sentiment labels and the text has a cue, else seeded."""
    labels = _sentiment_labels(options)
    polarity = _polarity(text) if labels else None
    if labels and polarity:
        if polarity in labels:
            return labels[polarity]
        # Neutral text but no neutral label: the milder remarks decide, ties go to positive.
        return labels["positive"]
    return rng.choice(options)


def _sentiment_fields(value: Any, schema: dict[str, Any], text: str, rng: random.Random) -> Any:
    """Replace the seeded choice of sentiment-like enums (the root, or a top-level property) by the lexicon's."""
    if _sentiment_labels(schema.get("enum")):
        return _choose(schema["enum"], text, rng)
    props = schema.get("properties")
    if isinstance(value, dict) and isinstance(props, dict):
        for name, sub in props.items():
            if name in value and isinstance(sub, dict) and _sentiment_labels(sub.get("enum")):
                value[name] = _choose(sub["enum"], text, rng)
    return value


_OPENERS = ("Here is a short answer.", "Short answer: it depends.", "In brief, yes.", "Good question.",
            "The short answer is no.", "It mostly holds.")
_DETAILS = ("the details matter", "the context decides", "more data would help", "that is the usual case")


def _free_text(user: str, rng: random.Random, limit: int | None, encoding: str) -> str:
    """A sentence or two; under a token limit, the sentences that fit (a model told its budget stops early)."""
    start = " ".join(_MARKER_RE.sub("", user).split()[:6])
    sentences = [rng.choice(_OPENERS), f'It is about "{start}", and {rng.choice(_DETAILS)}.']
    text = sentences[0]
    for more in sentences[1:]:
        longer = f"{text} {more}"
        if limit is not None and tokens.count_text(longer, encoding) > limit:
            break
        text = longer
    return text


def _answer(system: str, user: str, schema: dict[str, Any] | None, json_object: bool, rng: random.Random,
            behaviour: str | None, limit: int | None = None, encoding: str = tokens.DEFAULT_ENCODING) -> str:
    if behaviour == "invalid_json":
        return 'Here is the JSON you asked for: {"answer": "unterminated'
    if schema is not None:
        return json.dumps(_sentiment_fields(fake_from_schema(schema, rng), schema, user, rng), ensure_ascii=False)
    if json_object:
        return json.dumps({"answer": user[:40]}, ensure_ascii=False)
    options, text = _options(system), user
    if not options:
        # A plain prompt may carry the question itself ("Classify the sentiment as Positive, Neutral or
        # Negative: …"); only sentiment labels are taken from it, since a review may list anything,
        # and the label words of the question are no cue about the text.
        found = _options(user)
        if _sentiment_labels(found):
            options = found
            text = re.sub(r"\b(?:" + "|".join(map(re.escape, found or ())) + r")\b", " ", user, flags=re.IGNORECASE)
    if options:
        return _choose(options, text, rng)
    return _free_text(user, rng, limit, encoding)


def _truncate(text: str) -> str:
    return text[: len(text) // 2]


def _max_output(body: dict[str, Any], *keys: str) -> int | None:
    """The request's output-token limit (the first key present), if any."""
    for key in keys:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _bounded(text: str, limit: int | None, encoding: str) -> tuple[str, bool]:
    """(text, cut?): an answer longer than the limit is cut at it, as the service does."""
    if limit is None or tokens.count_text(text, encoding) <= limit:
        return text, False
    return tokens.truncate_text(text, limit, encoding), True


# ---------------------------------------------------------------- endpoints

def _chat(body: dict[str, Any], custom_id: str, config: _Cfg, digest: bytes, rng: random.Random) -> tuple[int, dict[str, Any]]:
    system, user = _chat_texts(body.get("messages"))
    behaviour = _behaviour(system + user, custom_id, digest.hex(), config)
    if behaviour == "error_400":
        return _error(400)
    if behaviour == "error_500":
        return _error(500)
    rf = body.get("response_format") if isinstance(body.get("response_format"), dict) else {}
    schema = None
    if rf.get("type") == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema") or {}
    encoding = tokens.encoding_for_model(body.get("model"))
    limit = _max_output(body, "max_completion_tokens", "max_tokens")
    content: str | None = _answer(system, user, schema, rf.get("type") == "json_object", rng, behaviour, limit, encoding)
    content, cut = _bounded(content or "", limit, encoding)
    refusal, finish = None, "length" if cut else "stop"
    if behaviour == "refusal":
        refusal, content = REFUSAL_TEXT, None
    elif behaviour == "truncate":
        content, finish = _truncate(content or ""), "length"
    prompt = tokens.count_request(body, tokens.CHAT, encoding=encoding)
    completion = tokens.count_text(content or refusal or "", encoding)
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
    system, user = _responses_texts(body)
    behaviour = _behaviour(system + user, custom_id, digest.hex(), config)
    if behaviour == "error_400":
        return _error(400)
    if behaviour == "error_500":
        return _error(500)
    text_cfg = body.get("text") if isinstance(body.get("text"), dict) else {}
    fmt = text_cfg.get("format") if isinstance(text_cfg.get("format"), dict) else {"type": "text"}
    schema = (fmt.get("schema") or {}) if fmt.get("type") == "json_schema" else None
    encoding = tokens.encoding_for_model(body.get("model"))
    limit = _max_output(body, "max_output_tokens")
    text = _answer(system, user, schema, fmt.get("type") == "json_object", rng, behaviour, limit, encoding)
    text, cut = _bounded(text, limit, encoding)
    status, incomplete = ("incomplete", {"reason": "max_output_tokens"}) if cut else ("completed", None)
    if behaviour == "refusal":
        part: dict[str, Any] = {"type": "refusal", "refusal": REFUSAL_TEXT}
        text = REFUSAL_TEXT
        status, incomplete = "completed", None
    else:
        if behaviour == "truncate":
            text = _truncate(text)
            status, incomplete = "incomplete", {"reason": "max_output_tokens"}
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    inp = tokens.count_request(body, tokens.RESPONSES, encoding=encoding)
    out = tokens.count_text(text, encoding)
    hexid = digest.hex()
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
    encoding = tokens.encoding_for_model(body.get("model"))
    limit = _max_output(body, "max_tokens") or 16  # the completions API's default max_tokens
    text, cut = _bounded(_answer("", text_in, None, False, rng, behaviour, limit, encoding), limit, encoding)
    finish = "length" if cut else "stop"
    if behaviour == "truncate":
        text, finish = _truncate(text), "length"
    p = tokens.count_request(body, tokens.COMPLETIONS, encoding=encoding)
    c = tokens.count_text(text, encoding)
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
    used = tokens.count_request(body, tokens.EMBEDDINGS)
    return 200, {"object": "list", "data": data, "model": model,
                 "usage": {"prompt_tokens": used, "total_tokens": used}}


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
