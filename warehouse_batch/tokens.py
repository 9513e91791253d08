"""Count a request's input tokens the way OpenAI bills them, offline, exactly or from a seeded sample.

Text is tokenized with `bpe-openai` (the `o200k_base` / `cl100k_base` vocabularies ship inside the
wheel, and its counts equal tiktoken's), so nothing is downloaded at run time.

What is counted per endpoint (`count_request`):

* `/v1/chat/completions`: for each message 3 framing tokens + the tokens of its `role`, its
  `content` (a list of parts counts its text parts) and its `name` (+1 when a name is given), then 3
  for the reply priming — the rule of the OpenAI cookbook "How to count tokens with tiktoken", which
  matches the API's `usage.prompt_tokens` for every model it lists.
* `/v1/responses`: the same rule, with `instructions` as a leading system message and a string
  `input` as one user message.
* `/v1/completions`: the tokens of `prompt` (a string or a list of strings).
* `/v1/embeddings`, `/v1/moderations`: the tokens of each input (a string or a list of strings; an
  array of token ids counts its length), with no framing.
* Structured outputs (`response_format` / `text.format` of type `json_schema`): the tokens of the
  schema's compact JSON text and its name + `SCHEMA_OVERHEAD`. **This part is an approximation**:
  OpenAI does not publish how it renders a schema into the prompt.

Images, audio and files in content parts are not counted (their cost is not text tokens), nor are
`tools` definitions.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from warehouse_batch import endpoints

O200K = "o200k_base"
CL100K = "cl100k_base"
ENCODINGS = (O200K, CL100K)
# Unknown models and Azure deployment names (which are free-form) get o200k_base: every chat model
# OpenAI has released since gpt-4o uses it, and a deployment is most likely one of those.
DEFAULT_ENCODING = O200K

TOKENS_PER_MESSAGE = 3  # <|start|>{role}<|message|>…<|end|> around every message
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3  # every reply is primed with <|start|>assistant<|message|>
# Approximation (see the module docstring): the schema is billed as text inside a framing of a few
# tokens, like one more message.
SCHEMA_OVERHEAD = 8

# Longest prefix wins, so "gpt-4o" is tested before "gpt-4".
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-4o", O200K), ("chatgpt-4o", O200K), ("gpt-4.1", O200K), ("gpt-4.5", O200K), ("gpt-5", O200K),
    ("o1", O200K), ("o3", O200K), ("o4", O200K), ("gpt-oss", O200K), ("omni-moderation", O200K),
    ("gpt-4", CL100K), ("gpt-3.5", CL100K), ("gpt-35", CL100K),  # Azure spells it gpt-35-turbo
    ("text-embedding-3-", CL100K), ("text-embedding-ada-002", CL100K),
)

#: Names for callers (the emulator, tests); how each is counted follows its record's body shape.
CHAT, RESPONSES, COMPLETIONS, EMBEDDINGS, MODERATIONS = (
    "/v1/chat/completions", "/v1/responses", "/v1/completions", "/v1/embeddings", "/v1/moderations")
ENDPOINTS = endpoints.PATHS


def encoding_for_model(model: str | None) -> str:
    """The encoding name of a model; DEFAULT_ENCODING for unknown models and Azure deployment names.

    Dated snapshots and fine-tunes follow their base model: `gpt-4o-mini-2024-07-18`, `ft:gpt-4o-mini:org::id`."""
    name = (model or "").strip().lower()
    if name.startswith("ft:"):
        name = name[3:]
    for prefix, encoding in _PREFIXES:
        if name.startswith(prefix):
            return encoding
    return DEFAULT_ENCODING


class _Tokenizer(Protocol):
    def count(self, text: str) -> int: ...
    def encode(self, text: str) -> list[int]: ...
    def decode(self, tokens: list[int]) -> str: ...


@functools.lru_cache(maxsize=None)
def _tokenizer(encoding: str) -> _Tokenizer:
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")
    return _bindings().tokenizer_for_encoding(encoding)


@functools.lru_cache(maxsize=None)
def _bindings() -> Any:
    """bpe-openai's Rust extension, loaded without running the package's __init__.

    Importing `bpe_openai` decodes all of its vocabularies into Python dicts (≈1.3 s and ≈60 MB) that
    counting never uses; the extension alone loads in ≈0.1 s. Falls back to the ordinary import."""
    import importlib.machinery
    import importlib.util
    import sys
    from pathlib import Path

    name = "bpe_openai._bindings"
    if name in sys.modules:
        return sys.modules[name]
    package = importlib.util.find_spec("bpe_openai")
    if package is None or package.origin is None:
        raise ImportError("bpe-openai is not installed: pip install bpe-openai")
    for path in Path(package.origin).parent.glob("_bindings*"):
        if path.suffix in (".so", ".pyd"):
            loader = importlib.machinery.ExtensionFileLoader(name, str(path))
            spec = importlib.util.spec_from_file_location(name, path, loader=loader)
            if spec is not None:
                module = importlib.util.module_from_spec(spec)
                loader.exec_module(module)
                return module
    from bpe_openai import _bindings as module  # an unusual layout: pay for the full import

    return module


def count_text(text: str, encoding: str = DEFAULT_ENCODING) -> int:
    """Tokens of one text. Special-token strings such as `<|endoftext|>` count as ordinary text, as the API does."""
    if not text:
        return 0
    try:
        return _tokenizer(encoding).count(text)
    except UnicodeEncodeError:  # lone surrogates: tiktoken replaces them with U+FFFD, so do we
        return _tokenizer(encoding).count(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))


def truncate_text(text: str, max_tokens: int, encoding: str = DEFAULT_ENCODING) -> str:
    """The first `max_tokens` tokens of a text, decoded (what a reply cut off at the token limit shows)."""
    if max_tokens <= 0 or not text:
        return ""
    tokenizer = _tokenizer(encoding)
    tokens = tokenizer.encode(text)
    return text if len(tokens) <= max_tokens else tokenizer.decode(tokens[:max_tokens])


class _Counter:
    """Counts request bodies of one encoding; remembers the counts of repeated short texts.

    A job repeats its role names, system prompt and schema on every line, so those are counted once;
    the per-row texts are not remembered (that would hold the whole job in memory)."""

    _MEMO_LIMIT = 4096

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._count = _tokenizer(encoding).count
        self._memo: dict[str, int] = {}

    def text(self, text: Any) -> int:
        if not isinstance(text, str) or not text:
            return 0
        try:
            return self._count(text)
        except UnicodeEncodeError:
            return count_text(text, self.encoding)

    def repeated(self, text: Any) -> int:
        if not isinstance(text, str):
            return 0
        n = self._memo.get(text)
        if n is None:
            if len(self._memo) >= self._MEMO_LIMIT:
                self._memo.clear()  # cheaper than an LRU, and a job has only a few repeated texts
            n = self._memo[text] = self.text(text)
        return n

    def content(self, content: Any, repeated: bool = False) -> int:
        """A message's content: a string, or a list of parts whose text parts are counted."""
        count = self.repeated if repeated else self.text
        if isinstance(content, str):
            return count(content)
        if isinstance(content, list):
            total = 0
            for part in content:
                if isinstance(part, str):
                    total += count(part)
                elif isinstance(part, dict) and isinstance(part.get("text"), str):
                    total += count(part["text"])
            return total
        return 0

    def messages(self, messages: Any) -> int:
        if not isinstance(messages, list):
            return 0
        total = REPLY_PRIMING
        for m in messages:
            if not isinstance(m, dict):
                continue
            role = m.get("role")
            total += TOKENS_PER_MESSAGE + self.repeated(role)
            # Only user turns differ row by row; system prompts and few-shot turns repeat.
            total += self.content(m.get("content"), repeated=role != "user")
            if m.get("name"):
                total += self.repeated(m["name"]) + TOKENS_PER_NAME
        return total

    def schema(self, fmt: Any) -> int:
        """Tokens a `json_schema` format adds (an approximation, see the module docstring)."""
        if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
            return 0
        spec = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else fmt  # chat | responses shape
        schema = spec.get("schema")
        text = orjson.dumps(schema).decode() if schema is not None else ""
        return self.repeated(text) + self.repeated(spec.get("name")) + SCHEMA_OVERHEAD

    def inputs(self, value: Any) -> int:
        """Embedding / moderation / completion inputs: strings, token-id arrays, or lists of either."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            if all(isinstance(v, int) for v in value):
                return len(value)
            return sum(self.inputs(v) if not isinstance(v, dict) else self.content([v]) for v in value)
        return 0

    def request(self, body: Mapping[str, Any], endpoint: str) -> int:
        record = endpoints.REGISTRY.get(endpoint)
        shape = record.shape if record else None
        if shape == "chat":
            return self.messages(body.get("messages")) + self.schema(body.get("response_format"))
        if shape == "responses":
            messages: list[Any] = []
            if isinstance(body.get("instructions"), str):
                messages.append({"role": "system", "content": body["instructions"]})
            inp = body.get("input")
            messages += [{"role": "user", "content": inp}] if isinstance(inp, str) else inp if isinstance(inp, list) else []
            text = body.get("text") if isinstance(body.get("text"), dict) else {}
            return self.messages(messages) + self.schema(text.get("format"))
        if shape == "completions":
            return self.inputs(body.get("prompt"))
        if shape == "input":
            return self.inputs(body.get("input"))
        raise ValueError(f"cannot count tokens for endpoint {endpoint!r}; known: {', '.join(ENDPOINTS)}")


@functools.lru_cache(maxsize=None)
def _counter(encoding: str) -> _Counter:
    return _Counter(encoding)


def count_messages(messages: list[Mapping[str, Any]], model: str | None = None, *, encoding: str | None = None) -> int:
    """Prompt tokens of a chat conversation, as `usage.prompt_tokens` reports them."""
    return _counter(encoding or encoding_for_model(model)).messages(messages)


def count_request(body: Mapping[str, Any], endpoint: str, *, encoding: str | None = None) -> int:
    """Input tokens one request body is billed for (see the module docstring); the encoding follows body["model"]."""
    return _counter(encoding or encoding_for_model(body.get("model"))).request(body, endpoint)


# ------------------------------------------------------------------------------------ bulk counting

Bodies = pa.Array | pa.ChunkedArray | pa.RecordBatchReader | pa.Table | Iterable[pa.RecordBatch]


def _chunks(bodies: Bodies, column: str) -> Iterator[pa.Array]:
    """The body-string arrays of any accepted input, one chunk at a time (nothing is concatenated)."""
    if isinstance(bodies, pa.ChunkedArray):
        yield from bodies.chunks
    elif isinstance(bodies, pa.Array):
        yield bodies
    elif isinstance(bodies, pa.Table):
        yield from bodies.column(column if column in bodies.schema.names else 0).chunks
    else:
        for batch in bodies:
            yield batch.column(column if column in batch.schema.names else 0)


class _BodyCounter:
    """Parses JSON body strings and counts them; the encoding follows each body's model."""

    def __init__(self, endpoint: str, encoding: str | None) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"cannot count tokens for endpoint {endpoint!r}; known: {', '.join(ENDPOINTS)}")
        self.endpoint = endpoint
        self.encoding = encoding
        self._by_model: dict[Any, _Counter] = {}

    def __call__(self, raw: str | bytes | None) -> int | None:
        if raw is None:
            return None
        body = orjson.loads(raw)
        if not isinstance(body, dict):
            return None
        model = body.get("model")
        counter = self._by_model.get(model)
        if counter is None:
            counter = self._by_model[model] = _counter(self.encoding or encoding_for_model(model if isinstance(model, str) else None))
        return counter.request(body, self.endpoint)


