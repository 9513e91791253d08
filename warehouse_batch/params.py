"""Checks of request parameters: their kinds and ranges (each endpoint declares its own in `endpoints.py`).

Job-level `params` are checked here in Python when the job compiles; per-row override columns
(`temperature`, `max_tokens`, ...) are checked in SQL over the staged rows (`row_checks`), so a
bad value is reported with its custom_ids before anything is uploaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from warehouse_batch.errors import JobError
from warehouse_batch.quoting import quote_ident, sql_literal

if TYPE_CHECKING:
    from warehouse_batch.endpoints import Endpoint


@dataclass(frozen=True)
class Param:
    """kind: number | integer | string | boolean | enum | object | array | any | stop."""

    kind: str
    minimum: float | None = None
    maximum: float | None = None
    values: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "enum":
            return "one of " + ", ".join(repr(v) for v in self.values)
        if self.kind in ("number", "integer"):
            what = "a whole number" if self.kind == "integer" else "a number"
            if self.minimum is not None and self.maximum is not None:
                if self.minimum == self.maximum:
                    return f"{_fmt(self.minimum)} (the only supported value)"
                return f"{what} from {_fmt(self.minimum)} to {_fmt(self.maximum)}"
            if self.minimum is not None:
                return f"{what} ≥ {_fmt(self.minimum)}"
            return what
        return {"string": "text", "boolean": "true or false", "object": "a mapping", "array": "a list",
                "stop": "a text or a list of up to 4 texts", "any": "a JSON value"}[self.kind]

    def accepts(self, value: Any) -> bool:
        if self.kind in ("number", "integer"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False
            if self.kind == "integer" and not float(value).is_integer():
                return False
            if self.minimum is not None and value < self.minimum:
                return False
            return self.maximum is None or value <= self.maximum
        if self.kind == "string":
            return isinstance(value, str)
        if self.kind == "boolean":
            return isinstance(value, bool)
        if self.kind == "enum":
            return value in self.values
        if self.kind == "object":
            return isinstance(value, dict)
        if self.kind == "array":
            return isinstance(value, list)
        if self.kind == "stop":
            return isinstance(value, str) or (isinstance(value, list) and len(value) <= 4
                                               and all(isinstance(v, str) for v in value))
        return True


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _unknown(endpoint: Endpoint, name: str, where: str) -> JobError:
    known = sorted(endpoint.params)
    hint = endpoint.renames.get(name)
    if hint:
        return JobError(f"{where} {name!r} is not a parameter of {endpoint.path}; use {hint}")
    listing = f"known: {', '.join(known)}" if known else "it takes no parameters besides model"
    return JobError(
        f"{where} {name!r} is not a parameter of {endpoint.path} ({listing}). For a parameter warehouse_batch does "
        "not know yet, pass whole request bodies in a 'body' column"
    )


def check_job_params(endpoint: Endpoint, params: dict[str, Any], *, has_schema: bool) -> None:
    """Raise JobError for an unknown parameter, a value of the wrong type or out of range."""
    allowed = endpoint.params
    for name, value in sorted(params.items()):
        spec = allowed.get(name)
        if spec is None:
            raise _unknown(endpoint, name, "param")
        if value is None:
            continue
        if not spec.accepts(value):
            raise JobError(f"param {name!r} must be {spec.describe()} for {endpoint.path}, got {json.dumps(value)}")
    if has_schema and endpoint.schema_key and endpoint.schema_key in params:
        raise JobError(
            f"param {endpoint.schema_key!r} and output_schema both set the answer format; keep only output_schema"
        )
    for name, (body_key, _) in endpoint.nested_params.items():
        if name in params and body_key in params:
            raise JobError(f"params {body_key!r} and {name!r} both set the same thing; keep one")


def check_override_columns(endpoint: Endpoint, columns: dict[str, str], override_columns: tuple[str, ...]) -> None:
    """A per-row override column must name a parameter of this endpoint."""
    allowed = endpoint.params
    for name in override_columns:
        if name not in columns or name == "model":
            continue
        if name == "system":
            if not endpoint.takes_system:
                raise JobError(
                    f"the query has a 'system' column, but {endpoint.path} takes no system prompt; rename or drop "
                    "the column"
                )
            continue
        if name not in allowed:
            raise JobError(
                f"the query's column {name!r} would override a request parameter, but {name!r} is not a parameter of "
                f"{endpoint.path}; rename the column (e.g. {name} AS source_{name})"
            )
        if allowed[name].kind not in ("number", "integer", "string", "enum", "boolean"):
            raise JobError(f"the column {name!r} cannot override {name} per row; set it in the job's params")


def row_value_sql(kind: str, column: str) -> str:
    """The JSON text of one row's override value. TRY_CAST keeps a bad value from aborting the
    build; row_checks reports it before anything is sent."""
    cast = {"number": "DOUBLE", "integer": "BIGINT", "boolean": "BOOLEAN"}.get(kind, "VARCHAR")
    if kind == "integer":
        return f"CAST(to_json(CAST(TRY_CAST({column} AS DOUBLE) AS BIGINT)) AS VARCHAR)"
    return f"CAST(to_json(TRY_CAST({column} AS {cast})) AS VARCHAR)"


def row_checks(endpoint: Endpoint, columns: dict[str, str], override_columns: tuple[str, ...]) -> list[tuple[str, str]]:
    """(WHERE condition over the staged rows, what is wrong) for each override column present."""
    checks = []
    allowed = endpoint.params
    for name in override_columns:
        if name not in columns or name in ("model", "system") or name not in allowed:
            continue
        spec, col = allowed[name], quote_ident(name)
        if spec.kind in ("number", "integer"):
            num = f"TRY_CAST({col} AS DOUBLE)"
            bad = [f"{num} IS NULL", "NOT isfinite(" + num + ")"]
            if spec.kind == "integer":
                bad.append(f"{num} <> trunc({num})")
            if spec.minimum is not None:
                bad.append(f"{num} < {spec.minimum}")
            if spec.maximum is not None:
                bad.append(f"{num} > {spec.maximum}")
            condition = f"{col} IS NOT NULL AND ({' OR '.join(bad)})"
        elif spec.kind == "enum":
            condition = f"{col} IS NOT NULL AND CAST({col} AS VARCHAR) NOT IN ({', '.join(sql_literal(v) for v in spec.values)})"
        elif spec.kind == "boolean":
            condition = f"{col} IS NOT NULL AND TRY_CAST({col} AS BOOLEAN) IS NULL"
        else:
            continue
        checks.append((condition, f"have a {name} that is not {spec.describe()}"))
    return checks


__all__ = ["Param", "check_job_params", "check_override_columns", "row_checks", "row_value_sql"]
