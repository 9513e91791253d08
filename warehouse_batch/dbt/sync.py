"""One dbt model's step of the batch lifecycle: collect what finished, submit what is new, publish.

The `llm_batch` materialization calls this through the plugin's `warehouse_batch_sync` UDF, once per
model and run. Everything here writes through `DuckDBWarehouse(conn)`, a cursor of its own with auto-committed
transactions, never through dbt's cursor: a model that fails later cannot roll spend records back.

State lives in the library's metadata tables keyed by `request_hash`, not in the model's relation,
so `--full-refresh`, a renamed model and two models asking the same question never pay twice.
Nothing in this module imports dbt; it is plain library code over an open DuckDB connection, and
`run_model` (the step itself) over any warehouse: `warehouse-batch dbt build` runs it on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from warehouse_batch import bodies
from warehouse_batch import compile as compiler
from warehouse_batch.cost import DailyBudget
from warehouse_batch.dbt.columns import column_docs, with_yml_schema
from warehouse_batch.dbt.defer import import_answers
from warehouse_batch.errors import ConfigError, JobError
from warehouse_batch.jobs import OPTION_NAMES, TOP_LEVEL_PARAMS, Job
from warehouse_batch.names import SCHEMA, rows_table
from warehouse_batch.providers import ProviderSettings
from warehouse_batch.publish import LIBRARY_TABLE_SUFFIX
from warehouse_batch.quoting import quote_table
from warehouse_batch.runner import Runner
from warehouse_batch.schema import anchor
from warehouse_batch.warehouses import DuckDBWarehouse, Warehouse

#: Job options a model's config may set (the materialization sets name, query and table itself;
#: `cache` is a per-invocation var, never a model config: see NO_CACHE_VAR).
MODEL_OPTIONS = tuple(sorted((set(OPTION_NAMES) - {"name", "query", "table", "cache"}) | set(TOP_LEVEL_PARAMS)))
#: `dbt run --vars '{llm_batch_no_cache: true}'`: this invocation sends fresh requests, ignoring answers.
NO_CACHE_VAR = "llm_batch_no_cache"
#: `dbt run -s model --vars '{llm_batch_preview: 2}'`: log 2 rendered request bodies (system prompt
#: included); nothing is recorded, sent or rebuilt.
PREVIEW_VAR = "llm_batch_preview"
#: Config keys of the materialization itself, beside the job options.
MATERIALIZATION_KEYS = ("wait_timeout", "job_name")
#: The library's copy of a dbt model's output lives here, beside the metadata tables.
OUTPUT_SUFFIX = LIBRARY_TABLE_SUFFIX

#: One sync at a time per process: dbt threads share one DuckDB database, and two syncs writing the
#: metadata tables at once conflict (catalog write-write, duplicate keys). DuckDB runs UDFs on its own
#: worker threads, so the lock must be process-wide, not per thread.
LOCK = threading.Lock()

_TRUE = {"true", "1", "yes", "on", "y", "t"}
_FALSE = {"false", "0", "no", "off", "n", "f", ""}


@dataclass(frozen=True)
class Settings:
    """The plugin's configuration (profiles.yml `plugins: [{module: ..., config: {...}}]`)."""

    base_url: str | None = None  # default $OPENAI_BASE_URL, else OpenAI
    submit: bool = True  # False: collect and publish only; new requests wait in written shards
    poll_interval: float = 5.0  # seconds between polls while a model waits (wait_timeout > 0)
    work_dir: str | None = None  # shard and result files; default <database>.warehouse_batch/
    concurrency: int = 4  # provider calls in flight at once
    http_timeout: float | None = None  # seconds per API call (default 120)
    prices: str | None = None  # a JSON price list overriding the shipped one
    # The project's spending limit per UTC day (answers received today + in flight + this run),
    # beside each model's max_cost_usd; overrides $WAREHOUSE_BATCH_DAILY_BUDGET_USD and the warehouse's.
    daily_budget_usd: float | None = None
    # CI/dev: a warehouse (DuckDB file) whose answers this one may use, opened read-only: requests
    # it has answered are copied into this warehouse's cache instead of being sent.
    defer_db: str | None = None
    # Seconds to wait for the DuckDB file while another process holds it (0: refuse at once, in one line).
    busy_timeout: float = 0.0

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> Settings:
        """Plugin config values arrive as strings (dbt renders them with Jinja): coerce and check them."""
        config = dict(config or {})
        fields = {f: getattr(cls, f) for f in cls.__dataclass_fields__}
        unknown = sorted(set(config) - set(fields))
        if unknown:
            raise ConfigError(
                f"unknown warehouse_batch plugin setting(s): {', '.join(unknown)}. "
                f"Valid settings: {', '.join(sorted(fields))}"
            )
        values: dict[str, Any] = {}
        for key, raw in config.items():
            if raw is None or (isinstance(raw, str) and not raw.strip() and key != "submit"):
                continue  # an unset env_var('X', '') means "use the default"
            if key == "submit":
                values[key] = as_bool(key, raw)
            elif key == "concurrency":
                values[key] = _as_number(key, raw, int, minimum=1)
            elif key in ("poll_interval", "http_timeout"):
                values[key] = _as_number(key, raw, float, minimum=0.01)
            elif key == "busy_timeout":
                values[key] = _as_number(key, raw, float, minimum=0)
            elif key == "daily_budget_usd":
                values[key] = _as_number(key, raw, float, minimum=0)
            else:
                values[key] = str(raw).strip()
        return cls(**values)

    def provider(self) -> ProviderSettings:
        return ProviderSettings(base_url=self.base_url, http_timeout=self.http_timeout)