def iter_counts(bodies: Bodies, endpoint: str, *, encoding: str | None = None, column: str = "body") -> Iterator[pa.Int64Array]:
    """One int64 array of input-token counts per input chunk (NULL for a NULL body): bounded memory.

    `bodies` holds JSON request-body strings: a pyarrow string/binary array, a chunked array, a
    table or record-batch reader (column `column`, else the first), or any iterable of record batches.
    `encoding` overrides the per-body choice made from `body["model"]`."""
    count = _BodyCounter(endpoint, encoding)
    for chunk in _chunks(bodies, column):
        yield pa.array(map(count, chunk.to_pylist()), type=pa.int64())


def count_bodies(bodies: Bodies, endpoint: str, *, encoding: str | None = None, column: str = "body") -> pa.Int64Array:
    """Input tokens of every body, in order, as one pyarrow int64 array (see iter_counts)."""
    chunks = list(iter_counts(bodies, endpoint, encoding=encoding, column=column))
    return pa.concat_arrays(chunks) if chunks else pa.array([], type=pa.int64())


# ------------------------------------------------------------------------------------ estimates

@dataclass(frozen=True)
class TokenEstimate:
    """Total input tokens of a job, exact or extrapolated from a sample."""

    input_tokens: int  # the exact total, or the sample mean × rows
    rows: int  # non-NULL bodies
    counted: int  # bodies actually tokenized
    low: int  # bounds of the 95% confidence interval (equal to input_tokens when exact)
    high: int

    @property
    def exact(self) -> bool:
        return self.counted == self.rows

    @property
    def relative_error(self) -> float:
        """Half-width of the 95% confidence interval relative to the estimate (0.0 when exact)."""
        return 0.0 if self.exact or not self.input_tokens else (self.high - self.input_tokens) / self.input_tokens

    @property
    def method(self) -> str:
        if self.exact:
            return "exact"
        return f"sample of {self.counted:,}, ±{self.relative_error:.1%}"


