"""Output schemas: a SQL column list, a JSON Schema or a Pydantic model → one representation.

The representation (`OutputSchema`, a tree of `Field` / `FieldType`) has two faces:

* the strict JSON Schema sent to the model (`json_schema()`, `response_format(endpoint)`): every
  property required, `additionalProperties: false` on every object, nullable fields as
  `["type", "null"]` (scalars) or `anyOf [..., {"type": "null"}]` (enums, lists, objects);
* the DuckDB column types of the output table (`columns()`), and the JSON structure DuckDB's
  `from_json_strict` reads an answer with (`read_spec()`).

Forms accepted for the job option `output_schema`:

    sentiment ENUM('Positive','Neutral','Negative') COMMENT 'overall tone', confidence DOUBLE CHECK (confidence BETWEEN 0 AND 1)
    schemas/invoice.json                    (a JSON Schema file, relative to the job file)
    {"type": "object", "properties": ...}   (a JSON Schema, inline in the YAML header)
    models:SentimentResult                  (a Pydantic model: module:Class, or path/to/file.py:Class)

SQL column lists follow the table-definition grammar of DuckDB (parsed with sqlglot): a column is
NOT NULL unless written `NULL` (the model must fill every field; `NULL` lets it answer null),
`COMMENT '...'` becomes the field's description, `CHECK (col BETWEEN a AND b)` / `>=` / `<=` /
`>` / `<` become numeric bounds, `CHECK (len(col) <= n)` (or `BETWEEN`) a list length limit and
`CHECK (col IN ('a', 'b'))` an enum, like `ENUM('a', 'b')`.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from warehouse_batch.errors import JobError
from warehouse_batch.names import INTERNAL_PREFIX, OUTPUT_COLUMNS
from warehouse_batch.quoting import quote_ident, sql_literal

if TYPE_CHECKING:
    from warehouse_batch.endpoints import Endpoint

#: Names a schema field may not take: the output table's own columns and the query's key.
RESERVED_NAMES = ("custom_id", *OUTPUT_COLUMNS)
_SCHEMA_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PYDANTIC_REF_RE = re.compile(r"^(?P<module>[A-Za-z_][\w.]*|[^\s:]+\.py):(?P<attr>[A-Za-z_]\w*)$")
_JSON_FORMATS = {"date": "date", "date-time": "timestamp"}
#: String formats strict mode accepts; they are passed to the model (and not re-checked).
_STRING_FORMATS = ("email", "hostname", "ipv4", "ipv6", "uuid", "time", "duration")

# sqlglot type → (kind, DuckDB type name)
_SQL_TYPES: dict[exp.DataType.Type, tuple[str, str]] = {}
for _names, _kind, _duck in [
    (("TEXT", "VARCHAR", "CHAR", "NCHAR", "NVARCHAR", "BPCHAR", "NAME"), "string", "VARCHAR"),
    (("BOOLEAN",), "boolean", "BOOLEAN"),
    (("TINYINT",), "integer", "TINYINT"),
    (("SMALLINT",), "integer", "SMALLINT"),
    (("INT",), "integer", "INTEGER"),
    (("BIGINT",), "integer", "BIGINT"),
    (("HUGEINT", "INT128"), "integer", "HUGEINT"),
    (("UTINYINT",), "integer", "UTINYINT"),
    (("USMALLINT",), "integer", "USMALLINT"),
    (("UINT",), "integer", "UINTEGER"),
    (("UBIGINT",), "integer", "UBIGINT"),
    (("FLOAT",), "number", "FLOAT"),
    (("DOUBLE",), "number", "DOUBLE"),
    (("DECIMAL",), "number", "DECIMAL"),
    (("DATE",), "date", "DATE"),
    (("TIMESTAMP", "TIMESTAMPNTZ", "DATETIME"), "timestamp", "TIMESTAMP"),
    (("TIMESTAMPTZ",), "timestamp", "TIMESTAMP WITH TIME ZONE"),
]:
    for _name in _names:
        if hasattr(exp.DataType.Type, _name):
            _SQL_TYPES[getattr(exp.DataType.Type, _name)] = (_kind, _duck)
_SUPPORTED_SQL = (
    "VARCHAR, BOOLEAN, TINYINT/SMALLINT/INTEGER/BIGINT/HUGEINT, FLOAT/DOUBLE/DECIMAL(p,s), DATE, TIMESTAMP, "
    "TIMESTAMPTZ, ENUM('a','b'), lists (T[]) and STRUCT(name T, ...)"
)


@dataclass(frozen=True)
class FieldType:
    """The type of one answer field: a leaf (`string`, `integer`, `number`, `boolean`, `date`,
    `timestamp`, `enum`), a `list` of `item`, or a `struct` of `fields`."""

    kind: str
    sql: str = ""  # DuckDB type of a leaf (INTEGER, DECIMAL(10,2), TIMESTAMP WITH TIME ZONE...)
    nullable: bool = False
    values: tuple[str, ...] = ()  # enum
    item: FieldType | None = None  # list
    fields: tuple[Field, ...] = ()  # struct
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    min_items: int | None = None
    max_items: int | None = None
    format: str | None = None  # extra string format passed to the model (email, uuid...)
    pattern: str | None = None  # passed to the model, not re-checked


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    description: str | None = None


@dataclass(frozen=True)
class OutputSchema:
    """What the model must answer, and the typed columns the answer becomes."""

    name: str  # the json_schema name (letters, digits, _ and -)
    fields: tuple[Field, ...]
    description: str | None = None

    # -- the request side ----------------------------------------------------------------
    def json_schema(self) -> dict[str, Any]:
        """The strict JSON Schema of the answer (property order = column order)."""
        out = _object_schema(self.fields)
        if self.description:
            out = {"type": "object", "description": self.description, **{k: v for k, v in out.items() if k != "type"}}
        return out

    def response_format(self, endpoint: Endpoint) -> tuple[str, dict[str, Any]]:
        """(body key, value) that asks `endpoint` for this schema: chat takes the format itself under
        `response_format`; responses nests it as `text.format` (flattened, without `json_schema`)."""
        if endpoint.schema_key == "response_format":
            return "response_format", {
                "type": "json_schema",
                "json_schema": {"name": self.name, "strict": True, "schema": self.json_schema()},
            }
        if endpoint.schema_key == "text":
            return "text", {
                "format": {"type": "json_schema", "name": self.name, "strict": True, "schema": self.json_schema()}
            }
        raise JobError(f"endpoint {endpoint.path} has fixed output columns; remove output_schema")

    # -- the table side ------------------------------------------------------------------
    def columns(self) -> list[tuple[str, str]]:
        """(column name, DuckDB type) of each typed output column, in order."""
        return [(f.name, duckdb_type(f.type)) for f in self.fields]

    def read_spec(self) -> str:
        """The JSON structure `from_json_strict(content, spec)` reads the whole answer with."""
        return json.dumps({f.name: read_spec_of(f.type) for f in self.fields}, separators=(",", ":"))


# -- representation → DuckDB ---------------------------------------------------------------
def duckdb_type(t: FieldType) -> str:
    """The output column type of a field."""
    if t.kind == "enum":
        return "ENUM(" + ", ".join(sql_literal(v) for v in t.values) + ")"
    if t.kind == "list":
        assert t.item is not None
        return duckdb_type(t.item) + "[]"
    if t.kind == "struct":
        return "STRUCT(" + ", ".join(f"{quote_ident(f.name)} {duckdb_type(f.type)}" for f in t.fields) + ")"
    return t.sql


def read_spec_of(t: FieldType) -> Any:
    """How DuckDB reads a field before checks: integers as DOUBLE (so 3.5 is caught, not rounded),
    enums as VARCHAR (so an unknown value gets a clear message); the final CAST gives the column type."""
    if t.kind == "list":
        assert t.item is not None
        return [read_spec_of(t.item)]
    if t.kind == "struct":
        return {f.name: read_spec_of(f.type) for f in t.fields}
    if t.kind == "integer":
        return "DOUBLE"
    if t.kind == "enum":
        return "VARCHAR"
    return "TIMESTAMPTZ" if t.sql == "TIMESTAMP WITH TIME ZONE" else t.sql


# -- representation → strict JSON Schema ---------------------------------------------------
def _object_schema(fields: tuple[Field, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {f.name: _field_schema(f.type, f.description) for f in fields},
        "required": [f.name for f in fields],
        "additionalProperties": False,
    }


def _field_schema(t: FieldType, description: str | None) -> dict[str, Any]:
    base = _type_schema(t)
    if t.nullable:
        if t.kind in ("enum", "list", "struct"):
            base = {"anyOf": [base, {"type": "null"}]}
        else:
            base = {**base, "type": [base["type"], "null"]}
    if description:
        base = {"description": description, **base}
    return base


def _type_schema(t: FieldType) -> dict[str, Any]:
    if t.kind == "struct":
        return _object_schema(t.fields)
    if t.kind == "list":
        assert t.item is not None
        out: dict[str, Any] = {"type": "array", "items": _field_schema(t.item, None)}
        if t.min_items is not None:
            out["minItems"] = t.min_items
        if t.max_items is not None:
            out["maxItems"] = t.max_items
        return out
    if t.kind == "enum":
        return {"type": "string", "enum": list(t.values)}
    if t.kind in ("integer", "number"):
        out = {"type": t.kind}
        for key, value in (("minimum", t.minimum), ("maximum", t.maximum),
                           ("exclusiveMinimum", t.exclusive_minimum), ("exclusiveMaximum", t.exclusive_maximum)):
            if value is not None:
                out[key] = _number(value)
        return out
    if t.kind == "boolean":
        return {"type": "boolean"}
    if t.kind == "date":
        return {"type": "string", "format": "date"}
    if t.kind == "timestamp":
        return {"type": "string", "format": "date-time"}
    out = {"type": "string"}
    if t.format:
        out["format"] = t.format
    if t.pattern:
        out["pattern"] = t.pattern
    return out


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


# -- loading -------------------------------------------------------------------------------
def load(spec: Any, *, default_name: str = "output", base_dir: str | Path | None = None) -> OutputSchema | None:
    """Read a job's `output_schema` option in any of its forms; None when the job has none.

    Raises JobError naming the field and the problem for anything that cannot become typed columns."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    if isinstance(spec, OutputSchema):
        return spec
    if isinstance(spec, dict):
        return from_json_schema(spec, default_name=default_name)
    if isinstance(spec, type):
        return from_pydantic(spec)
    if not isinstance(spec, str):
        raise JobError(f"output_schema must be a column list, a JSON Schema or 'module:Class', got {spec!r}")
    text = spec.strip()
    if text.startswith("{"):
        try:
            return from_json_schema(json.loads(text), default_name=default_name)
        except json.JSONDecodeError as exc:
            raise JobError(f"output_schema looks like inline JSON but does not parse: {exc}") from None
    if text.lower().endswith(".json"):
        return from_json_file(_resolve_path(text, base_dir), default_name=default_name)
    if _PYDANTIC_REF_RE.match(text):
        return from_pydantic(import_model(text, base_dir))
    return from_sql(text)


