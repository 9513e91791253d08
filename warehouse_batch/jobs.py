"""Job definitions: the options of a job, `.sql` job files, and their validation.

A job file is a leading block of `-- key: value` comment lines (YAML), then the query:

    -- name: review_sentiment
    -- model: gpt-4o-mini
    -- system: Classify the sentiment of this review.
    SELECT review_id AS custom_id, review_text AS prompt FROM reviews

The same options are keyword arguments of `Job` and flags of the CLI; flags override the file.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import yaml

from warehouse_batch import endpoints
from warehouse_batch.errors import JobError

#: What OpenAI allows per batch input file; jobs may only lower these. "200 MB" is not defined
#: further, so 200,000,000 bytes (the smaller reading) is the safe limit. Azure allows 100,000
#: requests per file (its provider raises the default; `providers.check_job`).
MAX_REQUESTS_PER_SHARD = 50_000
MAX_REQUESTS_PER_SHARD_ANY = 100_000
MAX_BYTES_PER_SHARD = 200_000_000
_OLD_MAX_BYTES_PER_SHARD = 200 * 1024 * 1024
#: Expiry of uploaded input files and of result files: 14 days, the shortest Azure accepts, well
#: beyond the 24 h window (and what lets Azure hold 10,000 input files instead of 500).
DEFAULT_FILE_EXPIRY = 14 * 86400
MIN_FILE_EXPIRY, MAX_FILE_EXPIRY = 3600, 30 * 86400
#: Batch metadata keys warehouse_batch sets itself (to find its batches again after a crash).
METADATA_JOB_KEY = "warehouse_batch_job"
METADATA_SHARD_KEY = "warehouse_batch_shard"
#: Request parameters that may be written at the top level of a job header instead of under `params:`.
TOP_LEVEL_PARAMS = ("temperature", "max_tokens", "max_completion_tokens", "top_p", "seed", "reasoning_effort", "dimensions")
#: Which estimate max_cost_usd and the daily budget compare: the expected cost, or the upper bound
#: (every request answering up to its max_tokens).
COST_GUARDS = ("expected", "upper_bound")
#: Keys a job may not set through `params`, because warehouse_batch builds them from other options.
RESERVED_PARAMS = {"model", "messages", "input", "stream", "instructions"}

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_TABLE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Job:
    """A named, declarative, re-runnable LLM workload over the rows of one query."""

    name: str
    query: str
    model: str | None = None
    endpoint: str = endpoints.DEFAULT
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    table: str | None = None
    completion_window: str = "24h"
    metadata: dict[str, str] = field(default_factory=dict)
    max_requests_per_shard: int | None = None  # None: the provider's limit (OpenAI 50,000, Azure 100,000)
    max_bytes_per_shard: int = MAX_BYTES_PER_SHARD
    output_schema: Any = None  # SQL column list, JSON Schema (dict or .json path) or "module:PydanticModel"
    max_attempts: int = 3  # sends per request, retries included
    max_cost_usd: float | None = None  # refuse a run whose estimated cost (see cost_guard) is higher
    cost_guard: str = "expected"  # which cost max_cost_usd and the daily budget compare: expected | upper_bound
    max_requests: int | None = None  # refuse a run that would send more requests
    max_enqueued_tokens: int | None = None  # per model: submit shards only while enqueued tokens stay under this
    cache: bool = True  # reuse answers to identical requests (False: always send fresh requests)
    # While a row's changed request is unanswered, show its last completed answer (is_stale = true)
    # instead of a blank pending row. Off by default for CLI jobs, on by default for dbt models.
    keep_stale_answers: bool = False
    provider: str = "openai"  # openai | azure (providers.PROVIDERS)
    price_model: str | None = None  # the priced model behind `model` (Azure: model is the deployment name)
    # The provider's enqueued-token quota per model, when known: shards are cut to fit it and sent as
    # it frees. Without it, the quota a refusal states is learned. max_enqueued_tokens stays a cap.
    enqueued_token_quota: int | None = None
    input_expires_after: int = DEFAULT_FILE_EXPIRY  # seconds; uploaded shard files expire at the provider
    output_expires_after: int = DEFAULT_FILE_EXPIRY  # seconds; result files expire (downloaded at once)
    delete_input_files: bool = True  # delete a shard's uploaded file once its batch is loaded
    description: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.query, str):  # frozen: the one place a job's query is normalised
            object.__setattr__(self, "query", normalise_query(self.query))
        for key in ("input_expires_after", "output_expires_after"):  # "14d" from Python too
            if isinstance(getattr(self, key), str):
                object.__setattr__(self, key, _as_seconds(key, getattr(self, key)))
        _validate(self)

    @property
    def target_table(self) -> str:
        """The output table's name (`table` option, else the job name)."""
        return self.table or self.name

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> Job:
        """Read a `.sql` job file; keyword arguments override its header (None means "not given")."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise JobError(f"cannot read job file {path}: {exc.strerror}") from None
        options, query = parse_job_text(text, source=str(path))
        options.setdefault("name", path.stem)
        if isinstance(options.get("output_schema"), str):  # a .json file or Python model beside the job file
            from warehouse_batch.schema import anchor

            options["output_schema"] = anchor(options["output_schema"], path.parent)
        return cls.from_options({**options, "query": query}, **overrides)

    @classmethod
    def from_options(cls, options: dict[str, Any], **overrides: Any) -> Job:
        """Build a job from a mapping of options (a parsed header, a dbt config...)."""
        merged = dict(options)
        for key, value in overrides.items():
            if value is None:
                continue
            if key == "params" and isinstance(value, dict):
                merged["params"] = {**merged.get("params", {}), **value}
            elif key == "metadata" and isinstance(value, dict):
                merged["metadata"] = {**merged.get("metadata", {}), **value}
            else:
                merged[key] = value
        params = dict(merged.pop("params", None) or {})
        if not isinstance(params, dict):
            raise JobError(f"option 'params' must be a mapping like {{temperature: 0}}, got {params!r}")
        for key in TOP_LEVEL_PARAMS:
            if key in merged:
                params[key] = merged.pop(key)
        unknown = sorted(set(merged) - set(OPTION_NAMES))
        if unknown:
            raise JobError(
                f"unknown job option(s): {', '.join(unknown)}. Valid options: {', '.join(sorted(OPTION_NAMES))}"
                f" (request parameters go under 'params:', or at the top level for {', '.join(TOP_LEVEL_PARAMS)})"
            )
        if "query" not in merged or not str(merged["query"]).strip():
            raise JobError("the job has no query: write a SELECT after the header, or pass query=...")
        if "name" not in merged:
            raise JobError("the job has no name: add '-- name: my_job' to the header, or pass name=...")
        for int_key in ("max_requests_per_shard", "max_bytes_per_shard", "max_attempts", "max_requests",
                        "max_enqueued_tokens", "enqueued_token_quota"):
            if merged.get(int_key) is not None:
                merged[int_key] = _as_int(int_key, merged[int_key])
        if merged.get("max_bytes_per_shard") is not None and \
                MAX_BYTES_PER_SHARD < merged["max_bytes_per_shard"] <= _OLD_MAX_BYTES_PER_SHARD:
            merged["max_bytes_per_shard"] = MAX_BYTES_PER_SHARD  # jobs stored by 0.1 (200 MiB) still load
        for key in ("input_expires_after", "output_expires_after"):
            if merged.get(key) is not None:
                merged[key] = _as_seconds(key, merged[key])
        if merged.get("max_cost_usd") is not None:
            try:
                merged["max_cost_usd"] = float(merged["max_cost_usd"])
            except (TypeError, ValueError):
                raise JobError(f"option 'max_cost_usd' must be a number, got {merged['max_cost_usd']!r}") from None
        for bool_key in ("cache", "delete_input_files", "keep_stale_answers"):
            if isinstance(merged.get(bool_key), str):
                merged[bool_key] = merged[bool_key].strip().lower() not in ("false", "no", "0", "off")
        metadata = merged.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise JobError(f"option 'metadata' must be a mapping of strings, got {metadata!r}")
        return cls(params=params, **merged)

    def to_options(self) -> dict[str, Any]:
        """The job as a JSON-able mapping (stored in `warehouse_batch.jobs.definition`)."""
        return dataclasses.asdict(self)


OPTION_NAMES = tuple(f.name for f in dataclasses.fields(Job))


def parse_job_text(text: str, source: str = "<job>") -> tuple[dict[str, Any], str]:
    """Split a job file into its YAML header options and its query."""
    header: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("--"):
            header.append(stripped[2:].removeprefix(" "))
        elif stripped:
            break
        i += 1
    query = "\n".join(lines[i:]).strip()
    if not any(h.strip() for h in header):
        return {}, query
    try:
        options = yaml.safe_load("\n".join(header))
    except yaml.YAMLError as exc:
        raise JobError(f"{source}: the '-- key: value' header is not valid YAML: {exc}") from None
    if options is None:
        return {}, query
    if not isinstance(options, dict):
        raise JobError(f"{source}: the header must be '-- key: value' lines, got {options!r}")
    return {str(k): v for k, v in options.items()}, query


def normalise_query(query: str) -> str:
    """The query without a trailing `;` or comment, so that it can be wrapped as `(<query>) AS q`.

    `SELECT … FROM reviews -- all rows` would otherwise comment out the closing parenthesis of
    every wrapper. DuckDB's own tokenizer finds the last real token, so `--` or `;` inside strings
    and quoted names are left alone. A query with nothing to cut comes back unchanged, which
    keeps the stored definition (and the output table's fingerprint) of existing jobs as it was."""
    try:
        tokens = duckdb.tokenize(query)
    except (duckdb.Error, RuntimeError):  # not SQL at all: check_query reports it
        return query
    for index in range(len(tokens) - 1, -1, -1):
        start, kind = tokens[index]
        if kind != duckdb.token_type.comment and not query.startswith(";", start):
            end = tokens[index + 1][0] if index + 1 < len(tokens) else len(query)
            return query if not query[end:].strip() else query[:end].rstrip()
    return query


def _as_int(key: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise JobError(f"option '{key}' must be an integer, got {value!r}") from None


def _as_seconds(key: str, value: Any) -> int:
    """Seconds from an integer or a duration like `14d`, `36h`, `90m`."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*([dhms]?)\s*", value.lower())
        if not match:
            raise JobError(f"option '{key}' must be seconds or a duration like 14d or 36h, got {value!r}")
        return int(match.group(1)) * {"d": 86400, "h": 3600, "m": 60, "s": 1, "": 1}[match.group(2)]
    return _as_int(key, value)


def _validate(job: Job) -> None:
    if not isinstance(job.name, str) or not _NAME_RE.match(job.name):
        raise JobError(
            f"job name {job.name!r} is not valid: use letters, digits and underscores, starting with a letter"
        )
    if job.table is not None and not _TABLE_RE.match(job.table):
        raise JobError(f"option 'table' {job.table!r} is not valid: use 'name' or 'schema.name' (letters, digits, _)")
    endpoints.get(job.endpoint)  # refuses an unknown endpoint, naming the supported ones
    if job.completion_window != "24h":
        raise JobError(f"option 'completion_window' must be '24h' (the only window the Batch API offers), got {job.completion_window!r}")
    if job.model is not None and (not isinstance(job.model, str) or not job.model.strip()):
        raise JobError(f"option 'model' must be a model name, got {job.model!r}")
    if job.system is not None and not isinstance(job.system, str):
        raise JobError(f"option 'system' must be text, got {job.system!r}")
    bad = sorted(set(job.params) & RESERVED_PARAMS)
    if bad:
        raise JobError(
            f"params {', '.join(bad)} cannot be set: model comes from 'model', messages from the query's "
            "prompt/messages columns, and streaming is not supported by the Batch API"
        )
    for key, value in job.params.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise JobError(f"param {key!r} must be a JSON value, got {value!r}") from None
    if job.max_requests_per_shard is not None and not 1 <= job.max_requests_per_shard <= MAX_REQUESTS_PER_SHARD_ANY:
        raise JobError(f"max_requests_per_shard must be between 1 and {MAX_REQUESTS_PER_SHARD_ANY:,} (the provider's "
                       f"limit: OpenAI {MAX_REQUESTS_PER_SHARD:,}), got {job.max_requests_per_shard}")
    if not 1024 <= job.max_bytes_per_shard <= MAX_BYTES_PER_SHARD:
        raise JobError(f"max_bytes_per_shard must be between 1024 and {MAX_BYTES_PER_SHARD}, got {job.max_bytes_per_shard}")
    if job.max_attempts < 1:
        raise JobError(f"max_attempts must be at least 1, got {job.max_attempts}")
    if job.max_requests is not None and job.max_requests < 0:
        raise JobError(f"max_requests must be 0 or more, got {job.max_requests}")
    if job.max_enqueued_tokens is not None and job.max_enqueued_tokens < 1:
        raise JobError(f"max_enqueued_tokens must be at least 1, got {job.max_enqueued_tokens}")
    if job.enqueued_token_quota is not None and job.enqueued_token_quota < 1:
        raise JobError(f"enqueued_token_quota must be at least 1, got {job.enqueued_token_quota}")
    for key in ("input_expires_after", "output_expires_after"):
        seconds = getattr(job, key)
        if not MIN_FILE_EXPIRY <= seconds <= MAX_FILE_EXPIRY:
            raise JobError(f"option '{key}' must be between 1h and 30d ({MIN_FILE_EXPIRY:,}–{MAX_FILE_EXPIRY:,} "
                           f"seconds), got {seconds:,}")
    if job.price_model is not None and (not isinstance(job.price_model, str) or not job.price_model.strip()):
        raise JobError(f"option 'price_model' must be a model name like gpt-4o-mini, got {job.price_model!r}")
    from warehouse_batch.providers import check_job  # providers import this module

    check_job(job)
    if job.max_cost_usd is not None and job.max_cost_usd < 0:
        raise JobError(f"max_cost_usd must be 0 or more, got {job.max_cost_usd}")
    if job.cost_guard not in COST_GUARDS:
        raise JobError(f"option 'cost_guard' must be one of {', '.join(COST_GUARDS)}, got {job.cost_guard!r}")
    if len(job.metadata) > 14:
        raise JobError("option 'metadata' may hold at most 14 pairs (the Batch API allows 16; warehouse_batch uses 2)")
    for key, value in job.metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise JobError(f"metadata {key!r}: keys and values must be strings (quote numbers in YAML), got {value!r}")
        if len(key) > 64 or len(value) > 512:
            raise JobError(f"metadata {key!r}: keys may have 64 characters and values 512")
        if key in (METADATA_JOB_KEY, METADATA_SHARD_KEY):
            raise JobError(f"metadata key {key!r} is reserved by warehouse_batch")