_Z95 = 1.959964  # two-sided 95% quantile of the normal distribution


def _reservoir(chunks: Iterable[pa.Array], k: int, rng: random.Random) -> tuple[list[Any], int]:
    """A uniform random sample of k non-NULL values, and the number of non-NULL values (Li's Algorithm L).

    Skips ahead between picks, so only the sampled values are ever converted to Python."""
    sample: list[Any] = []
    seen = 0
    w = math.exp(math.log(rng.random()) / k)
    next_pick = k + int(math.log(rng.random()) / math.log(1 - w)) if w < 1 else k
    for chunk in chunks:
        valid = chunk.drop_null() if chunk.null_count else chunk
        n = len(valid)
        start = seen
        seen += n
        i = 0
        while len(sample) < k and i < n:  # fill the reservoir first
            sample.append(valid[i].as_py())
            i += 1
        while next_pick < seen:
            sample[rng.randrange(k)] = valid[next_pick - start].as_py()
            w *= math.exp(math.log(rng.random()) / k)
            next_pick += 1 + int(math.log(rng.random()) / math.log(1 - w))
    return sample, seen


def estimate(bodies: Bodies, endpoint: str, *, sample: int | None = None, seed: int = 0,
             encoding: str | None = None, column: str = "body") -> TokenEstimate:
    """Total input tokens of all bodies: exact, or from a seeded uniform sample of `sample` bodies.

    With a sample, the total is the sample mean × rows, with a 95% confidence interval from the
    sample's standard deviation (normal approximation, finite-population corrected). A sample at
    least as large as the job counts everything exactly. The same seed picks the same rows."""
    if sample is None:
        total = rows = 0
        for counts in iter_counts(bodies, endpoint, encoding=encoding, column=column):
            total += pc.sum(counts).as_py() or 0
            rows += len(counts) - counts.null_count
        return TokenEstimate(total, rows, rows, total, total)
    if sample < 2:
        raise ValueError("sample must be at least 2 bodies (the error bound needs a spread)")
    picked, rows = _reservoir(_chunks(bodies, column), sample, random.Random(seed))
    count = _BodyCounter(endpoint, encoding)
    values = [c for c in map(count, picked) if c is not None]
    k = len(values)
    if k == 0:
        return TokenEstimate(0, rows, 0, 0, 0)
    if k >= rows:
        total = sum(values)
        return TokenEstimate(total, rows, rows, total, total)
    mean = sum(values) / k
    var = sum((v - mean) ** 2 for v in values) / (k - 1)
    half = _Z95 * math.sqrt(var / k) * math.sqrt(max(0.0, (rows - k) / (rows - 1))) * rows
    total = round(mean * rows)
    return TokenEstimate(total, rows, k, max(0, math.floor(total - half)), math.ceil(total + half))
