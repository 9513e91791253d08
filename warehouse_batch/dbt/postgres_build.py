"""`warehouse-batch dbt build` and `warehouse-batch dbt sync`: llm_batch models on dbt-postgres.

dbt-postgres cannot run Python inside a materialization (dbt-duckdb's plugin can), so the library
drives dbt instead, through dbtRunner (dbt's programmatic API), in four steps:

1. compile the selected `llm_batch` models (their SQL and config; nothing is built yet);
2. `dbt build` what the selection holds outside `config.materialized:llm_batch+` (the models'
   upstream, seeds, their tests);
3. run each `llm_batch` model through the library (the same `sync.run_model` as the dbt-duckdb
   plugin: collect, resend retryable failures, send only new requests, publish) against the
   PostgreSQL warehouse of the dbt target, its output table being the model's own relation;
4. `dbt build` the selected `llm_batch+`: the llm_batch materialization for dbt-postgres keeps the
   table step 3 published (tests, grants, docs, contracts apply) and the downstream models build.

The warehouse URI comes from the target's profile (host, port, user, dbname; the password from the
profile, which may read it from the environment) and is only ever shown with the password redacted.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from warehouse_batch.dbt.columns import with_yml_schema
from warehouse_batch.dbt.config_keys import dbt_config_keys
from warehouse_batch.dbt.messages import for_dbt
from warehouse_batch.dbt.sync import (
    NO_CACHE_VAR,
    PREVIEW_VAR,
    Settings,
    job_name_for,
    parse_request,
    retry_failures,
    run_model,
    summarize,
)
from warehouse_batch.errors import ConfigError, JobsFailedError, WarehouseBatchError
from warehouse_batch.jobs import Job

LLM_BATCH = "config.materialized:llm_batch"
#: dbt options that name the project, profile, target and vars: every invocation gets them.
_CONTEXT = {"-t", "--target", "--vars", "--project-dir", "--profiles-dir", "--profile"}
_SELECT = {"-s", "--select", "-m", "--models", "--model"}
_EXCLUDE = {"--exclude"}


class DbtFailedError(WarehouseBatchError):
    """A dbt step of `warehouse-batch dbt build` failed (dbt printed why)."""

    exit_code = 1


@dataclass
class DbtArgs:
    """The dbt arguments given to `warehouse-batch dbt build`, sorted by what each step needs."""

    select: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    context: list[str] = field(default_factory=list)  # --target, --vars, --project-dir, ... (every step)
    build: list[str] = field(default_factory=list)  # everything else (--full-refresh, --threads 4, ...): dbt build only

    def selection(self, extra: str | Sequence[str] | None = None, exclude: Sequence[str] = ()) -> list[str]:
        """--select (each user selector intersected with `extra`, or with each of several) and
        --exclude (the user's + `exclude`)."""
        argv: list[str] = []
        extras = [extra] if isinstance(extra, str) else list(extra or [])
        if self.select or extras:
            chosen = [f"{s},{e}" for s in self.select for e in extras] if extras else list(self.select)
            argv += ["--select", *(chosen or extras)]
        if self.exclude or exclude:
            argv += ["--exclude", *self.exclude, *exclude]
        return argv


def split_args(argv: Sequence[str]) -> DbtArgs:
    """Sort dbt's arguments: selection, context (every step) and the rest (the `dbt build` steps)."""
    args = DbtArgs()
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        name, eq, value = token.partition("=") if token.startswith("--") else (token, "", "")
        if name in ("--selector", "--empty", "--inline"):
            raise ConfigError(f"warehouse-batch dbt build does not take {name} yet; select models with -s/--exclude "
                              "(dbt-postgres llm_batch models, docs/dbt.md)")
        if name in _SELECT | _EXCLUDE:
            target = args.select if name in _SELECT else args.exclude
            if eq:
                target.append(value)
            i += 1
            while i < len(tokens) and not tokens[i].startswith("-"):
                target.append(tokens[i])
                i += 1
            continue
        if name in _CONTEXT:
            if eq:
                args.context += [name, value]
                i += 1
            else:
                if i + 1 >= len(tokens):
                    raise ConfigError(f"dbt option {name} needs a value")
                args.context += [name, tokens[i + 1]]
                i += 2
            continue
        args.build.append(token)
        i += 1
    return args


# -- dbt --------------------------------------------------------------------------------------------
class Dbt:
    """dbtRunner invocations with the context arguments; dbt prints its own log as usual."""

    def __init__(self, args: DbtArgs):
        try:
            from dbt.cli.main import dbtRunner
        except ImportError:
            raise ConfigError("warehouse-batch dbt build needs dbt-core and dbt-postgres: "
                              "pip install 'warehouse-batch[dbt-postgres]'") from None
        self.runner = dbtRunner
        self.args = args

    def invoke(self, *argv: str) -> Any:
        result = self.runner().invoke([*argv, *self.args.context])
        if result.exception is not None and not isinstance(result.exception, Exception):
            raise result.exception  # KeyboardInterrupt and the like
        return result

    def build(self, selection: list[str]) -> bool:
        return bool(self.invoke("build", *self.args.build, *selection).success)


def compiled_models(dbt: Dbt) -> list[Any]:
    """The selected llm_batch models, compiled, upstream models first."""
    # --quiet: compile prints a lone selected node's SQL; errors still show.
    result = dbt.invoke("compile", "--quiet", *dbt.args.selection(LLM_BATCH))
    if not result.success:
        raise DbtFailedError("dbt compile of the llm_batch models failed (dbt's log above says why)")
    nodes = [r.node for r in getattr(result.result, "results", []) or []
             if getattr(r.node, "resource_type", None) == "model"
             and getattr(r.node.config, "materialized", None) == "llm_batch"]
    by_id = {n.unique_id: n for n in nodes}
    ordered: dict[str, Any] = {}

    def visit(node: Any) -> None:  # an llm_batch model that reads another must come after it
        if node.unique_id in ordered:
            return
        for parent in node.depends_on.nodes:
            if parent in by_id:
                visit(by_id[parent])
        ordered[node.unique_id] = node

    for node in sorted(nodes, key=lambda n: n.unique_id):
        visit(node)
    return list(ordered.values())


def target_credentials() -> Any:
    """The credentials of the target the last dbt invocation used (dbt's own profile rendering)."""
    from dbt.config.runtime import load_profile
    from dbt.flags import get_flags

    flags = get_flags()
    profile = load_profile(str(flags.PROJECT_DIR), flags.VARS or {}, getattr(flags, "PROFILE", None),
                           getattr(flags, "TARGET", None))
    return profile.credentials


def postgres_uri(creds: Any) -> str:
    """postgresql://user:password@host:port/dbname (sslmode and friends as query parameters)."""
    if getattr(creds, "type", None) != "postgres":
        raise ConfigError(
            f"warehouse-batch dbt build runs llm_batch models on dbt-postgres targets; this target's adapter is "
            f"{getattr(creds, 'type', None)!r}. On dbt-duckdb, run plain dbt build (the warehouse_batch plugin)")
    auth = quote(str(creds.user), safe="")
    if creds.password:
        auth += ":" + quote(str(creds.password), safe="")
    query = {k: v for k in ("sslmode", "sslcert", "sslkey", "sslrootcert")
             if (v := getattr(creds, k, None))}
    return (f"postgresql://{auth}@{creds.host}:{int(creds.port)}/{quote(str(creds.database), safe='')}"
            + (f"?{urlencode(query)}" if query else ""))


def _vars() -> dict[str, Any]:
    from dbt.flags import get_flags

    return dict(get_flags().VARS or {})


# -- the library step -------------------------------------------------------------------------------
def model_request(node: Any, project_dir: str, vars_: dict[str, Any]) -> str:
    """The same JSON the dbt-duckdb materialization hands the plugin, from a compiled node."""
    config = node.config.to_dict(omit_none=True)
    return json.dumps({
        "relation": node.relation_name,
        "schema": node.schema,
        "identifier": node.alias,
        "project_dir": project_dir,
        "path": node.original_file_path,
        "sql": node.compiled_code,
        "config": config,
        "empty": False,
        "no_cache": vars_.get(NO_CACHE_VAR, False),
        "preview": 0,
        "columns": {name: {"data_type": c.data_type, "description": c.description} for name, c in node.columns.items()},
    }, default=str)


def plan_line(relation: str, r: dict[str, Any]) -> str:
    line = (f"llm_batch {relation} plan: {r['rows']} rows, {r['requests']} distinct requests: {r['cached']} cached, "
            f"{r['in_flight']} in flight, {r['new']} new")
    if r["new"]:
        cost = r.get("cost_usd_expected")
        line += f" (estimated {'unknown: no price' if cost is None else f'${cost:.4f}'}"
        if r.get("cost_usd_upper_bound") is not None:
            line += f", at most ${r['cost_usd_upper_bound']:.4f}"
        line += ")"
        if not r["submit"]:
            line += "; submit is off: nothing is sent"
    return line


def summary_line(relation: str, r: dict[str, Any]) -> str:
    parts = ", ".join(f"{n} {status}" for status, n in r["statuses"].items()) or "none"
    if r["stale"]:
        parts += f"; {r['stale']} of them stale: last answer kept while the changed request is in flight"
    held = f", {r['held']} held (submit is off)" if r["held"] else ""
    return (f"llm_batch {relation}: {r['rows']} rows ({parts}); {r['sent']} requests sent now, "
            f"{r['collected']} answers collected now{held}; job {r['job']}")


def warning_lines(name: str, relation: str, r: dict[str, Any]) -> list[str]:
    lines = []
    if r.get("errors"):
        parts = ", ".join(f"{n} {code}" for code, n in r["errors"].items())
        lines.append(f"llm_batch {relation}: rows not answered: {parts}. Retryable ones (expired, cancelled, transient "
                     f"errors) are resent by the next build, up to max_attempts = {r['max_attempts']}, or now: "
                     f"warehouse-batch dbt sync --retry -s {name}")
    if r.get("timed_out"):
        lines.append(f"llm_batch {relation}: wait_timeout ({r['wait_timeout']} s) ran out with {r['live_batches']} "
                     "batch(es) still running; their rows stay as they are (pending or stale) and the next build "
                     "collects them")
    return lines


def output_job(node: Any, job: Job) -> Job:
    """The job with the model's own relation as its output table (not the library's copy)."""
    return Job.from_options({**job.to_options(), "table": f"{node.schema}.{node.alias}"})


def open_postgres(uri: str, settings: Settings, lock_timeout: float) -> Any:
    from warehouse_batch.warehouses.postgres import PostgresWarehouse

    return PostgresWarehouse(uri, work_dir=settings.work_dir, lock_timeout=lock_timeout)


def engine_copy(warehouse: Any, node: Any) -> None:
    """Give the engine a copy of the model's table as Postgres holds it, if it has none.

    The engine pulls only metadata and rows tables at open; when nothing changed, publish leaves
    the table in Postgres as it is, and the run's summary still reads its rows in the engine."""
    from warehouse_batch.quoting import quote_ident
    from warehouse_batch.warehouses import replica

    if replica.engine_columns(warehouse.engine, node.schema, node.alias) or \
            warehouse.table_kind(f"{node.schema}.{node.alias}") != "table":
        return
    types = warehouse.describe_query(f"SELECT * FROM {replica.qt(node.schema, node.alias)}")
    warehouse.engine.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(node.schema)}")
    replica.pull(warehouse.engine, warehouse.cursor, node.schema, node.alias, create_types=types)


