"""Downloaded output/error files → `warehouse_batch.results`, the answer cache keyed by request hash.

Every answer line is loaded by one streaming DuckDB `read_json` statement per endpoint
(`sql/duckdb/load_results.sql`), parsed with that endpoint's own schema (`ANSWER_SHAPES`); then each
request that got no line gets its batch's outcome, so every request ends in exactly one state.
Exactly once comes from the transaction that loads a batch and moves its shard to `collected`
(a compare-and-set: a batch is loaded once), not from a per-answer primary key; the only place a
custom_id can repeat — two lines of the same batch — is checked on the rows just loaded.
The writes go through the ledger; this module decides what they say.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from warehouse_batch import endpoints
from warehouse_batch.ledger import Ledger, Shard
from warehouse_batch.shards import LINE_CUSTOM_ID
from warehouse_batch.sqlfiles import read_sql
from warehouse_batch.warehouses.base import Warehouse
from warehouse_batch.warehouses.duckdb import memory_limit_bytes

#: Result files loaded per INSERT (OpenAI batches hold up to 50,000 requests: about 1M lines).
FILES_PER_STATEMENT = 20
#: DuckDB memory one loading thread holds whatever the files: read_json's buffer (twice its largest
#: line, 32 MB) and the row group of answers it fills before writing it out (about 50 MB). Under a
#: limit that cannot hold two of them and the key table, the load runs on one thread: at 128MB two
#: threads ran out of memory on a single 50,000-line file, one thread loads 1M lines
#: (benchmarks/RESULTS.md, 2026-12-03).
LOAD_THREAD_BYTES = 96 << 20

#: What a request that got no line in its batch's files becomes, by the batch's final status.
NO_LINE = {
    "failed": ("failed", "batch_failed", "the batch failed validation before this request ran"),
    "expired": ("expired", "batch_expired", "the batch expired before this request ran"),
    "cancelled": ("cancelled", "batch_cancelled", "the batch was cancelled before this request ran"),
    "completed": ("failed", "missing_result", "the batch completed without a result line for this request"),
}


_USAGE_CHAT = ("usage STRUCT(prompt_tokens BIGINT, completion_tokens BIGINT, "
               "prompt_tokens_details STRUCT(cached_tokens BIGINT), completion_tokens_details STRUCT(reasoning_tokens BIGINT))")
_TOKENS_CHAT = ("b.usage.prompt_tokens AS input_tokens, b.usage.completion_tokens AS output_tokens, "
                "b.usage.prompt_tokens_details.cached_tokens AS cached_tokens, "
                "b.usage.completion_tokens_details.reasoning_tokens AS reasoning_tokens")
_NO_ANSWER_TEXT = "NULL AS content, NULL AS finish_reason, NULL AS refusal"

#: Per answer shape: (the response body's STRUCT fields, the answer columns over `b`, embeddings).
#: Only what the output table uses is parsed; extra keys of a line are skipped by the reader.
ANSWER_SHAPES: dict[str, tuple[str, str, str]] = {
    "chat": (
        "model VARCHAR, choices STRUCT(message STRUCT(content VARCHAR, refusal VARCHAR), finish_reason VARCHAR)[], "
        + _USAGE_CHAT,
        "b.choices[1].message.content AS content, b.choices[1].finish_reason AS finish_reason, "
        "b.choices[1].message.refusal AS refusal, b.model AS model, " + _TOKENS_CHAT,
        "NULL",
    ),
    "completions": (
        "model VARCHAR, choices STRUCT(text VARCHAR, finish_reason VARCHAR)[], " + _USAGE_CHAT,
        "b.choices[1].text AS content, b.choices[1].finish_reason AS finish_reason, NULL AS refusal, "
        "b.model AS model, " + _TOKENS_CHAT,
        "NULL",
    ),
    "responses": (
        "model VARCHAR, status VARCHAR, incomplete_details STRUCT(reason VARCHAR), "
        "output STRUCT(type VARCHAR, content STRUCT(type VARCHAR, text VARCHAR, refusal VARCHAR)[])[], "
        "usage STRUCT(input_tokens BIGINT, output_tokens BIGINT, input_tokens_details STRUCT(cached_tokens BIGINT), "
        "output_tokens_details STRUCT(reasoning_tokens BIGINT))",
        "nullif(array_to_string(flatten(list_transform(list_filter(b.output, lambda o: o.type = 'message'), "
        "lambda o: list_transform(list_filter(o.content, lambda c: c.type = 'output_text'), lambda c: c.text))), ''), '') "
        "AS content, "
        "coalesce(b.incomplete_details.reason, CASE WHEN b.output IS NOT NULL THEN b.status END) AS finish_reason, "
        "list_filter(flatten(list_transform(b.output, lambda o: o.content)), lambda c: c.type = 'refusal')[1].refusal "
        "AS refusal, b.model AS model, b.usage.input_tokens AS input_tokens, b.usage.output_tokens AS output_tokens, "
        "b.usage.input_tokens_details.cached_tokens AS cached_tokens, "
        "b.usage.output_tokens_details.reasoning_tokens AS reasoning_tokens",
        "NULL",
    ),
    "embedding": (
        'model VARCHAR, data STRUCT("index" INTEGER, embedding JSON)[], usage STRUCT(prompt_tokens BIGINT)',
        f"{_NO_ANSWER_TEXT}, b.model AS model, b.usage.prompt_tokens AS input_tokens, NULL AS output_tokens, "
        "NULL AS cached_tokens, NULL AS reasoning_tokens",
        # A vector that is not a list of numbers (e.g. base64 text) becomes a NULL item; publish flags it.
        "CASE WHEN b.data IS NOT NULL THEN list_transform(list_sort(b.data), lambda d: TRY_CAST(d.embedding AS FLOAT[])) END",
    ),
    "moderation": (
        "model VARCHAR, results JSON",
        "CAST(b.results AS VARCHAR) AS content, NULL AS finish_reason, NULL AS refusal, b.model AS model, "
        "NULL AS input_tokens, NULL AS output_tokens, NULL AS cached_tokens, NULL AS reasoning_tokens",
        "NULL",
    ),
}


def answer_shape(endpoint: str) -> str:
    """Which `ANSWER_SHAPES` entry reads the answers of an endpoint (from the endpoint registry)."""
    record = endpoints.get(endpoint)
    return record.shape if record.answer == "text" else record.answer


def load_sql(endpoint: str) -> str:
    """The INSERT that loads answer lines of `endpoint` (parameters $files, $sources)."""
    body, answer, embeddings = ANSWER_SHAPES[answer_shape(endpoint)]
    return read_sql("duckdb/load_results.sql").format(body=body, answer=answer, embeddings=embeddings)


def load(ledger: Ledger, batches: list[dict[str, Any]]) -> None:
    """Store every answer of the given batches (one statement per endpoint), resolve a custom_id
    repeated within them, then settle each request that got no line. Each item: a shard row plus
    `files` (downloaded paths) and `errors` (the batch's validation errors). Call in the
    transaction that moves these shards to `collected`."""
    by_endpoint: dict[str, list[dict[str, str]]] = {}
    for b in batches:
        shard = b if "endpoint" in b and "line_count" in b else {**ledger.shard(b["shard_id"]), **b}
        b.update(endpoint=shard["endpoint"], line_count=shard["line_count"])
        for f in b["files"]:
            if f.stat().st_size > 0:
                by_endpoint.setdefault(b["endpoint"], []).append(
                    {"file": str(f), "batch_id": b["batch_id"], "shard_id": b["shard_id"]})
    with _loading(ledger.warehouse):
        for endpoint, sources in by_endpoint.items():
            # A statement per group of files: its semi-join holds only those shards' requests, so a
            # collect of 200 batches needs what one of 20 does (one INSERT over 10M lines ran out of the
            # default 256 MB, benchmarks/RESULTS.md 2026-12-03). Same transaction, so still all or nothing.
            for start in range(0, len(sources), FILES_PER_STATEMENT):
                group = sources[start:start + FILES_PER_STATEMENT]
                ledger.insert_results(load_sql(endpoint), [s["file"] for s in group], group)
    shard_ids = [b["shard_id"] for b in batches]
    ledger.drop_repeated_answers(shard_ids)
    # A shard with an answer for every request it holds has nothing to settle (the usual case):
    # answers land only on requests whose current shard it is, so the count says it all.
    answered = ledger.answered_counts(shard_ids)
    for batch in batches:
        if answered.get(batch["shard_id"], 0) < (batch["line_count"] or 0) or batch["errors"]:
            settle(ledger, batch, batch["status"], batch["errors"])


def _loading(warehouse: Warehouse) -> contextlib.ExitStack:
    """How the load statements run: the key check builds on the shards' requests, and one thread
    when the memory limit cannot hold two (`LOAD_THREAD_BYTES`)."""
    stack = contextlib.ExitStack()
    stack.enter_context(warehouse.joins_as_written())
    if memory_limit_bytes(warehouse) < 2 * LOAD_THREAD_BYTES:
        stack.enter_context(warehouse.single_threaded())
    return stack


def settle(ledger: Ledger, shard: Shard, batch_status: str, errors: list[dict[str, Any]] | None = None) -> None:
    """Requests of the shard without an answer line take the batch's outcome."""
    errors = errors or []
    status, code, message = NO_LINE.get(batch_status, NO_LINE["completed"])
    if batch_status == "failed" and errors:
        lineless = [e for e in errors if e.get("line") is None]
        if lineless:
            code = lineless[0].get("code") or code
        summary = "; ".join(
            f"{e.get('code')}: {e.get('message')}" + (f" (line {e['line']})" if e.get("line") else "")
            for e in errors[:3]
        )
        message = f"the batch failed validation: {summary}"
    ledger.settle_unanswered(shard, status, code, message, _line_errors(errors, shard.get("path")))


def _line_errors(errors: list[dict[str, Any]], shard_path: str | None) -> list[dict[str, Any]]:
    """Validation errors that name a line, with the custom_id found on that line of the shard file."""
    wanted = {int(e["line"]): e for e in errors if e.get("line") is not None}
    if not wanted or not shard_path or not Path(shard_path).exists():
        return []
    found = []
    with open(shard_path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if number in wanted:
                match = LINE_CUSTOM_ID.match(line)
                if match:
                    found.append({**wanted[number], "custom_id": match.group(1).decode()})
                if len(found) == len(wanted):
                    break
    return found
