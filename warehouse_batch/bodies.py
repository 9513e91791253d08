"""Request bodies as SQL expressions, so DuckDB builds every body (and its hash) in one pass.

The body text is canonical: keys in a fixed order (model, the endpoint's input keys, the response
format of an output schema, then params sorted by name), compact separators, raw UTF-8. The
response format is part of the body, so a changed schema is a new request with a new hash. Identical requests therefore hash identically,
across rows, runs and jobs, which is what lets nobody pay twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from warehouse_batch import answers, endpoints, params, schema
from warehouse_batch.endpoints import MAX_OUTPUT_KEYS, Endpoint
from warehouse_batch.errors import JobError
from warehouse_batch.jobs import Job
from warehouse_batch.quoting import quote_ident, sql_literal
from warehouse_batch.schema import OutputSchema

#: Query columns with a meaning; any other column is carried to the output table untouched.
INPUT_COLUMNS = ("prompt", "messages", "body", "input")
#: Per-row columns that override the job option or request parameter of the same name.
OVERRIDE_COLUMNS = (
    "model",
    "system",
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "top_p",
    "seed",
    "reasoning_effort",
    "frequency_penalty",
    "presence_penalty",
    "dimensions",
)
_TEXT_TYPES = ("VARCHAR", "JSON")


@dataclass(frozen=True)
class BodySQL:
    """SQL expressions over the job's query (aliased `q`) for one job."""

    input_column: str
    body: str  # canonical JSON text of the request body
    model: str  # the model name (NULL when missing: a validation error)
    line_overhead: int  # bytes a JSONL line adds around the body, newline included
    max_output: str  # the request's output-token ceiling (max_tokens & co.), NULL when it sets none
    #: md5 of endpoint, model and response format: requests whose answers are alike (see estimates.py).
    output_key: str


def _col(name: str) -> str:
    return f"q.{quote_ident(name)}"


def line_overhead(endpoint: str) -> int:
    """Bytes of `{"custom_id":"<64 hex>","method":"POST","url":"<endpoint>","body":` + `}` + newline."""
    prefix = '{"custom_id":"' + "0" * 64 + '","method":"POST","url":' + json.dumps(endpoint) + ',"body":'
    return len(prefix.encode()) + 2


def build(job: Job, columns: dict[str, str]) -> BodySQL:
    """The body expression for this job over a query with `columns` (name → DuckDB type).

    Raises JobError before any row is read for: no/several input columns, an invalid output
    schema, unknown or invalid job params, override columns the endpoint does not take, and
    output columns that would clash with the query's."""
    endpoint = endpoints.get(job.endpoint)
    allowed = (*endpoint.inputs, "body")
    present = [c for c in INPUT_COLUMNS if c in columns]
    if not present:
        raise JobError(
            f"job {job.name}: the query needs a column named one of {', '.join(allowed)} "
            f"(endpoint {job.endpoint}); it has: {', '.join(columns)}"
        )
    if len(present) > 1:
        raise JobError(
            f"job {job.name}: the query has several input columns ({', '.join(present)}); keep exactly one of "
            f"{', '.join(allowed)}"
        )
    input_column = present[0]
    if input_column not in allowed:
        raise JobError(
            f"job {job.name}: endpoint {job.endpoint} takes its input from one of {', '.join(allowed)}, "
            f"not from a '{input_column}' column"
        )
    output_schema = _output_schema(job, endpoint)
    _check_output_columns(job, columns, input_column)

    if input_column == "body":  # a full body, sent as given (its hash included)
        body = json_text(_col("body"), columns["body"])
        model = f"json_extract_string({body}, '$.model')"
        max_output = "coalesce(" + ", ".join(
            f"TRY_CAST(json_extract_string({body}, '$.{key}') AS BIGINT)" for key in MAX_OUTPUT_KEYS) + ")"
        key = endpoint.schema_key or "response_format"
        output_format = f"coalesce(CAST(json_extract({body}, '$.{key}') AS VARCHAR), '')"
        return BodySQL(input_column, body, model, line_overhead(job.endpoint), max_output,
                       _output_key(job.endpoint, model, output_format))

    params.check_job_params(endpoint, job.params, has_schema=output_schema is not None)
    params.check_override_columns(endpoint, columns, OVERRIDE_COLUMNS)
    model = _with_default("model", columns, job.model or endpoint.default_model, cast="VARCHAR")
    system = _with_default("system", columns, job.system, cast="VARCHAR")
    parts = ["'{\"model\":' || to_json(" + model + ")"]
    if endpoint.shape == "chat":
        parts.append("',\"messages\":' || " + _chat_messages(input_column, columns, system))
    elif endpoint.shape == "responses":
        parts.append(f"coalesce(',\"instructions\":' || to_json({system}), '')")
        if input_column == "prompt":
            parts.append(f"',\"input\":' || to_json({_col('prompt')})")
        else:
            parts.append("',\"input\":' || " + json_text(_col("messages"), columns["messages"]))
    elif endpoint.shape == "completions":
        parts.append(f"',\"prompt\":' || to_json({_col('prompt')})")
    else:  # embeddings, moderations: a text (or list of texts) input
        parts.append(f"',\"input\":' || to_json({_col(input_column)})")
    output_format = ""
    if output_schema is not None:
        key, value = output_schema.response_format(endpoint)
        # Property order matters to the model (it answers in that order): no key sorting here.
        output_format = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        parts.append(sql_literal(f',"{key}":' + output_format))
    parts.extend(_params(job, endpoint, columns))
    body = "(" + " || ".join(parts) + " || '}')"
    return BodySQL(input_column, body, model, line_overhead(job.endpoint), _max_output(job, columns),
                   _output_key(job.endpoint, model, sql_literal(output_format)))


