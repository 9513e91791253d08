"""How an answer becomes typed columns, in SQL: what each endpoint adds to the output table, and
which completed answers are failures after all (refused, cut off, not JSON, not the schema).

`publish.sql` evaluates these expressions over each row joined to its result, whose fields are
named `__wb_content`, `__wb_refusal`, `__wb_finish_reason`, `__wb_embeddings`. Nothing is parsed
in Python: DuckDB reads each answer once with `from_json_strict` behind `json_valid` and `TRY`,
so a bad answer fails its own row and never the load.

Error codes of completed answers (status becomes 'failed', `content` keeps the raw answer):

    refusal           the model refused (chat `message.refusal`, responses `refusal` content)
    truncated         cut off at the token limit (finish_reason 'length', responses incomplete/max_output_tokens)
    content_filter    stopped by the content filter
    invalid_json      with an output schema: the answer is empty or not valid JSON
    schema_mismatch   valid JSON that does not fit the schema (see `check_sql`)
    invalid_embedding embeddings: the answer has no float vector
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from warehouse_batch import endpoints
from warehouse_batch.jobs import Job
from warehouse_batch.quoting import quote_ident, sql_literal
from warehouse_batch.schema import FieldType, OutputSchema, duckdb_type, load, read_spec_of

#: Moderation categories (omni-moderation); each becomes a BOOLEAN column named with `_` for `/` and `-`.
MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors",
    "violence", "violence/graphic",
)


@dataclass(frozen=True)
class AnswerSQL:
    """SQL pieces of publish.sql for one job."""

    parse: str  # __wb_parsed: the answer read once (NULL when it cannot be)
    error: str  # error code of a completed answer, NULL when it is good
    message: str  # error message for that code
    columns: list[tuple[str, str, str]]  # (name, DuckDB type, expression) of the typed output columns


def category_column(category: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", category.lower())


def output_schema(job: Job) -> OutputSchema | None:
    return load(job.output_schema, default_name="output")


def answer_sql(job: Job, input_type: str | None = None) -> AnswerSQL:
    """The answer SQL for a job; `input_type` is the DuckDB type of its input column (lists of
    inputs give lists of answers)."""
    many = input_kind(input_type) in ("texts", "token_lists")
    kind = endpoints.get(job.endpoint).answer
    if kind == "embedding":
        return _embeddings(many)
    if kind == "moderation":
        return _moderations()
    schema = output_schema(job)
    stop = [
        ("__wb_refusal IS NOT NULL", "'refusal'", "'the model refused to answer: ' || __wb_refusal"),
        ("__wb_finish_reason IN ('length', 'max_output_tokens')", "'truncated'",
         "'the answer was cut off at the token limit (finish_reason ' || __wb_finish_reason || '); "
         "raise max_tokens / max_completion_tokens / max_output_tokens'"),
        ("__wb_finish_reason = 'content_filter'", "'content_filter'", "'the answer was stopped by the content filter'"),
    ]
    if schema is None:
        return AnswerSQL("NULL", _case(stop, 1), _case(stop, 2), [])
    spec = sql_literal(schema.read_spec())
    parse = f"CASE WHEN json_valid(__wb_content) THEN TRY(from_json_strict(__wb_content, {spec})) END"
    root = FieldType("struct", fields=schema.fields)
    checks = stop + [
        ("__wb_content IS NULL OR NOT json_valid(__wb_content)", "'invalid_json'",
         "CASE WHEN __wb_content IS NULL THEN 'the answer is empty' ELSE 'the answer is not valid JSON' END"),
        (f"__wb_parsed IS NULL OR NOT {check_sql('__wb_parsed', root)}", "'schema_mismatch'", mismatch_message_sql(schema)),
    ]
    columns = [
        (f.name, duckdb_type(f.type), f"TRY_CAST(__wb_parsed.{quote_ident(f.name)} AS {duckdb_type(f.type)})")
        for f in schema.fields
    ]
    return AnswerSQL(parse, _case(checks, 1), _case(checks, 2), columns)


def _case(branches: list[tuple[str, str, str]], pick: int) -> str:
    if not branches:
        return "NULL"
    return "CASE " + " ".join(f"WHEN {b[0]} THEN {b[pick]}" for b in branches) + " END"


def _embeddings(many: bool) -> AnswerSQL:
    bad = ("__wb_embeddings IS NULL OR len(__wb_embeddings) = 0 "
           "OR list_bool_or(list_transform(__wb_embeddings, lambda e: e IS NULL OR len(e) = 0))")
    message = ("'the answer has no float vector (leave encoding_format unset: base64 vectors are not loaded)'")
    column = ("embeddings", "FLOAT[][]", "__wb_embeddings") if many else ("embedding", "FLOAT[]", "__wb_embeddings[1]")
    return AnswerSQL("NULL", f"CASE WHEN {bad} THEN 'invalid_embedding' END", message, [column])


def _moderations() -> AnswerSQL:
    shape = [{
        "flagged": "BOOLEAN",
        "categories": {c: "BOOLEAN" for c in MODERATION_CATEGORIES},
        "category_scores": {c: "DOUBLE" for c in MODERATION_CATEGORIES},
    }]
    spec = sql_literal(json.dumps(shape, separators=(",", ":")))
    parse = f"CASE WHEN json_valid(__wb_content) THEN TRY(from_json(__wb_content, {spec})) END"
    error = "CASE WHEN __wb_parsed IS NULL OR len(__wb_parsed) = 0 THEN 'invalid_json' END"
    message = "'the moderation answer has no results'"
    # A list of inputs is flagged when any of them is; a category when any input has it; scores are the maximum.
    columns = [("flagged", "BOOLEAN", "list_bool_or(list_transform(__wb_parsed, lambda r: r.flagged))")]
    for c in MODERATION_CATEGORIES:
        columns.append((category_column(c), "BOOLEAN",
                        f"list_bool_or(list_transform(__wb_parsed, lambda r: r.categories.{quote_ident(c)}))"))
    scores = ", ".join(
        f"{quote_ident(category_column(c))} := list_max(list_transform(__wb_parsed, lambda r: r.category_scores.{quote_ident(c)}))"
        for c in MODERATION_CATEGORIES
    )
    columns.append(("category_scores",
                    "STRUCT(" + ", ".join(f"{category_column(c)} DOUBLE" for c in MODERATION_CATEGORIES) + ")",
                    f"struct_pack({scores})"))
    return AnswerSQL(parse, error, message, columns)


_INTEGER = r"U?(?:TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)"


def input_kind(input_type: str | None) -> str | None:
    """The shape of an `input` / `prompt` column's DuckDB type: 'text', 'texts' (a list of texts),
    'tokens' (one token-id array), 'token_lists', or None for anything else.

    A list of texts asks for one answer per text; one token array is a single input, so it gets one
    embedding, not a list of them."""
    if not input_type:
        return None
    t = input_type.strip().upper()
    if t == "VARCHAR" or t.startswith("ENUM("):
        return "text"
    if t == "VARCHAR[]":
        return "texts"
    if re.fullmatch(_INTEGER + r"\[\]", t):
        return "tokens"
    if re.fullmatch(_INTEGER + r"\[\]\[\]", t):
        return "token_lists"
    return None


def output_columns(job: Job, input_type: str | None = None) -> list[tuple[str, str]]:
    """(name, DuckDB type) of the columns the endpoint / schema adds to the output table."""
    return [(name, typ) for name, typ, _ in answer_sql(job, input_type).columns]


# -- schema_mismatch -------------------------------------------------------------------------
def check_sql(expr: str, t: FieldType, depth: int = 0) -> str:
    """A boolean SQL expression, TRUE when the value read by `from_json_strict` fits `t`.

    Checked: null only where the field is nullable; whole numbers that fit the integer type;
    numeric bounds; enum membership; list length bounds; and all of it inside lists and structs.
    (Missing keys, wrong JSON types and unparseable dates already made from_json_strict fail.)"""
    conds: list[str] = []
    if t.kind == "integer":
        conds += [f"{expr} = trunc({expr})", f"TRY_CAST({expr} AS {t.sql}) IS NOT NULL"]
    if t.kind in ("integer", "number"):
        for value, op in ((t.minimum, ">="), (t.maximum, "<="), (t.exclusive_minimum, ">"), (t.exclusive_maximum, "<")):
            if value is not None:
                conds.append(f"{expr} {op} {value!r}")
    if t.kind == "enum":
        conds.append(f"{expr} IN ({', '.join(sql_literal(v) for v in t.values)})")
    if t.kind == "list":
        assert t.item is not None
        if t.min_items is not None:
            conds.append(f"len({expr}) >= {t.min_items}")
        if t.max_items is not None:
            conds.append(f"len({expr}) <= {t.max_items}")
        var = f"__wb_x{depth}"
        conds.append(f"coalesce(list_bool_and(list_transform({expr}, lambda {var}: {check_sql(var, t.item, depth + 1)})), true)")
    if t.kind == "struct":
        conds += [check_sql(f"{expr}.{quote_ident(f.name)}", f.type, depth + 1) for f in t.fields]
    inner = " AND ".join(conds) or "true"
    if t.nullable:
        return f"({expr} IS NULL OR ({inner}))"
    return f"({expr} IS NOT NULL AND ({inner}))"


def expectation(t: FieldType) -> str:
    """What a field must hold, in words, for error messages."""
    null = " or null" if t.nullable else ""
    if t.kind == "enum":
        return "one of " + ", ".join(repr(v) for v in t.values) + null
    if t.kind in ("integer", "number"):
        what = "a whole number" if t.kind == "integer" else "a number"
        bounds = []
        for value, op in ((t.minimum, "≥"), (t.exclusive_minimum, ">"), (t.maximum, "≤"), (t.exclusive_maximum, "<")):
            if value is not None:
                bounds.append(f"{op} {_num(value)}")
        if t.kind == "integer":
            bounds.append(f"fitting {t.sql}")
        return what + (" " + " and ".join(bounds) if bounds else "") + null
    if t.kind == "list":
        limits = []
        if t.min_items is not None:
            limits.append(f"at least {t.min_items}")
        if t.max_items is not None:
            limits.append(f"at most {t.max_items}")
        return "a list" + (f" of {' and '.join(limits)} items" if limits else "") + null
    if t.kind == "struct":
        return f"an object {duckdb_type(t)}" + null
    words = {"string": "text", "boolean": "true or false", "date": "a date (YYYY-MM-DD)",
             "timestamp": "a date-time (ISO 8601)"}
    return words.get(t.kind, t.kind) + null


def _num(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def mismatch_message_sql(schema: OutputSchema) -> str:
    """Which fields are wrong, e.g. `missing field "confidence"; field "sentiment": "Mixed" is not one of ...`."""
    parts = []
    for f in schema.fields:
        path = sql_literal("$." + json.dumps(f.name))
        raw = f"json_extract(__wb_content, {path})"
        spec = sql_literal(json.dumps(read_spec_of(f.type)))
        value = f"TRY(from_json_strict({raw}, {spec}))"
        shown = f"left(CAST({raw} AS VARCHAR), 80)"
        label = sql_literal(f"field {json.dumps(f.name)}")
        expected = sql_literal(f" is not {expectation(f.type)}")
        parts.append(
            f"CASE WHEN NOT json_exists(__wb_content, {path}) THEN {sql_literal('missing field ' + json.dumps(f.name))} "
            f"WHEN (json_type({raw}) <> 'NULL' AND {value} IS NULL) OR NOT {check_sql(value, f.type)} THEN {label} || ': ' || {shown} || {expected} END"
        )
    fields = f"nullif(concat_ws('; ', {', '.join(parts)}), '')"
    return (
        "CASE WHEN json_type(__wb_content) <> 'OBJECT' THEN "
        "'the answer is a JSON ' || lower(json_type(__wb_content)) || ', not an object' "
        f"ELSE 'the answer does not match the output schema: ' || coalesce({fields}, 'duplicate or malformed keys') END"
    )


__all__ = ["AnswerSQL", "MODERATION_CATEGORIES", "answer_sql", "category_column", "check_sql", "input_kind", "output_columns"]
