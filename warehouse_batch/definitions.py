"""Jobs defined as rows of `warehouse_batch.job_definitions`: versions, validation, who may spend.

An analyst INSERTs or UPDATEs a row; the worker (`warehouse_batch.worker`) calls `sync`, which
records a new version for every new or changed row (query, options or definer) in
`job_definition_versions`, and `to_job` turns a row into a `Job` with the same validation a job
file gets. Whatever is wrong with a row is written back to it (`record`), never raised at the
analyst, and nothing is sent for it.

Who defined a row and with whose rights its query runs depend on the warehouse (`Definers`):
DuckDB has no users, so `defined_by` is what the row says (else the worker's default) and the
worker's allow-list decides; PostgreSQL records `current_user` (a trigger, migration 0015) and the
worker reads the query under `SET ROLE definer` (same interface).

On PostgreSQL analysts write job_definitions while the worker runs, so this module reads and writes
it (and job_definition_versions) in Postgres itself, never through the engine replica, and writes
only the worker's own columns: a concurrent edit is never undone (`postgres.DIRECT`).
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlglot
from sqlglot import exp

from warehouse_batch.errors import ConfigError, JobError
from warehouse_batch.estimates import Estimate
from warehouse_batch.jobs import Job
from warehouse_batch.names import SCHEMA
from warehouse_batch.sqlfiles import read_sql
from warehouse_batch.warehouses.base import Warehouse

TABLE = f"{SCHEMA}.job_definitions"
VERSIONS = f"{SCHEMA}.job_definition_versions"

#: Values of `job_definitions.state`.
NEW, RUNNING, DONE, REFUSED, FAILED, PAUSED, CANCELLED = (
    "new", "running", "done", "refused", "failed", "paused", "cancelled")


@dataclass(frozen=True)
class Definition:
    """One row of job_definitions, as the worker read it."""

    name: str
    query: str
    options: dict[str, Any]
    enabled: bool
    cancel_requested: bool
    run_requested: bool
    defined_by: str
    version: int | None
    state: str | None
    ran_version: int | None
    options_error: str | None = None  # the options column is not a JSON object

    @property
    def needs_run(self) -> bool:
        """Enabled, not cancelled, and its current version not yet run (or refused), or asked to run again."""
        return self.enabled and not self.cancel_requested and self.version is not None \
            and (self.ran_version != self.version or self.run_requested)

    @property
    def fingerprint(self) -> str:
        text = json.dumps([self.query, self.options, self.defined_by], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


# -- who may spend ------------------------------------------------------------------------------
class Definers(Protocol):
    """Per warehouse: who defined a row, whether they may spend, and the rights their query runs with."""

    def definer(self, stated: str | None) -> str:
        """The definer of a row whose `defined_by` column holds `stated` (None: not given)."""

    def check(self, definition: Definition, job: Job) -> None:
        """Raise JobError (the message goes into the row) when the definer may not run this job."""

    def run_as(self, definer: str) -> contextlib.AbstractContextManager[None]:
        """Run the block with the definer's rights (PostgreSQL: SET ROLE), where the warehouse can."""


@dataclass
class Policy:
    """The worker's spending rules: an allow-list of definers and per-definer daily budgets (USD, UTC day)."""

    allowed_definers: frozenset[str] | None = None  # None: anyone who can write the table
    definer_daily_budget_usd: float | None = None  # every definer's, unless named in definer_budgets
    definer_budgets: dict[str, float] = field(default_factory=dict)

    def budget_for(self, definer: str) -> float | None:
        return self.definer_budgets.get(definer, self.definer_daily_budget_usd)


#: Table functions that read files or URLs from the worker's machine (DuckDB): a definition's query
#: may only read tables of the warehouse, never the worker host's disk or network.
_EXTERNAL_READERS = ("read_", "glob", "parquet_", "sniff_csv", "iceberg_", "delta_scan", "sqlite_", "postgres_",
                     "mysql_", "query_table", "query", "duckdb_secrets", "which_secret")


