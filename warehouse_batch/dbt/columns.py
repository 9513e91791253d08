"""Types and docs from one place: the model's schema.yml columns and the generated columns.

- `output_schema` may be left out of an llm_batch model's config: then every schema.yml column with
  a `data_type` that the model's query does not select (and that is not a generated column) is an
  answer field, typed by its `data_type` and described to the model by its `description`. Types are
  written once, in the yml, where dbt contracts and docs read them too.
- `column_docs` gives the descriptions the materialization writes as column comments when the yml
  has none: the answer fields' (from output_schema COMMENTs or JSON Schema descriptions) and the
  generated columns' (status, error_code, ...), so `dbt docs generate` shows every column.
"""

from __future__ import annotations

from typing import Any

from warehouse_batch import compile as compiler
from warehouse_batch import schema
from warehouse_batch.jobs import Job
from warehouse_batch.names import OUTPUT_COLUMNS, is_reserved_column
from warehouse_batch.quoting import sql_literal
from warehouse_batch.warehouses.base import Warehouse

#: What each generated column of the output table means (README "Output table").
GENERATED_DOCS = {
    "content": "The answer text as returned (JSON text for structured output).",
    "status": "completed, pending (in flight or not sent yet), failed, expired or cancelled.",
    "error_code": "Why the row is not completed: the provider's error code or the answer check that failed.",
    "error_message": "The provider's or the answer check's message for a row that is not completed.",
    "finish_reason": "Why the model stopped (stop, length, content_filter...).",
    "refusal": "The model's refusal text, when it refused.",
    "model": "The model that answered.",
    "input_tokens": "Input tokens the answer used.",
    "output_tokens": "Output tokens the answer used.",
    "cost_usd": "What the answer cost, at batch prices.",
    "attempts": "How many times the request was sent.",
    "request_hash": "The row's current request (sha256 of its body); equal requests share one answer.",
    "batch_id": "The provider batch the answer came from.",
    "completed_at": "When the provider completed the answer (an old time for a cached answer).",
    "is_stale": "True while the row shows its last answer to an earlier request (e.g. before a prompt edit) "
                "and the current request is in flight.",
    "answer_request_hash": "The request the shown answer belongs to (differs from request_hash while stale).",
    "published_at": "When this model first published the row's current answer; only grows: the watermark for "
                    "incremental models (warehouse_batch.llm_batch_completed).",
}


def with_yml_schema(warehouse: Warehouse, job: Job, columns: dict[str, dict[str, Any]]) -> Job:
    """The job with an output_schema built from the yml columns the query does not provide (if any
    and if the config has none)."""
    if job.output_schema is not None or not columns:
        return job
    selected = {c.lower() for c in compiler.describe(warehouse, job)}
    fields = []
    for name, column in columns.items():
        kind = (column.get("data_type") or "").strip()
        if not kind or name.lower() in selected or name.lower() in ("custom_id", *OUTPUT_COLUMNS) \
                or is_reserved_column(name):
            continue
        description = (column.get("description") or "").strip()
        fields.append(f"{name} {kind}" + (f" COMMENT {sql_literal(description)}" if description else ""))
    if not fields:
        return job
    return Job.from_options({**job.to_options(), "output_schema": ", ".join(fields)})


def column_docs(job: Job) -> dict[str, str]:
    """Descriptions of the answer fields (from the output schema) and of the generated columns."""
    docs = dict(GENERATED_DOCS)
    loaded = schema.load(job.output_schema) if job.output_schema is not None else None
    for field in getattr(loaded, "fields", ()) or ():
        if field.description:
            docs[field.name] = field.description
    return docs