def anchor(spec: Any, base_dir: str | Path) -> Any:
    """Make a relative schema reference of a job file independent of the working directory:
    `x.json` → its absolute path, `module:Class` with `module.py` beside the job → `/abs/module.py:Class`."""
    if not isinstance(spec, str):
        return spec
    text = spec.strip()
    base = Path(base_dir)
    if text.lower().endswith(".json") and not Path(text).is_absolute() and (base / text).exists():
        return str((base / text).resolve())
    match = _PYDANTIC_REF_RE.match(text)
    if match and not Path(match["module"]).is_absolute():
        module = match["module"]
        candidate = base / module if module.endswith(".py") else base / (module.replace(".", "/") + ".py")
        if candidate.exists():
            return f"{candidate.resolve()}:{match['attr']}"
    return spec


def _resolve_path(text: str, base_dir: str | Path | None) -> Path:
    path = Path(text)
    if not path.is_absolute() and base_dir is not None and (Path(base_dir) / path).exists():
        path = Path(base_dir) / path
    return path


def from_json_file(path: Path, *, default_name: str = "output") -> OutputSchema:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise JobError(f"output_schema file {path} cannot be read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise JobError(f"output_schema file {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise JobError(f"output_schema file {path} must hold a JSON Schema object")
    return from_json_schema(doc, default_name=default_name)


def import_model(ref: str, base_dir: str | Path | None = None) -> type:
    """Import `module:Class` (the job file's directory and the working directory are on the path)
    or `path/to/file.py:Class`."""
    match = _PYDANTIC_REF_RE.match(ref.strip())
    if not match:
        raise JobError(f"output_schema {ref!r} is not 'module:Class' or 'file.py:Class'")
    module_name, attr = match["module"], match["attr"]
    try:
        if module_name.endswith(".py"):
            path = _resolve_path(module_name, base_dir).resolve()
            if not path.exists():
                raise JobError(f"output_schema {ref!r}: the file {path} does not exist")
            _prepend_path(path.parent)
            name = f"_warehouse_batch_models_{abs(hash(str(path)))}"
            module = sys.modules.get(name)
            if module is None:
                loader_spec = importlib.util.spec_from_file_location(name, path)
                assert loader_spec is not None and loader_spec.loader is not None
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[name] = module
                try:
                    loader_spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(name, None)
                    raise
        else:
            for directory in (base_dir, Path.cwd()):
                if directory is not None:
                    _prepend_path(Path(directory).resolve())
            module = importlib.import_module(module_name)
    except JobError:
        raise
    except ImportError as exc:
        raise JobError(
            f"output_schema {ref!r}: cannot import {module_name} ({exc}). Put the module beside the job file, "
            "in the working directory or on PYTHONPATH"
        ) from None
    except Exception as exc:  # the user's module failed while importing
        raise JobError(f"output_schema {ref!r}: importing {module_name} failed: {type(exc).__name__}: {exc}") from None
    model = getattr(module, attr, None)
    if model is None:
        raise JobError(f"output_schema {ref!r}: {module_name} has no attribute {attr}")
    return model


def _prepend_path(directory: Path) -> None:
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))