class DuckDBDefiners:
    """DuckDB has no users: the row's `defined_by` (or the worker's default) names the definer, the
    allow-list decides who may spend, and queries may not read files or URLs on the worker's host."""

    def __init__(self, policy: Policy, default_definer: str | None = None):
        self.policy = policy
        self.default = default_definer or _os_user()

    def definer(self, stated: str | None) -> str:
        return stated.strip() if stated and stated.strip() else self.default

    def check(self, definition: Definition, job: Job) -> None:
        _check_allowed(self.policy, definition.defined_by, "or set defined_by to an allowed definer")
        check_reads_only_tables(job)

    def run_as(self, definer: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


class PostgresDefiners:
    """PostgreSQL has users: the definer is the role that last wrote the row's name, query or options
    (`current_user`, set by a trigger that ignores what the row says), the allow-list and budgets
    apply to it, and its query is read under `SET LOCAL ROLE definer`, so Postgres itself refuses a
    table the definer may not read. The worker's login role must be a member of each definer role."""

    def __init__(self, policy: Policy, warehouse: Any):
        self.policy = policy
        self.warehouse = warehouse  # a PostgresWarehouse

    def definer(self, stated: str | None) -> str:
        return stated or ""  # the trigger's current_user; empty only for rows older than migration 0015

    def check(self, definition: Definition, job: Job) -> None:
        if not definition.defined_by:
            raise JobError(f"definition {definition.name} has no recorded definer (it was written before this "
                           "database recorded them); delete the row and define it again; nothing was sent")
        _check_allowed(self.policy, definition.defined_by, "or define it as an allowed role")
        check_keeps_its_role(job)
        found = self.warehouse.direct_rows(
            "SELECT pg_has_role(current_user, oid, 'MEMBER') AS member FROM pg_roles WHERE rolname = ?",
            [definition.defined_by])
        if not found:
            raise JobError(f"definer {definition.defined_by!r} is no longer a role of this database; "
                           "nothing was sent. Define the job again as an existing role")
        if not found[0]["member"]:
            raise JobError(
                f"the worker cannot read the query as its definer {definition.defined_by!r}: the worker's role is not "
                f"a member of it; nothing was sent. Ask an administrator to run GRANT "
                f"\"{definition.defined_by}\" TO <the worker's role> (docs/worker.md, Permission model)")

    def run_as(self, definer: str) -> contextlib.AbstractContextManager[None]:
        return self.warehouse.as_role(definer)


#: PostgreSQL functions that change the current role (SET ROLE is checked against the worker's
#: login role, not the definer's) or run SQL given as text, which could then read as another role.
_ROLE_ESCAPES = re.compile(
    r"\b\"?(set_config|(?:query|cursor|table|schema|database)_to_xml(?:schema|_and_xmlschema)?|dblink\w*)\"?\s*\(",
    re.IGNORECASE)


def check_keeps_its_role(job: Job) -> None:
    """Refuse a PostgreSQL query that calls a function able to leave its definer's role: inside
    `SET ROLE definer`, `set_config('role', ...)` may switch to any role the worker's login role may,
    and the *_to_xml functions and dblink run SQL text with whatever role is then current."""
    found = _ROLE_ESCAPES.search(job.query)
    if found:
        raise JobError(f"job {job.name}: the query calls {found.group(1)}(), which can change the role it runs as or "
                       "run SQL given as text; a job defined in SQL may not (nothing was sent). Select from the "
                       "tables directly")


def definers_for(warehouse: Warehouse, policy: Policy, default_definer: str | None = None) -> Definers:
    """The definer rules of the warehouse's kind."""
    if warehouse.dialect == "postgres":
        if default_definer:
            raise ConfigError("--default-definer is for DuckDB, which has no users; on PostgreSQL a definition's "
                              "definer is the role that wrote it (current_user)")
        return PostgresDefiners(policy, warehouse)
    return DuckDBDefiners(policy, default_definer)


def _check_allowed(policy: Policy, definer: str, hint: str) -> None:
    allowed = policy.allowed_definers
    if allowed is not None and definer not in allowed:
        raise JobError(
            f"definer {definer!r} is not on this worker's allow-list ({', '.join(sorted(allowed)) or 'empty'}); "
            f"nothing was sent. Ask whoever runs the worker to add --allow-definer NAME, {hint}")


def check_reads_only_tables(job: Job) -> None:
    """Refuse a query that reads files or URLs (`read_csv(...)`, `FROM 'x.parquet'`) or attaches
    databases: the worker runs it on its own host, with rights the definer may not have."""
    try:
        tree = sqlglot.parse_one(job.query, read="duckdb")
    except sqlglot.errors.ParseError:
        return  # compile.check_query reports it with its position
    for table in tree.find_all(exp.Table):
        if isinstance(table.this, exp.Literal) or (isinstance(table.this, exp.Identifier) and table.this.quoted
                                                    and any(c in table.this.name for c in "/.:")):
            raise JobError(f"job {job.name}: the query reads the file {table.this.name!r}; a job defined in SQL may "
                           "only read tables of the warehouse (load the file into a table first)")
    for func in tree.find_all(exp.Func):
        name = (func.sql_name() if not isinstance(func, exp.Anonymous) else func.name).lower()
        if isinstance(func, (exp.ReadCSV, exp.ReadParquet)) or name.startswith(_EXTERNAL_READERS):
            raise JobError(f"job {job.name}: the query calls {name}(), which reads files or URLs on the worker's "
                           "host; a job defined in SQL may only read tables of the warehouse")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


# -- reading and versioning ---------------------------------------------------------------------
def _direct(warehouse: Warehouse) -> bool:
    """Whether job_definitions lives in the warehouse's server, written by analysts too (Postgres)."""
    return hasattr(warehouse, "direct_rows")


def _rows(warehouse: Warehouse, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """Run a statement on job_definitions / job_definition_versions where they live."""
    if _direct(warehouse):
        return warehouse.direct_rows(sql, params or [])
    return warehouse.rows(sql, params)


@contextlib.contextmanager
def _writing(warehouse: Warehouse, *tables: str, atomic: bool = True) -> Any:
    """One transaction where the tables live (on DuckDB only if atomic: a lone statement needs
    none); on Postgres their engine mirror is refreshed after it."""
    if not _direct(warehouse):
        with warehouse.transaction() if atomic else contextlib.nullcontext():
            yield
        return
    with warehouse.direct_transaction():
        yield
    warehouse.mirror(*tables)


def read(warehouse: Warehouse, definers: Definers) -> list[Definition]:
    """Every row of job_definitions, with its definer resolved."""
    out = []
    for row in _rows(warehouse, f"""SELECT name, query, CAST(options AS VARCHAR) AS options, enabled, cancel_requested,
                                         run_requested, defined_by, version, state, ran_version
                                  FROM {TABLE} ORDER BY name"""):
        options, error = _options(row["options"])
        out.append(Definition(
            name=row["name"], query=row["query"] or "", options=options, enabled=bool(row["enabled"]),
            cancel_requested=bool(row["cancel_requested"]), run_requested=bool(row["run_requested"]), defined_by=definers.definer(row["defined_by"]),
            version=row["version"], state=row["state"], ran_version=row["ran_version"], options_error=error))
    return out


def _options(text: str | None) -> tuple[dict[str, Any], str | None]:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        return {}, f"options is not valid JSON: {exc}"
    if not isinstance(value, dict):
        return {}, f"options must be a JSON object like {{\"model\": \"gpt-4o-mini\"}}, got {text}"
    return value, None


@dataclass(frozen=True)
class Changes:
    """What `sync` found: definitions now in force, and names whose row was deleted."""

    definitions: list[Definition]
    deleted: list[str]


def sync(warehouse: Warehouse, definers: Definers) -> Changes:
    """Record a new version of every new or changed row (and the definer of rows without one);
    find deleted rows. One transaction: an analyst's edit is seen whole or not at all."""
    with _writing(warehouse, "job_definitions", "job_definition_versions"):
        current = read(warehouse, definers)
        latest = {r["name"]: r for r in _rows(
            warehouse, f"""SELECT v.name, v.version, v.fingerprint, v.deleted_at FROM {VERSIONS} AS v
                WHERE v.version = (SELECT max(version) FROM {VERSIONS} AS w WHERE w.name = v.name)""")}
        result = []
        for d in current:
            last = latest.get(d.name)
            if last is None or last["fingerprint"] != d.fingerprint or last["deleted_at"] is not None:
                version = 1 if last is None else int(last["version"]) + 1
                _rows(warehouse,
                      f"INSERT INTO {VERSIONS} (name, version, query, options, defined_by, fingerprint) "
                      "VALUES (?, ?, ?, CAST(? AS JSON), ?, ?)",
                      [d.name, version, d.query, json.dumps(d.options), d.defined_by, d.fingerprint])
                # On Postgres the trigger keeps the definer it recorded, whatever this writes.
                _rows(warehouse, f"UPDATE {TABLE} SET version = ?, defined_by = ?, state = ?, last_error = NULL, "
                                 "last_checked_at = now() WHERE name = ?", [version, d.defined_by, NEW, d.name])
                d = Definition(**{**d.__dict__, "version": version, "state": NEW})
            result.append(d)
        names = {d.name for d in current}
        deleted = [n for n, last in latest.items() if n not in names and last["deleted_at"] is None]
        for name in deleted:
            _rows(warehouse, f"UPDATE {VERSIONS} SET deleted_at = now() WHERE name = ? AND version = ?",
                  [name, latest[name]["version"]])
        _rows(warehouse, f"UPDATE {TABLE} SET last_checked_at = now()")
    return Changes(result, deleted)


def record(warehouse: Warehouse, name: str, state: str, error: str | None, *, ran: Definition | None = None,
           started: bool = False) -> None:
    """Write the worker's view of a definition back to its row (readable in SQL): only the worker's
    own columns, so an analyst's concurrent edit of the query or options stays. Recording the
    version `ran` (run or refused) also answers the `run_requested` it was read with; one set
    after that read (on PostgreSQL, while the run went on) stays for the next check."""
    sets, params = ["state = ?", "last_error = ?"], [state, error]
    if ran is not None:
        sets.append("ran_version = ?")
        params.append(ran.version)
        if ran.run_requested:
            sets.append("run_requested = false")
    if started:
        sets.append("last_run_at = now()")
    with _writing(warehouse, "job_definitions", atomic=False):
        _rows(warehouse, f"UPDATE {TABLE} SET {', '.join(sets)} WHERE name = ?", [*params, name])


# -- validation ---------------------------------------------------------------------------------
def to_job(definition: Definition) -> Job:
    """The definition as a Job, validated like a job file. Options that would make the worker read
    its own disk or import code (an output_schema naming a .json file or a Python model) are refused."""
    if definition.options_error:
        raise JobError(definition.options_error)
    options = dict(definition.options)
    for key in ("name", "query"):
        if key in options and options[key] != getattr(definition, key):
            raise JobError(f"options.{key} differs from the row's {key} column; remove it from options")
        options.pop(key, None)
    schema = options.get("output_schema")
    if isinstance(schema, str) and not schema.strip().startswith("{") and (
            schema.strip().lower().endswith(".json") or ":" in schema.split("(")[0]):
        raise JobError(
            "options.output_schema may be a SQL column list ('sentiment VARCHAR, score DOUBLE') or an inline JSON "
            f"Schema object in a job defined in SQL, not a file or Python model ({schema!r})")
    return Job.from_options({**options, "name": definition.name, "query": definition.query})


def definer_spend_today(warehouse: Warehouse, definer: str) -> tuple[float, float]:
    """(USD answered today, UTC; expected USD in flight) of the jobs this definer defined."""
    row = warehouse.one(read_sql("worker/definer_spend_today.sql"), {"definer": definer})
    return (float(row[0] or 0), float(row[1] or 0)) if row else (0.0, 0.0)


def budget_guard(warehouse: Warehouse, policy: Policy, definer: str) -> Any:
    """A Runner guard that refuses a run taking the definer's spend today over their budget."""
    def guard(job: Job, estimate: Estimate) -> None:
        limit = policy.budget_for(definer)
        if limit is None or not estimate.requests:
            return
        figure = estimate.cost(job.cost_guard)
        if figure is None:
            raise JobError(f"job {job.name}: definer {definer!r} has a daily budget but model(s) "
                           f"{', '.join(estimate.unpriced_models)} have no price; nothing was sent")
        actual, in_flight = definer_spend_today(warehouse, definer)
        if actual + in_flight + figure > limit:
            raise JobError(
                f"job {job.name}: definer {definer!r}'s daily budget of ${limit:,.4f} would be exceeded: today (UTC) "
                f"${actual:,.4f} was spent and ${in_flight:,.4f} is in flight for their jobs, and this run's "
                f"{job.cost_guard.replace('_', ' ')} cost is ${figure:,.4f}; nothing was sent. Wait for tomorrow, "
                "narrow the query, or ask for a larger --definer-budget")
    return guard


def run_from_a_job_file(warehouse: Warehouse, name: str) -> bool:
    """Whether a job of that name existed before its first definition (run from a job file or the
    API): a definition may not take over a job someone else runs."""
    return bool(warehouse.scalar(
        f"""SELECT count(*) FROM {SCHEMA}.jobs AS j
            WHERE j.name = ? AND j.created_at < (SELECT min(v.recorded_at) FROM {VERSIONS} AS v WHERE v.name = j.name)""",
        [name]))


__all__ = ["Changes", "Definers", "Definition", "DuckDBDefiners", "Policy", "PostgresDefiners", "budget_guard",
           "check_keeps_its_role", "check_reads_only_tables", "definers_for", "read", "record", "run_from_a_job_file",
           "sync", "to_job"]