def as_bool(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"setting {key!r} must be true or false, got {raw!r}")


def _as_number(key: str, raw: Any, kind: type, minimum: float) -> Any:
    try:
        value = kind(float(raw)) if kind is int else kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {key!r} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"setting {key!r} must be at least {minimum}, got {raw!r}")
    return value


# -- the model → a job --------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRequest:
    """What the materialization sends: the model's identity, compiled SQL and config."""

    job: Job
    relation: str
    wait_timeout: float
    empty: bool
    preview: int = 0  # > 0: log this many rendered requests instead of syncing
    columns: dict[str, dict[str, Any]] | None = None  # schema.yml columns: data_type, description


def job_name_for(schema: str, identifier: str) -> str:
    """A job name from the model's relation: `<schema>__<identifier>`, made a valid job name.

    Long names keep a readable prefix and end in a short hash, so two models never share a name."""
    raw = f"{schema}__{identifier}"
    name = re.sub(r"[^A-Za-z0-9_]", "_", raw)
    if not re.match(r"[A-Za-z_]", name):
        name = "m_" + name
    if len(name) > 63 or name != raw:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[:54]}_{digest}"
    return name


def check_config_keys(relation: str, config: dict[str, Any], dbt_keys: frozenset[str]) -> None:
    """Refuse config keys neither dbt nor llm_batch knows (a typo would silently drop a limit) and
    `cache`, which belongs to one invocation, not to a scheduled model."""
    if "cache" in config:
        raise JobError(
            f"model {relation}: 'cache' is not a model config (a scheduled model would pay on every run and "
            f"never show a completed row); for one fresh run use: dbt run -s <model> --vars '{{{NO_CACHE_VAR}: true}}'"
        )
    ours = set(MODEL_OPTIONS) | set(MATERIALIZATION_KEYS)
    unknown = sorted(set(config) - ours - dbt_keys)
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(ours), n=1, cutoff=0.6) or \
            difflib.get_close_matches(key, sorted(dbt_keys), n=1, cutoff=0.75)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise JobError(
        f"model {relation}: unknown llm_batch config key(s) {', '.join(hints)}; nothing was sent. llm_batch takes "
        f"{', '.join(sorted(ours))}, besides dbt's own configs; put keys for other tools under meta"
    )