def from_pydantic(model: type) -> OutputSchema:
    schema_fn = getattr(model, "model_json_schema", None)
    if schema_fn is None:
        raise JobError(f"output_schema {model!r} is not a Pydantic model (it has no model_json_schema())")
    try:
        doc = schema_fn()
    except Exception as exc:
        raise JobError(f"output_schema {model.__name__}: Pydantic cannot build its JSON Schema: {exc}") from None
    return from_json_schema(doc, default_name=model.__name__)


# -- JSON Schema → representation ------------------------------------------------------------
def from_json_schema(doc: dict[str, Any], *, default_name: str = "output") -> OutputSchema:
    """Any JSON Schema whose top level is an object with properties (Pydantic's output included)."""
    title = doc.get("title")
    name = title if isinstance(title, str) and _SCHEMA_NAME_RE.match(title) else default_name
    root = _deref(doc, doc, "output_schema", ())
    if root.get("type") != "object" and "properties" not in root:
        raise JobError("output_schema: the top level of a JSON Schema must be an object with properties")
    t = _convert(root, doc, "output_schema", ())
    if t.kind != "struct" or t.nullable:
        raise JobError("output_schema: the top level of a JSON Schema must be a (non-null) object with properties")
    description = doc.get("description") if isinstance(doc.get("description"), str) else None
    _check_names(t.fields, "output_schema", top=True)
    return OutputSchema(name=name, fields=t.fields, description=description)


