"""Downloaded output/error files → `warehouse_batch.results`, the answer cache keyed by request hash.

Every answer line is loaded by one DuckDB `read_json` statement (`sql/duckdb/load_results.sql`);
then each request that got no line gets its batch's outcome, so every request ends in exactly one
state. The writes go through the ledger; this module decides what they say.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from warehouse_batch.ledger import Ledger, Shard

#: What a request that got no line in its batch's files becomes, by the batch's final status.
NO_LINE = {
    "failed": ("failed", "batch_failed", "the batch failed validation before this request ran"),
    "expired": ("expired", "batch_expired", "the batch expired before this request ran"),
    "cancelled": ("cancelled", "batch_cancelled", "the batch was cancelled before this request ran"),
    "completed": ("failed", "missing_result", "the batch completed without a result line for this request"),
}
#: Our shard lines start with the custom_id (the request hash), so a line number maps back cheaply.
_CUSTOM_ID = re.compile(rb'^\{"custom_id":"([0-9a-f]{64})"')


def load(ledger: Ledger, batches: list[dict[str, Any]]) -> None:
    """Store every answer of the given batches in one statement; then settle each request that got
    no line. Each item: a shard row plus `files` (downloaded paths) and `errors` (the batch's
    validation errors). Call in a transaction."""
    sources = [
        {"file": str(f), "batch_id": b["batch_id"], "shard_id": b["shard_id"]}
        for b in batches for f in b["files"] if f.stat().st_size > 0
    ]
    ledger.insert_results([s["file"] for s in sources], sources)
    for batch in batches:
        settle(ledger, batch, batch["status"], batch["errors"])


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
                match = _CUSTOM_ID.match(line)
                if match:
                    found.append({**wanted[number], "custom_id": match.group(1).decode()})
                if len(found) == len(wanted):
                    break
    return found