def parse_request(text: str, dbt_keys: frozenset[str] | None = None) -> ModelRequest:
    """The UDF's JSON argument → a Job (its options from the model's config) and the sync settings.

    `dbt_keys`: the config keys dbt itself defines (from the installed dbt-core); with them, any
    other key that is not an llm_batch option is refused."""
    try:
        request = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise JobError(f"warehouse_batch_sync expects a JSON object, got {str(text)[:80]!r}: {exc}") from None
    config = {k: v for k, v in (request.get("config") or {}).items() if v is not None}
    relation = str(request.get("relation") or request.get("identifier"))
    if "table" in config:
        raise JobError(
            f"model {relation}: config 'table' is not used by llm_batch (the model's own relation is the "
            "output); use alias/schema to name it"
        )
    if dbt_keys is not None:
        check_config_keys(relation, config, dbt_keys)
    name = config.get("job_name") or job_name_for(str(request["schema"]), str(request["identifier"]))
    options = {k: config[k] for k in MODEL_OPTIONS if k in config}
    if as_bool(NO_CACHE_VAR, request.get("no_cache") or False):
        options["cache"] = False
    options.setdefault("keep_stale_answers", True)  # a prompt edit never blanks a dbt model's answered rows
    if isinstance(options.get("output_schema"), str):  # a .json file or Pydantic module beside the model
        project = Path(request.get("project_dir") or Path.cwd())
        model_dir = (project / str(request.get("path") or "")).parent
        options["output_schema"] = anchor(anchor(options["output_schema"], model_dir), project)
    sql = str(request.get("sql") or "").strip().rstrip(";").strip()
    try:
        job = Job.from_options(
            {**options, "name": name, "query": sql, "table": f"{SCHEMA}.{name}{OUTPUT_SUFFIX}"}
        )
    except JobError as exc:
        raise JobError(f"model {relation}: {exc}") from None
    wait = config.get("wait_timeout", 0) or 0
    try:
        wait_timeout = float(wait)
    except (TypeError, ValueError):
        raise JobError(f"model {relation}: config 'wait_timeout' must be a number of seconds, got {wait!r}") from None
    preview = request.get("preview") or 0
    try:
        preview = 1 if preview is True else max(0, int(preview))
    except (TypeError, ValueError):
        raise JobError(f"var {PREVIEW_VAR} must be a number of requests to show, got {preview!r}") from None
    columns = request.get("columns") if isinstance(request.get("columns"), dict) else None
    return ModelRequest(job, relation, max(0.0, wait_timeout), bool(request.get("empty")), preview, columns)