def _output_key(endpoint: str, model: str, output_format: str) -> str:
    """Requests with the same endpoint, model and answer format answer alike: their past output
    lengths predict the next ones (the prompt itself is deliberately left out)."""
    return f"md5({sql_literal(endpoint + chr(10))} || coalesce({model}, '') || chr(10) || {output_format})"


def _output_schema(job: Job, endpoint: Endpoint) -> OutputSchema | None:
    if isinstance(job.output_schema, type):  # the job definition is stored as JSON: keep a reference instead
        model = job.output_schema
        raise JobError(
            f"job {job.name}: pass the model as output_schema='{model.__module__}:{model.__qualname__}' "
            "(a string), so the job can be stored and re-run"
        )
    output_schema = schema.load(job.output_schema)
    if output_schema is not None and endpoint.schema_key is None:
        raise JobError(
            f"job {job.name}: output_schema works with {' and '.join(endpoints.STRUCTURED)}; "
            f"{job.endpoint} has fixed output columns (remove output_schema)"
        )
    return output_schema


def _check_output_columns(job: Job, columns: dict[str, str], input_column: str) -> None:
    """Columns the answer adds (schema fields, embedding, moderation flags) must not shadow query columns."""
    added = answers.output_columns(job, columns.get(input_column))
    clashes = [name for name, _ in added if name.lower() in {c.lower() for c in columns}]
    if clashes:
        raise JobError(
            f"job {job.name}: the query's column(s) {', '.join(clashes)} clash with output column(s) of the same name "
            f"that the answer fills; rename them (e.g. SELECT {clashes[0]} AS source_{clashes[0]})"
        )


def _max_output(job: Job, columns: dict[str, str]) -> str:
    """The output-token ceiling without parsing the body: per-row columns, then job params."""
    pieces = []
    for key in MAX_OUTPUT_KEYS:
        if key in columns:
            pieces.append(f"TRY_CAST({_col(key)} AS BIGINT)")
        if isinstance(job.params.get(key), int):
            pieces.append(str(int(job.params[key])))
    return f"coalesce({', '.join(pieces)})" if pieces else "CAST(NULL AS BIGINT)"


def _chat_messages(input_column: str, columns: dict[str, str], system: str) -> str:
    system_message = f"'{{\"role\":\"system\",\"content\":' || to_json({system}) || '}}'"
    if input_column == "prompt":
        user = f"'{{\"role\":\"user\",\"content\":' || to_json({_col('prompt')}) || '}}'"
        return f"('[' || coalesce({system_message} || ',', '') || {user} || ']')"
    messages = json_text(_col("messages"), columns["messages"])
    # A system prompt goes in front of the row's messages: '[' + system + ',' + the rest of the array.
    return f"(CASE WHEN {system} IS NULL THEN {messages} ELSE '[' || {system_message} || ',' || substr({messages}, 2) END)"


def json_text(expr: str, column_type: str) -> str:
    """Compact JSON text of a column holding JSON text or a DuckDB nested value.

    Text that is not JSON gives NULL instead of aborting the whole query, so that compile's row
    checks can name the rows at fault."""
    if column_type.upper() in _TEXT_TYPES:
        return f"CAST(json(CASE WHEN json_valid({expr}) THEN {expr} END) AS VARCHAR)"
    return f"CAST(to_json({expr}) AS VARCHAR)"


def _with_default(name: str, columns: dict[str, str], default: Any, cast: str) -> str:
    """The per-row column if the query has it (falling back to the job option on NULL), else the option."""
    literal = "NULL" if default is None else sql_literal(str(default))
    if name in columns:
        return f"coalesce(CAST({_col(name)} AS {cast}), {literal})"
    return f"CAST({literal} AS {cast})"


def _params(job: Job, endpoint: Endpoint, columns: dict[str, str]) -> list[str]:
    """`,"key":value` pieces for every request parameter, sorted by body key; NULL per-row values fall back.

    Per-row values are cast to the parameter's type (a bad one is reported by compile's row checks)."""
    known = endpoint.params
    row_params = {c for c in OVERRIDE_COLUMNS if c in columns and c not in ("model", "system")}
    pieces = []
    for key in sorted(set(job.params) | row_params, key=endpoint.body_key):
        head, tail = f',"{key}":', ""
        if key in endpoint.nested_params:  # reasoning_effort on /v1/responses: "reasoning": {"effort": ...}
            outer, inner = endpoint.nested_params[key]
            head, tail = f',"{outer}":{{"{inner}":', "}"
        job_value = job.params.get(key)
        job_json = None if job_value is None else json.dumps(job_value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        if key in row_params:
            row_json = params.row_value_sql(known[key].kind, _col(key))
            if job_json is None:
                pieces.append(f"coalesce({sql_literal(head)} || {row_json} || {sql_literal(tail)}, '')")
            else:
                pieces.append(f"{sql_literal(head)} || coalesce({row_json}, {sql_literal(job_json)}) || {sql_literal(tail)}")
        elif job_json is not None:
            pieces.append(sql_literal(head + job_json + tail))
    return pieces