def _deref(node: Any, root: dict[str, Any], path: str, seen: tuple[str, ...]) -> dict[str, Any]:
    return _follow(node, root, path, seen)[0]


def _follow(node: Any, root: dict[str, Any], path: str, seen: tuple[str, ...]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The schema a node stands for (its $ref and single-part allOf resolved), and the refs followed."""
    if not isinstance(node, dict):
        raise JobError(f"{path}: expected a JSON Schema object, got {node!r}")
    while "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise JobError(f"{path}: only local references (#/$defs/...) are supported, got {ref!r}")
        if ref in seen:
            raise JobError(f"{path}: the schema is recursive ({ref}); recursive types cannot become table columns")
        seen = (*seen, ref)
        target: Any = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            raise JobError(f"{path}: the reference {ref} points nowhere")
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    if isinstance(node.get("allOf"), list) and len(node["allOf"]) == 1:
        inner, seen = _follow(node["allOf"][0], root, path, seen)
        node = {**inner, **{k: v for k, v in node.items() if k != "allOf"}}
    return node, seen


def _convert(node: Any, root: dict[str, Any], path: str, seen: tuple[str, ...]) -> FieldType:
    node, seen = _follow(node, root, path, seen)
    for key in ("anyOf", "oneOf"):
        if key in node:
            options = node[key]
            if not isinstance(options, list):
                raise JobError(f"{path}: {key} must be a list")
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            if len(non_null) != 1:
                raise JobError(
                    f"{path}: a choice between {len(non_null)} types ({key}) cannot become one column; "
                    "use one type (optionally nullable)"
                )
            inner = _convert(non_null[0], root, path, seen)
            return _replace(inner, nullable=inner.nullable or len(non_null) < len(options))
    if "allOf" in node:
        raise JobError(f"{path}: allOf with several parts is not supported; merge them into one object")
    typ = node.get("type")
    nullable = False
    if isinstance(typ, list):
        non_null = [t for t in typ if t != "null"]
        nullable = len(non_null) < len(typ)
        if len(non_null) != 1:
            raise JobError(f"{path}: a value of several types {typ} cannot become one column; use one type")
        typ = non_null[0]
    if "const" in node:
        node = {**node, "enum": [node["const"]]}
    if "enum" in node:
        values = node["enum"]
        if not isinstance(values, list) or not values:
            raise JobError(f"{path}: enum must be a non-empty list")
        if None in values:
            nullable = True
            values = [v for v in values if v is not None]
        if not all(isinstance(v, str) for v in values):
            raise JobError(f"{path}: enum values must be text, got {values!r}")
        if len(set(values)) != len(values):
            raise JobError(f"{path}: enum values repeat: {values!r}")
        return FieldType("enum", nullable=nullable, values=tuple(values))
    if typ is None:
        typ = "object" if "properties" in node else "array" if "items" in node else None
    if typ == "object":
        props = node.get("properties")
        if not isinstance(props, dict) or not props:
            raise JobError(
                f"{path}: an object without properties (a free-form map) cannot become typed columns; list its properties"
            )
        required = set(node.get("required") or [])
        fields = []
        for name, sub in props.items():
            sub_path = f"{path}.{name}" if path != "output_schema" else f"field {name!r}"
            t = _convert(sub, root, sub_path, seen)
            if name not in required:  # strict mode requires every property: an optional one may be null instead
                t = _replace(t, nullable=True)
            desc = sub.get("description") if isinstance(sub, dict) and isinstance(sub.get("description"), str) else None
            if desc is None and isinstance(sub, dict) and "$ref" in sub:
                target = _deref(sub, root, sub_path, seen)
                desc = target.get("description") if isinstance(target.get("description"), str) else None
            fields.append(Field(name, t, desc))
        _check_names(tuple(fields), path)
        return FieldType("struct", nullable=nullable, fields=tuple(fields))
    if typ == "array":
        if "items" not in node or not isinstance(node["items"], dict):
            raise JobError(f"{path}: an array needs 'items' with one schema")
        item = _convert(node["items"], root, f"{path}[]", seen)
        return FieldType("list", nullable=nullable, item=item,
                         min_items=_int_or_none(node, "minItems", path), max_items=_int_or_none(node, "maxItems", path))
    if typ in ("integer", "number"):
        bounds = {k: _num_or_none(node, k, path) for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")}
        return FieldType(typ, sql="BIGINT" if typ == "integer" else "DOUBLE", nullable=nullable,
                         minimum=bounds["minimum"], maximum=bounds["maximum"],
                         exclusive_minimum=bounds["exclusiveMinimum"], exclusive_maximum=bounds["exclusiveMaximum"])
    if typ == "boolean":
        return FieldType("boolean", sql="BOOLEAN", nullable=nullable)
    if typ == "string":
        fmt = node.get("format")
        if fmt in _JSON_FORMATS:
            kind = _JSON_FORMATS[fmt]
            return FieldType(kind, sql="DATE" if kind == "date" else "TIMESTAMP", nullable=nullable)
        pattern = node.get("pattern") if isinstance(node.get("pattern"), str) else None
        return FieldType("string", sql="VARCHAR", nullable=nullable,
                         format=fmt if fmt in _STRING_FORMATS else None, pattern=pattern)
    if typ == "null":
        raise JobError(f"{path}: a field that can only be null cannot become a column")
    raise JobError(f"{path}: JSON Schema type {typ!r} is not supported (use object, array, string, number, integer, boolean)")


def _replace(t: FieldType, **changes: Any) -> FieldType:
    from dataclasses import replace

    return replace(t, **changes)


def _int_or_none(node: dict[str, Any], key: str, path: str) -> int | None:
    value = node.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise JobError(f"{path}: {key} must be a whole number ≥ 0, got {value!r}")
    return value


def _num_or_none(node: dict[str, Any], key: str, path: str) -> float | None:
    value = node.get(key)
    if value is None or isinstance(value, bool):
        return None  # draft-4 boolean exclusiveMinimum: ignored
    if not isinstance(value, (int, float)):
        raise JobError(f"{path}: {key} must be a number, got {value!r}")
    return value


def _check_names(fields: tuple[Field, ...], path: str, top: bool = False) -> None:
    seen: dict[str, str] = {}
    for f in fields:
        if not f.name or not f.name.strip():
            raise JobError(f"{path}: a field has an empty name")
        if f.name.lower() in seen:
            raise JobError(
                f"{path}: fields {seen[f.name.lower()]!r} and {f.name!r} differ only in case; DuckDB columns "
                "are case-insensitive, rename one"
            )
        seen[f.name.lower()] = f.name
        if top and (f.name.lower() in RESERVED_NAMES or f.name.lower().startswith(INTERNAL_PREFIX)):
            raise JobError(
                f"output_schema field {f.name!r} clashes with the output table's own column of that name; rename it "
                f"(reserved: {', '.join(RESERVED_NAMES)})"
            )


# -- SQL column list → representation --------------------------------------------------------
def from_sql(text: str) -> OutputSchema:
    """`name TYPE [NULL|NOT NULL] [COMMENT '...'] [CHECK (...)], ...` in DuckDB's dialect."""
    try:
        tree = sqlglot.parse_one(f"CREATE TABLE __wb_schema ({text})", read="duckdb")
    except ParseError as exc:
        err = exc.errors[0] if exc.errors else {}
        raise JobError(
            f"output_schema is not a valid column list ({err.get('description', exc)}); write it like "
            "'sentiment VARCHAR, confidence DOUBLE, tags VARCHAR[]'"
        ) from None
    schema_node = tree.this if isinstance(tree, exp.Create) else None
    defs = schema_node.expressions if isinstance(schema_node, exp.Schema) else []
    for d in defs:
        if isinstance(d, (exp.Identifier, exp.Column)):
            raise JobError(f"output_schema column {d.name!r} has no type; write e.g. '{d.name} VARCHAR'")
    if not defs or not all(isinstance(d, exp.ColumnDef) for d in defs):
        raise JobError(
            f"output_schema {text!r} is not a column list; write it like 'sentiment VARCHAR, confidence DOUBLE'"
        )
    fields = tuple(_column(d) for d in defs)
    _check_names(fields, "output_schema", top=True)
    return OutputSchema(name="output", fields=fields)


def _column(d: exp.ColumnDef, nested: bool = False) -> Field:
    name = d.name
    kind = d.args.get("kind")
    if kind is None:
        raise JobError(f"output_schema column {name!r} has no type; write e.g. '{name} VARCHAR'")
    t = _sql_type(kind, name)
    description = None
    checks: list[exp.Expression] = []
    for constraint in d.args.get("constraints") or []:
        c = constraint.args.get("kind")
        if isinstance(c, exp.NotNullColumnConstraint):
            t = _replace(t, nullable=bool(c.args.get("allow_null")))
        elif isinstance(c, exp.CommentColumnConstraint):
            description = c.this.name if isinstance(c.this, exp.Literal) else c.this.sql()
        elif isinstance(c, exp.CheckColumnConstraint):
            checks.append(c.this)
        else:
            raise JobError(
                f"output_schema column {name!r}: {c.sql(dialect='duckdb') if c else constraint.sql()} is not supported; "
                "use NULL / NOT NULL, COMMENT '...' and CHECK (...)"
            )
    for check in checks:
        t = _apply_check(t, check, name)
    return Field(name, t, description)


def _sql_type(kind: exp.DataType, name: str) -> FieldType:
    dtype = kind.this
    if dtype in (exp.DataType.Type.ARRAY, exp.DataType.Type.LIST):
        items = kind.expressions
        if len(items) != 1 or not isinstance(items[0], exp.DataType):
            raise JobError(f"output_schema column {name!r}: a list needs one item type, e.g. VARCHAR[]")
        if kind.args.get("values"):
            raise JobError(f"output_schema column {name!r}: fixed-size arrays are not supported; use T[]")
        return FieldType("list", item=_sql_type(items[0], name))
    if dtype == exp.DataType.Type.STRUCT:
        fields = []
        for sub in kind.expressions:
            if not isinstance(sub, exp.ColumnDef):
                raise JobError(f"output_schema column {name!r}: write a struct as STRUCT(field TYPE, ...)")
            fields.append(_column(sub, nested=True))
        if not fields:
            raise JobError(f"output_schema column {name!r}: a STRUCT needs at least one field")
        _check_names(tuple(fields), f"output_schema column {name!r}")
        return FieldType("struct", fields=tuple(fields))
    if dtype == exp.DataType.Type.ENUM:
        values = []
        for v in kind.expressions:
            if not (isinstance(v, exp.Literal) and v.is_string):
                raise JobError(f"output_schema column {name!r}: ENUM values must be quoted text, like ENUM('a', 'b')")
            values.append(v.name)
        if not values or len(set(values)) != len(values):
            raise JobError(f"output_schema column {name!r}: ENUM needs distinct values, got {values!r}")
        return FieldType("enum", values=tuple(values))
    if dtype not in _SQL_TYPES:
        raise JobError(
            f"output_schema column {name!r}: type {kind.sql(dialect='duckdb')} is not supported; use {_SUPPORTED_SQL}"
        )
    kind_name, duck = _SQL_TYPES[dtype]
    if duck == "DECIMAL":
        params = [p.name for p in kind.expressions]
        duck = f"DECIMAL({', '.join(params)})" if params else "DECIMAL(18, 3)"
    return FieldType(kind_name, sql=duck)


def _apply_check(t: FieldType, check: exp.Expression, name: str) -> FieldType:
    """Turn `CHECK (...)` into bounds, a list length or an enum; anything else is refused."""
    def bad() -> JobError:
        return JobError(
            f"output_schema column {name!r}: CHECK ({check.sql(dialect='duckdb')}) is not supported; use "
            f"CHECK ({name} BETWEEN lo AND hi), CHECK ({name} >= lo) (or <=, >, <), CHECK (len({name}) <= n) (or BETWEEN) "
            f"or CHECK ({name} IN ('a', 'b'))"
        )

    def is_col(node: exp.Expression) -> bool:
        return isinstance(node, exp.Column) and node.name.lower() == name.lower()

    def is_len(node: exp.Expression) -> bool:
        if isinstance(node, (exp.ArraySize, exp.Length)):
            return is_col(node.this)
        if isinstance(node, exp.Anonymous) and node.name.lower() in ("len", "length", "array_length"):
            return len(node.expressions) == 1 and is_col(node.expressions[0])
        return False

    def number(node: exp.Expression) -> float:
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and node.this.is_number:
            return -float(node.this.name)
        if isinstance(node, exp.Literal) and node.is_number:
            return float(node.name)
        raise bad()

    if isinstance(check, exp.And):
        return _apply_check(_apply_check(t, check.left, name), check.right, name)
    if isinstance(check, exp.Paren):
        return _apply_check(t, check.this, name)
    if isinstance(check, exp.In) and is_col(check.this):
        values = check.expressions
        if t.kind != "string" or not values or not all(isinstance(v, exp.Literal) and v.is_string for v in values):
            raise bad()
        return _replace(t, kind="enum", sql="", values=tuple(v.name for v in values))
    if isinstance(check, exp.Between) and is_col(check.this):
        if t.kind not in ("integer", "number"):
            raise bad()
        return _replace(t, minimum=number(check.args["low"]), maximum=number(check.args["high"]))
    if isinstance(check, exp.Between) and is_len(check.this) and t.kind == "list":
        return _replace(t, min_items=max(int(number(check.args["low"])), 0), max_items=int(number(check.args["high"])))
    comparisons = {exp.GTE: "minimum", exp.GT: "exclusive_minimum", exp.LTE: "maximum", exp.LT: "exclusive_maximum"}
    flipped = {"minimum": "maximum", "maximum": "minimum",
               "exclusive_minimum": "exclusive_maximum", "exclusive_maximum": "exclusive_minimum"}
    for cls, attr in comparisons.items():
        if isinstance(check, cls):
            left, right = check.left, check.right
            if is_col(right) or is_len(right):  # 0 <= x  →  x >= 0
                left, right, attr = right, left, flipped[attr]
            if is_col(left) and t.kind in ("integer", "number"):
                return _replace(t, **{attr: number(right)})
            if is_len(left) and t.kind == "list":
                n = number(right)
                limits = {"minimum": ("min_items", n), "exclusive_minimum": ("min_items", n + 1),
                          "maximum": ("max_items", n), "exclusive_maximum": ("max_items", n - 1)}
                key, value = limits[attr]
                return _replace(t, **{key: max(int(value), 0)})
            raise bad()
    raise bad()


__all__ = ["Field", "FieldType", "OutputSchema", "anchor", "duckdb_type", "from_json_schema", "from_pydantic",
           "from_sql", "import_model", "load"]