def comment_columns(warehouse: Any, node: Any, docs: dict[str, str]) -> None:
    """Column comments in Postgres (what `dbt docs generate` shows): the yml's description, else the
    answer field's or generated column's meaning. Publish recreates the table, so each run sets them."""
    from warehouse_batch.quoting import sql_literal
    from warehouse_batch.warehouses import replica

    for name in replica.pg_columns(warehouse.cursor, node.schema, node.alias):
        yml = node.columns.get(name)
        text = (yml.description if yml is not None and yml.description else None) or docs.get(name)
        if text:
            warehouse.cursor.execute(f"COMMENT ON COLUMN {replica.qt(node.schema, node.alias)}.{replica.q(name)} "
                                     f"IS {sql_literal(text, 'postgres')}")


def run_models(nodes: list[Any], uri: str, settings: Settings, *, project_dir: str, lock_timeout: float,
               say: Callable[[str], None], warn: Callable[[str], None]) -> dict[str, str]:
    """Each model through the library; returns {model name: error} for those that failed."""
    from dbt.adapters.postgres.impl import PostgresConfig

    dbt_keys = dbt_config_keys(PostgresConfig)
    vars_ = _vars()
    failed: dict[str, str] = {}
    warehouse = open_postgres(uri, settings, lock_timeout)
    try:
        say(f"llm_batch: warehouse {warehouse.location}, {len(nodes)} model(s)")

        def sleep(seconds: float) -> None:
            with warehouse.released():  # other warehouse_batch writers (a cron dbt sync) get in while we wait
                time.sleep(seconds)

        for node in nodes:
            relation = node.relation_name
            try:
                model = parse_request(model_request(node, project_dir, vars_), dbt_keys)
                job = with_yml_schema(warehouse, output_job(node, model.job), model.columns or {})
                engine_copy(warehouse, node)
                report = run_model(lambda: contextlib.nullcontext(warehouse), job, model, settings,
                                   lock=threading.Lock(), sleep=sleep, progress=say)
            except WarehouseBatchError as exc:  # one model's failure is reported; the others go on
                message = for_dbt(exc, settings.base_url, plugin=False)["error"]
                failed[node.name] = message
                warn(f"llm_batch {relation} failed: {message}")
                continue
            comment_columns(warehouse, node, report.get("column_docs") or {})
            say(plan_line(relation, report))
            say(summary_line(relation, report))
            for line in warning_lines(node.name, relation, report):
                warn(line)
    finally:
        warehouse.close()
    return failed