# -- the sync -----------------------------------------------------------------------------------
def sync_model(
    conn: duckdb.DuckDBPyConnection,
    request_text: str,
    settings: Settings,
    *,
    dbt_keys: frozenset[str] | None = None,
    lock: threading.Lock = LOCK,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Collect the model's finished batches, resend its retryable failures, run its job (submitting
    only new requests), publish.

    With `wait_timeout` > 0, keep collecting until its rows are answered or the time is up, saying
    how far along it is through `progress`; the lock is released between polls so other models'
    syncs proceed. Returns a JSON-able summary. Everything goes through the same `Runner` as the
    CLI: `submit: false` holds new shards unsent and never needs an API key."""
    model = parse_request(request_text, dbt_keys)
    with lock, _open(conn, settings) as warehouse:
        job = with_yml_schema(warehouse, model.job, model.columns or {})
        if model.preview:  # --vars '{llm_batch_preview: N}': show the requests, change and send nothing
            return {"job": job.name, "preview": preview_requests(warehouse, job, model.preview)}
        if model.empty:  # dbt run --empty: the relation's shape, no rows, no provider call at all
            return {**publish_shape(warehouse, job), "column_docs": column_docs(job)}
    return run_model(lambda: _open(conn, settings), job, model, settings, lock=lock, sleep=sleep, progress=progress)


def run_model(
    open_warehouse: Callable[[], contextlib.AbstractContextManager[Warehouse]],
    job: Job,
    model: ModelRequest,
    settings: Settings,
    *,
    lock: contextlib.AbstractContextManager[Any],
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """The model's step on whichever warehouse `open_warehouse` gives (each `with` is one hold of
    it; `sleep` runs between polls while it is let go): collect, defer, run, retry, publish, and
    with `wait_timeout` poll until answered or out of time. Returns the JSON-able summary."""
    started = datetime.now(timezone.utc)
    with lock, open_warehouse() as warehouse:
        runner = _runner(warehouse, settings)
        polled = runner.collect_related(job.name)  # frees budget, fills the cache
        if settings.defer_db:
            import_answers(warehouse, job, settings.defer_db)
        report = runner.run(job, publish_table=False)
        runner.collect(jobs=runner.ledger.related_jobs(job.name) - polled - {job.name}, publish_tables=False)
        retry_failures(runner, job)
        runner.publish(job)
        summary = summarize(runner, job, report, started)
    # The clock starts once the requests are sent: wait_timeout is how long the build waits for answers,
    # so a model with one always polls at least once, however long compiling and sending took.
    deadline = time.monotonic() + model.wait_timeout
    while summary["live_batches"] and time.monotonic() < deadline:
        sleep(max(0.0, min(settings.poll_interval, deadline - time.monotonic())))
        with lock, open_warehouse() as warehouse:
            runner = _runner(warehouse, settings)
            runner.collect_related(job.name)
            retry_failures(runner, job)
            runner.publish(job)
            summary = summarize(runner, job, report, started)
            if summary["live_batches"]:
                p = runner.ledger.progress(job.name)
                eta = f", about {p['eta_seconds']:,} s left" if p.get("eta_seconds") is not None else ""
                progress(f"llm_batch {model.relation}: waiting ({int(deadline - time.monotonic())} s of wait_timeout "
                         f"left): {p['live_batches']} batch(es) running, {p['done']:,}/{p['total']:,} requests "
                         f"done{eta}")
    summary["column_docs"] = column_docs(job)
    summary["timed_out"] = bool(model.wait_timeout and summary["live_batches"])
    summary["wait_timeout"] = model.wait_timeout
    return summary


def retry_failures(runner: Runner, job: Job) -> None:
    """Resend the job's retryable failures (expired, cancelled, transient errors) below max_attempts,
    as `warehouse-batch retry` would: a scheduled build heals them without anyone running a command."""
    if runner.submit_enabled and runner.ledger.count(runner.ledger.retryable_sql(job, exhausted=False)):
        runner.retry(job.name)


def _open(conn: duckdb.DuckDBPyConnection, settings: Settings) -> DuckDBWarehouse:
    return DuckDBWarehouse(conn, work_dir=settings.work_dir)


def _runner(warehouse: Warehouse, settings: Settings) -> Runner:
    return Runner(warehouse, settings.provider(), prices=settings.prices, concurrency=settings.concurrency,
                  submit=settings.submit, daily_budget_usd=None if settings.daily_budget_usd is None else
                  DailyBudget(settings.daily_budget_usd, "the dbt plugin setting daily_budget_usd"))


def summarize(runner: Runner, job: Job, report: Any, started: datetime) -> dict[str, Any]:
    if runner.failures:  # this model's (or a related job's) step failed: fail the model, saying why
        raise next(iter(runner.failures.values()))
    table = quote_table(job.target_table)
    statuses = dict(runner.warehouse.execute(f"SELECT status, count(*) FROM {table} GROUP BY 1 ORDER BY 1").fetchall())
    errors = dict(runner.warehouse.execute(
        f"SELECT coalesce(error_code, status), count(*) FROM {table} WHERE status IN ('failed', 'expired', 'cancelled') "
        "GROUP BY 1 ORDER BY 2 DESC, 1").fetchall())
    stale = runner.warehouse.scalar(f"SELECT count_if(is_stale) FROM {table}")
    live, held = runner.ledger.unsent_lines(job.name)
    # Measured, not planned: requests this sync actually sent (held shards included) and answers it
    # collected for this model's rows (in its own batches or those of a job that asked first).
    sent, collected = runner.warehouse.one(
        f"""SELECT (SELECT coalesce(sum(line_count), 0) FROM {SCHEMA}.batches
                    WHERE job_name = ? AND submitted_at >= ?),
                   (SELECT count(DISTINCT q.__wb_request_hash) FROM {rows_table(job.name)} AS q
                    JOIN {SCHEMA}.request_shards AS rs ON rs.request_hash = q.__wb_request_hash
                    JOIN {SCHEMA}.batches AS b ON b.shard_id = rs.shard_id
                    WHERE b.collected_at >= ?)""", [job.name, started, started])
    counts = report.counts if report is not None else None  # None: a sync that planned nothing
    return {
        "job": job.name,
        "table": table,
        "rows": sum(statuses.values()),
        "statuses": statuses,
        "errors": errors,
        "stale": int(stale or 0),
        "requests": counts.requests if counts else None,
        "cached": counts.cached if counts else None,
        "in_flight": counts.in_flight if counts else None,
        "new": counts.to_submit if counts else 0,
        "cost_usd_expected": counts.cost_usd_expected if counts else None,
        "cost_usd_upper_bound": counts.cost_usd_upper_bound if counts else None,
        "sent": int(sent or 0),
        "collected": int(collected or 0),
        "held": held,
        "live_batches": live,
        "submit": runner.submit_enabled,
        "max_attempts": job.max_attempts,
    }


def preview_requests(warehouse: DuckDBWarehouse, job: Job, n: int) -> list[dict[str, Any]]:
    """The first `n` rows' request bodies exactly as they would be sent (system prompt, params,
    response_format...), built by the same SQL as the shards; reads the query, writes nothing."""
    columns = compiler.describe(warehouse, job)
    spec = bodies.build(job, columns)
    rows = warehouse.execute(
        f"SELECT CAST(q.custom_id AS VARCHAR), {spec.body} FROM ({job.query}) AS q LIMIT {int(n)}").fetchall()
    return [{"custom_id": cid, "body": json.dumps(json.loads(body), indent=2, ensure_ascii=False) if body else None}
            for cid, body in rows]


def publish_shape(warehouse: DuckDBWarehouse, job: Job) -> dict[str, Any]:
    """The output table with every column (query columns, typed answer columns, status…) and no rows.

    For `dbt run --empty`: downstream models bind against the real columns; nothing is planned,
    recorded or sent. Uses a scratch job name, so the job's own tables and records stay untouched."""
    scratch = f"{job.name[:50]}__wb_empty"
    shaped = Job.from_options({**job.to_options(), "name": scratch, "table": f"{SCHEMA}.{scratch}{OUTPUT_SUFFIX}"})
    rows = rows_table(scratch)
    try:
        warehouse.execute(
            f"CREATE OR REPLACE TABLE {rows} AS SELECT *, CAST(NULL AS VARCHAR) AS __wb_request_hash, "
            "CAST(NULL AS VARCHAR) AS __wb_cid "
            f"FROM ({job.query}) AS q LIMIT 0"
        )
    except duckdb.Error as exc:
        raise JobError(f"job {job.name}: the query fails in DuckDB: {str(exc).splitlines()[0]}") from None
    runner = Runner(warehouse, submit=False)
    warehouse.execute(f"DROP TABLE IF EXISTS {quote_table(shaped.target_table)}")  # our scratch copy
    try:
        runner.publish(shaped)
    finally:
        warehouse.execute(f"DROP TABLE IF EXISTS {rows}")
    return {"job": job.name, "table": quote_table(shaped.target_table), "rows": 0, "statuses": {}, "errors": {},
            "stale": 0, "requests": 0, "cached": 0, "in_flight": 0, "new": 0, "cost_usd_expected": 0,
            "cost_usd_upper_bound": 0, "sent": 0, "collected": 0, "held": 0, "live_batches": 0, "submit": False,
            "empty": True}


def describe_settings(settings: Settings) -> str:
    """One line for logs; never includes the API key (it is not a setting)."""
    return ", ".join(f"{k}={getattr(settings, k)!r}" for k in settings.__dataclass_fields__)