def llm_ancestors(dbt: Dbt, nodes: list[Any]) -> dict[str, set[str]]:
    """For each llm_batch model, the other llm_batch models it reads, directly or through other models."""
    ids = {n.unique_id for n in nodes}
    parents = {n.unique_id: set(n.depends_on.nodes) for n in nodes}
    if len(nodes) > 1:  # the models between them: everything downstream of an llm_batch model
        listed = dbt.invoke("ls", "--quiet", "--resource-type", "model", "--select", f"{LLM_BATCH}+",
                            "--output", "json", "--output-keys", "unique_id", "depends_on")
        for line in (listed.result or []) if listed.success else []:
            item = json.loads(line)
            parents.setdefault(item["unique_id"], set((item.get("depends_on") or {}).get("nodes") or []))
    found: dict[str, set[str]] = {}
    for node in nodes:
        seen: set[str] = set()
        todo = list(parents[node.unique_id])
        while todo:
            uid = todo.pop()
            if uid not in seen:
                seen.add(uid)
                todo += parents.get(uid, ())
        found[node.unique_id] = seen & ids
    return found


def build(argv: Sequence[str], settings: Settings, *, lock_timeout: float, say: Callable[[str], None],
          warn: Callable[[str], None]) -> None:
    """`warehouse-batch dbt build [dbt args]` (see the module docstring). Raises on failure.

    An llm_batch model that reads another through other models (a view between them) waits for a
    second round: the first model runs, then what lies between is built, then the second runs."""
    args = split_args(argv)
    dbt = Dbt(args)
    nodes = compiled_models(dbt)
    if not nodes:  # nothing for the library: a plain dbt build
        say("llm_batch: no llm_batch model selected; running dbt build")
        if not dbt.build(args.selection()):
            raise DbtFailedError("dbt build failed (dbt's log above says why)")
        return
    if _vars().get(PREVIEW_VAR):
        raise ConfigError(f"--vars {PREVIEW_VAR} is not supported by warehouse-batch dbt build yet; "
                          "`warehouse-batch plan` shows a job's requests")
    uri = postgres_uri(target_credentials())
    project_dir = str(Path(os.fspath(_project_dir())).resolve())
    settings = _with_work_dir(settings, project_dir, uri)
    ancestors = llm_ancestors(dbt, nodes)
    say(f"llm_batch: building upstream of {len(nodes)} llm_batch model(s)")
    if not dbt.build(args.selection(exclude=[f"{LLM_BATCH}+"])):
        raise DbtFailedError("dbt build of the llm_batch models' upstream failed (dbt's log above says why); "
                             "nothing was sent")
    failed: dict[str, str] = {}
    pending = list(nodes)
    while pending:
        waiting = {n.unique_id for n in pending}
        ready = [n for n in pending if not ancestors[n.unique_id] & waiting]
        pending = [n for n in pending if n not in ready]
        done = {n.unique_id: n.name for n in nodes if n not in pending and n not in ready}
        for node in list(ready):  # downstream of a model that failed: skipped, as dbt skips
            broken = [done[uid] for uid in ancestors[node.unique_id] if done.get(uid) in failed]
            if broken:
                failed[node.name] = f"skipped: it reads {', '.join(sorted(broken))}, which failed"
                ready.remove(node)
        failed.update(run_models(ready, uri, settings, project_dir=project_dir, lock_timeout=lock_timeout,
                                 say=say, warn=warn))
        if pending:  # build what lies between these models and the ones still to run
            say("llm_batch: building what the remaining llm_batch model(s) read")
            between = args.selection([f"{n.name}+" for n in ready],
                                     exclude=[f"{n.name}+" for n in pending] + [f"{name}+" for name in failed])
            if ready and not dbt.build(between):
                raise DbtFailedError("dbt build of the models between llm_batch models failed (dbt's log above "
                                     "says why); the remaining llm_batch models were not run")
    say("llm_batch: building the llm_batch models and their downstream")
    ok = dbt.build(args.selection(f"{LLM_BATCH}+", exclude=[f"{name}+" for name in failed]))
    if failed:
        raise JobsFailedError(f"{len(failed)} llm_batch model(s) failed: "
                              + "; ".join(f"{name}: {error}" for name, error in failed.items()))
    if not ok:
        raise DbtFailedError("dbt build of the llm_batch models and their downstream failed (dbt's log above says why)")


def sync(argv: Sequence[str], settings: Settings, *, retry: bool, lock_timeout: float,
         say: Callable[[str], None], warn: Callable[[str], None]) -> None:
    """`warehouse-batch dbt sync [dbt args]`, for cron between builds: collect the selected llm_batch
    models' finished batches and republish their tables in Postgres. Nothing new is sent; with
    `settings.submit`, held shards go out, and with `retry`, retryable failures are resent.
    Downstream models pick the answers up on the next build."""
    from warehouse_batch.errors import NotFoundError
    from warehouse_batch.runner import Runner

    args = split_args(argv)
    nodes = compiled_models(Dbt(args))
    if not nodes:
        say("llm_batch: no llm_batch model selected; nothing to sync")
        return
    uri = postgres_uri(target_credentials())
    settings = _with_work_dir(settings, str(Path(os.fspath(_project_dir())).resolve()), uri)
    failed: dict[str, str] = {}
    with open_postgres(uri, settings, lock_timeout) as warehouse:
        say(f"llm_batch: warehouse {warehouse.location}, {len(nodes)} model(s)")
        for node in nodes:
            started = datetime.now(timezone.utc)
            runner = Runner(warehouse, settings.provider(), prices=settings.prices, concurrency=settings.concurrency,
                            submit=settings.submit)
            try:
                # The job as the last build defined it (its rows, its output schema): sync changes no definition.
                job = runner.ledger.job(node.config.get("job_name") or job_name_for(node.schema, node.alias))
            except NotFoundError:
                say(f"llm_batch {node.relation_name}: not built yet; run warehouse-batch dbt build")
                continue
            try:
                engine_copy(warehouse, node)
                runner.collect_related(job.name)
                if retry:
                    retry_failures(runner, job)
                runner.publish(job)
                report = summarize(runner, job, None, started)
            except WarehouseBatchError as exc:
                failed[node.name] = for_dbt(exc, settings.base_url, plugin=False)["error"]
                warn(f"llm_batch {node.relation_name} failed: {failed[node.name]}")
                continue
            say(summary_line(node.relation_name, report))
            for line in warning_lines(node.name, node.relation_name, report):
                warn(line)
    if failed:
        raise JobsFailedError(f"{len(failed)} llm_batch model(s) failed: "
                              + "; ".join(f"{name}: {error}" for name, error in failed.items()))


def _project_dir() -> Any:
    from dbt.flags import get_flags

    return get_flags().PROJECT_DIR or "."


def _with_work_dir(settings: Settings, project_dir: str, uri: str) -> Settings:
    """Shard and result files under the project (`.warehouse_batch/`), unless --work-dir says otherwise:
    the same place whichever directory cron starts in."""
    if settings.work_dir:
        return settings
    from dataclasses import replace
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    name = f"{parts.hostname or 'local'}_{parts.port or 5432}_{parts.path.lstrip('/')}"
    return replace(settings, work_dir=str(Path(project_dir) / ".warehouse_batch" / name))
