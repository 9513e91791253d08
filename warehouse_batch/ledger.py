"""The ledger: the one owner of the metadata tables (jobs, runs, requests, job_rows, batches, results).

Every write to those tables, and every read that decides what happens next, is a method here; no
other module writes them. A shard's state is declared once (`ShardState`) and changes only through
`move`, a compare-and-set (`UPDATE … WHERE state IN (allowed predecessors)`) that refuses an illegal
move instead of silently overwriting what another step recorded.

    written ──▶ uploading ──▶ uploaded ──▶ creating ──▶ submitted ──▶ collected
       ▲ └───────────┴─────────────┴────────▲───┴──── (cancelled / lost / split) ──▶ collected
       └──────────── deferred ───────────────┴── creating, submitted (provider trouble)

The `*ing` states are intents, committed before the side effect at the provider and reconciled
after a crash (a file by its name, a batch by its metadata tag).

Provider trouble (a quota refusal, a spurious "Cannot find file", a batch that failed before
running anything) is scheduling: `defer` puts the shard back to `uploaded` (or `written` when its
file is really gone) with a `not_before`, and leaves its requests' attempts alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from warehouse_batch.errors import NotFoundError, WarehouseBatchError
from warehouse_batch.jobs import Job
from warehouse_batch.names import SCHEMA, rows_table, rows_table_name
from warehouse_batch.providers.base import TERMINAL_STATUSES, BatchInfo
from warehouse_batch.quoting import quote_ident, sql_literal
from warehouse_batch.retries import RETRYABLE_SQL
from warehouse_batch.sqlfiles import read_sql
from warehouse_batch.warehouses.base import Warehouse

Shard = dict[str, Any]


class ShardState(str, Enum):
    """Where a shard is in its life; see the module docstring for the picture."""

    WRITTEN = "written"  # the JSONL file is on disk and recorded
    UPLOADING = "uploading"  # intent: the upload may have reached the provider
    UPLOADED = "uploaded"  # the provider has the file (file_id)
    CREATING = "creating"  # intent: the batch may exist at the provider
    SUBMITTED = "submitted"  # the provider has the batch (batch_id); polled until terminal
    COLLECTED = "collected"  # its results (or its outcome) are in `results`: nothing more to do

    def __str__(self) -> str:
        return self.value


S = ShardState
#: Allowed predecessors of each state. Re-announcing an intent (uploading → uploading) is how a
#: resumed run retries a side effect the provider never saw.
_FROM: dict[ShardState, tuple[ShardState, ...]] = {
    # Deferred back to `written`: the provider lost the input file, so it is uploaded again.
    S.WRITTEN: (S.CREATING, S.SUBMITTED),
    S.UPLOADING: (S.WRITTEN, S.UPLOADING),
    # Deferred back to `uploaded`: refused for quota, or a batch that ran nothing; created again later.
    S.UPLOADED: (S.UPLOADING, S.CREATING, S.SUBMITTED),
    S.CREATING: (S.UPLOADED, S.CREATING),
    S.SUBMITTED: (S.CREATING,),
    S.COLLECTED: (S.WRITTEN, S.UPLOADING, S.UPLOADED, S.CREATING, S.SUBMITTED),
}
#: Shards written but not (yet) a batch at the provider: held, deferred by budget, or interrupted.
UNSENT = (S.WRITTEN, S.UPLOADING, S.UPLOADED, S.CREATING)
_TERMINAL_SQL = "(" + ", ".join(sql_literal(s) for s in TERMINAL_STATUSES) + ")"


class IllegalTransition(WarehouseBatchError):
    """A shard was asked to move from a state that does not lead there: another process moved it
    first, or a bug. Nothing was changed."""


class Ledger:
    """Reads and writes of the metadata tables of one warehouse."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse

    # -- jobs --------------------------------------------------------------------------------
    def job(self, name: str) -> Job:
        definition = self.warehouse.scalar(f"SELECT definition FROM {SCHEMA}.jobs WHERE name = ?", [name])
        if definition is None:
            known = self.job_names()
            raise NotFoundError(
                f"no job named {name!r} in this warehouse (known: {', '.join(known) or 'none yet'}); "
                "run it first with `warehouse-batch run JOB.sql`"
            )
        return Job.from_options(json.loads(definition))

    def job_names(self) -> list[str]:
        return [r[0] for r in self.warehouse.execute(f"SELECT name FROM {SCHEMA}.jobs ORDER BY name").fetchall()]

    def owner_of(self, table: str) -> str | None:
        """The job that owns the output table `table` (compared case-insensitively), if any."""
        return self.warehouse.scalar(
            f"SELECT name FROM {SCHEMA}.jobs WHERE lower(target_table) = lower(?) ORDER BY name LIMIT 1", [table]
        )

    def table_created(self, job_name: str) -> bool:
        """Whether the job's output table was created by warehouse_batch (and so may be replaced)."""
        return bool(self.warehouse.scalar(
            f"SELECT table_created FROM {SCHEMA}.jobs WHERE name = ?", [job_name]))

    def mark_table_created(self, job_name: str) -> None:
        self.warehouse.execute(f"UPDATE {SCHEMA}.jobs SET table_created = true WHERE name = ?", [job_name])

    def set_job_error(self, job_name: str, error: str | None) -> None:
        """The last error of a job's step (None: it went well), shown by status and job_status."""
        self.warehouse.execute(
            f"UPDATE {SCHEMA}.jobs SET last_error = ?, last_error_at = CASE WHEN ? IS NULL THEN NULL ELSE now() END "
            "WHERE name = ?", [error, error, job_name],
        )

    def job_error(self, job_name: str) -> str | None:
        return self.warehouse.scalar(f"SELECT last_error FROM {SCHEMA}.jobs WHERE name = ?", [job_name])

    def alias_prices(self, jobs: Iterable[Job] | None = None) -> None:
        """Price each job's `model` like its `price_model` (Azure: a deployment name is priced like the
        model deployed), so estimates, cost guards and the spend views work. The prices table is a
        cache rebuilt at start, so this runs after every load, for the stored jobs and the one at hand."""
        if jobs is None:
            jobs = [Job.from_options(json.loads(d)) for (d,) in self.warehouse.execute(
                f"SELECT definition FROM {SCHEMA}.jobs WHERE json_extract_string(definition, '$.price_model') "
                "IS NOT NULL").fetchall()]
        for job in jobs:
            if not job.price_model or not job.model or job.model == job.price_model:
                continue
            self.warehouse.execute(
                f"""INSERT OR REPLACE INTO {SCHEMA}.prices
                    SELECT ?, input_per_1m, cached_input_per_1m, output_per_1m, batch_discount FROM {SCHEMA}.prices
                    WHERE starts_with(?, model) ORDER BY length(model) DESC LIMIT 1""",
                [job.model, job.price_model])

    # -- runs and rows -----------------------------------------------------------------------
    def stage_counts(self, stage: str) -> tuple[int, int, int]:
        """(cached, in flight, to submit) of the distinct requests of a compiled stage."""
        row = self.warehouse.one(read_sql("ledger/stage_counts.sql").format(stage=stage))
        return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)

    def stage_todo_sql(self, stage: str, endpoint: str) -> str:
        """The stage's requests that have no result and sit in no live shard (for estimates, before persisting)."""
        return read_sql("ledger/stage_todo.sql").format(stage=stage, endpoint=sql_literal(endpoint))

    def begin_run(self, job: Job, run_id: str, stage: str, counts: dict[str, int], *, fingerprint: str,
                  reuse_rows: bool = False) -> None:
        """Record the job, its run (with its estimate, see runner.Counts), its rows and its new
        requests, all in one transaction.

        The stage becomes the job's rows table by a rename, recorded with the fingerprint of what it
        was compiled from (compile.rows_fingerprint); reuse_rows: the stage is the rows table itself,
        unchanged, and so are the job's rows and requests."""
        rows = rows_table(job.name)
        with self.warehouse.transaction():
            self.warehouse.execute(
                f"""
                INSERT INTO {SCHEMA}.jobs (name, target_table, endpoint, definition) VALUES (?, ?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET target_table = excluded.target_table, endpoint = excluded.endpoint,
                    definition = excluded.definition, updated_at = now(),
                    -- a new output table name is not ours until we create it
                    table_created = jobs.table_created AND jobs.target_table = excluded.target_table
                """,
                [job.name, job.target_table, job.endpoint, json.dumps(job.to_options())],
            )
            self.warehouse.execute(
                # A resumed uncached run keeps its run id (its hash salt): the same row, counted again.
                f"INSERT INTO {SCHEMA}.runs (run_id, job_name, status, row_count, request_count, cached_count, "
                "in_flight_count, submitted_count, cache, sample_size, est_input_tokens, est_input_method, "
                "est_output_expected, est_output_upper_bound, est_output_method, est_cost_usd_expected, "
                "est_cost_usd_upper_bound) VALUES (?, ?, 'planned', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id) DO UPDATE SET status = 'planned', finished_at = NULL, "
                + ", ".join(f"{c} = excluded.{c}" for c in (
                    "row_count", "request_count", "cached_count", "in_flight_count", "submitted_count",
                    "sample_size", "est_input_tokens", "est_input_method", "est_output_expected",
                    "est_output_upper_bound", "est_output_method", "est_cost_usd_expected",
                    "est_cost_usd_upper_bound")),
                [run_id, job.name, counts["rows"], counts["requests"], counts["cached"], counts["in_flight"],
                 counts["to_submit"], job.cache, counts.get("sample_size"), counts.get("est_input_tokens"),
                 counts.get("input_tokens_method"), counts.get("est_output_tokens_expected"),
                 counts.get("est_output_tokens_upper_bound"), counts.get("output_tokens_method"),
                 counts.get("cost_usd_expected"), counts.get("cost_usd_upper_bound")],
            )
            self.warehouse.execute(f"UPDATE {SCHEMA}.jobs SET rows_fingerprint = ? WHERE name = ?",
                                   [fingerprint, job.name])
            if reuse_rows:
                return
            self.warehouse.execute(f"DROP TABLE IF EXISTS {rows}")
            self.warehouse.execute(f"ALTER TABLE {stage} RENAME TO {quote_ident(rows_table_name(job.name))}")
            # Every row asking for a request of its own (the usual case): no aggregate picks one row per request.
            distinct = counts["rows"] == counts["requests"]
            persist = read_sql("ledger/persist_rows.sql").format(
                rows=rows, any="" if distinct else "any_value",
                group_by="" if distinct else "GROUP BY __wb_request_hash")
            for statement in _statements(persist):
                self.warehouse.execute(statement, {"job": job.name, "endpoint": job.endpoint}
                                       if "$endpoint" in statement else {"job": job.name})

    def rows_fingerprint(self, job_name: str) -> str | None:
        """The fingerprint of what the job's rows table was compiled from (None: not recorded)."""
        return self.warehouse.scalar(f"SELECT rows_fingerprint FROM {SCHEMA}.jobs WHERE name = ?", [job_name])

    def open_uncached_run(self, job_name: str) -> str | None:
        """The run id of the job's last `cache: false` run while its requests are still in flight or
        unsent: resuming it must reuse its salt, or the same prompts would be paid for twice."""
        return self.warehouse.scalar(
            f"""SELECT r.run_id FROM {SCHEMA}.runs AS r
                WHERE r.job_name = ? AND r.cache = false AND r.status <> 'finished'
                  AND EXISTS (SELECT 1 FROM {SCHEMA}.batches AS b WHERE b.run_id = r.run_id AND b.state <> 'collected')
                ORDER BY r.started_at DESC LIMIT 1""",
            [job_name],
        )

    def stale_in_flight(self, job_name: str, stage: str) -> int:
        """Requests in this job's live batches that no row of the newly compiled stage asks for."""
        return int(self.warehouse.scalar(
            f"""SELECT count(*) FROM {SCHEMA}.request_shards AS r JOIN {SCHEMA}.batches AS b ON b.shard_id = r.shard_id
                WHERE b.job_name = ? AND b.state <> 'collected'
                  AND NOT EXISTS (SELECT 1 FROM {stage} AS s WHERE s.__wb_request_hash = r.request_hash)
                  AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.results AS x WHERE x.request_hash = r.request_hash)
                  AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.job_rows AS jr
                                  WHERE jr.request_hash = r.request_hash AND jr.job_name <> ?)""",
            [job_name, job_name],
        ) or 0)

    def run_submitted(self, run_id: str, shard_count: int) -> None:
        self.warehouse.execute(
            f"UPDATE {SCHEMA}.runs SET shard_count = ?, status = 'submitted' WHERE run_id = ?", [shard_count, run_id])

    def run_finished(self, run_id: str, *, finished: bool) -> None:
        self.warehouse.execute(
            f"UPDATE {SCHEMA}.runs SET finished_at = current_timestamp, "
            "status = CASE WHEN ? THEN 'finished' ELSE status END WHERE run_id = ?",
            [finished, run_id],
        )

    def begin_retry(self, run_id: str, job_name: str) -> None:
        self.warehouse.execute(
            f"INSERT INTO {SCHEMA}.runs (run_id, job_name, status) VALUES (?, ?, 'retry')", [run_id, job_name])

    def retry_done(self, run_id: str, sent: int, shard_count: int) -> None:
        self.warehouse.execute(
            f"UPDATE {SCHEMA}.runs SET submitted_count = ?, shard_count = ?, finished_at = now() WHERE run_id = ?",
            [sent, shard_count, run_id],
        )

    def estimate_vs_actual(self, job_name: str, limit: int = 3) -> list[dict[str, Any]]:
        """The job's latest runs: what each one's plan estimated beside what its requests cost."""
        return self.warehouse.rows(read_sql("ledger/estimate_vs_actual.sql"), {"job": job_name, "limit": int(limit)})

    def run_actuals(self, run_id: str) -> list[dict[str, Any]]:
        """Per model: requests the run sent, how many have a result, their usage and cost."""
        return self.warehouse.rows(read_sql("ledger/run_actuals.sql"), {"run_id": run_id})

    # -- settings and spend ------------------------------------------------------------------
    def setting(self, name: str) -> str | None:
        return self.warehouse.scalar(f"SELECT value FROM {SCHEMA}.settings WHERE name = ?", [name])

    def set_setting(self, name: str, value: str | None) -> None:
        """Store a warehouse-wide setting (None removes it)."""
        with self.warehouse.transaction():
            self.warehouse.execute(f"DELETE FROM {SCHEMA}.settings WHERE name = ?", [name])
            if value is not None:
                self.warehouse.execute(f"INSERT INTO {SCHEMA}.settings (name, value) VALUES (?, ?)", [name, value])

    def spend_today(self) -> tuple[float, float]:
        """(USD of answers received today, UTC; expected USD of requests still in flight), all jobs."""
        row = self.warehouse.one(read_sql("ledger/spend_today.sql"))
        return (float(row[0] or 0), float(row[1] or 0)) if row else (0.0, 0.0)

    # -- requests to send --------------------------------------------------------------------
    def todo_sql(self, job: Job) -> str:
        """The job's requests that have no result and sit in no live shard (what a run sends)."""
        return f"""
            SELECT r.request_hash, r.endpoint, r.model, r.line_bytes,
                   r.est_input_tokens + coalesce(r.est_output_tokens, 0) AS tokens
            FROM {SCHEMA}.requests AS r
            WHERE r.request_hash IN (SELECT __wb_request_hash FROM {rows_table(job.name)})
              AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.results AS x WHERE x.request_hash = r.request_hash)
              AND NOT EXISTS ({in_live_shard_sql('r.request_hash')})
        """

    def retryable_sql(self, job: Job, *, exhausted: bool) -> str:
        """The job's answered-but-retryable requests below (or at) max_attempts (what `retry` sends)."""
        attempts = f"a.attempts {'>=' if exhausted else '<'} {int(job.max_attempts)}"
        return f"""
            SELECT r.request_hash, r.endpoint, r.model, r.line_bytes,
                   r.est_input_tokens + coalesce(r.est_output_tokens, 0) AS tokens
            FROM {SCHEMA}.requests AS r JOIN {SCHEMA}.results AS res USING (request_hash)
            JOIN {SCHEMA}.request_attempts AS a USING (request_hash)
            WHERE r.request_hash IN (SELECT __wb_request_hash FROM {rows_table(job.name)})
              AND {RETRYABLE_SQL} AND {attempts}
        """

    def count(self, select_sql: str) -> int:
        return int(self.warehouse.scalar(f"SELECT count(*) FROM ({select_sql})") or 0)

    # -- shards ------------------------------------------------------------------------------
    def record_shards(self, job: Job, run_id: str, files: Iterable[Any], plan_table: str, lines: Path,
                      *, replace_results: bool) -> None:
        """Record written shard files and put their requests in them, in one transaction. With
        replace_results (a retry) their previous results go in the same transaction, so each request is
        always either answered or in exactly one live shard.

        Membership is appended to request_shards from the line index the writer left (`lines`: a
        Parquet file of request_hash, shard_id, line_no): an INSERT streams and spills where an
        UPDATE of every request would hold its undo data in memory."""
        with self.warehouse.transaction():
            if replace_results:
                self.warehouse.execute(
                    f"DELETE FROM {SCHEMA}.results WHERE request_hash IN (SELECT request_hash FROM {plan_table})")
            self.warehouse.execute(
                f"""INSERT INTO {SCHEMA}.request_shards (request_hash, shard_id, line_no, attempt)
                    SELECT i.request_hash, i.shard_id, i.line_no, 1 + coalesce(prev.attempt, 0)
                    FROM read_parquet(?) AS i
                    LEFT JOIN (SELECT request_hash, max(attempt) AS attempt FROM {SCHEMA}.request_shards
                               WHERE request_hash IN (SELECT request_hash FROM {plan_table}) GROUP BY 1) AS prev
                        USING (request_hash)""",
                [str(lines)],
            )
            tokens = dict(self.warehouse.execute(
                f"SELECT shard_no, sum(tokens) FROM {plan_table} GROUP BY shard_no").fetchall())
            for f in files:
                self.warehouse.execute(
                    f"INSERT INTO {SCHEMA}.batches (shard_id, job_name, run_id, endpoint, model, path, line_count, "
                    "byte_count, sha256, est_tokens, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [f.shard_id, job.name, run_id, f.endpoint, f.model, str(f.path), f.line_count, f.byte_count,
                     f.sha256, tokens.get(f.shard_no), str(S.WRITTEN)],
                )

    def shards(self, job_name: str | None, states: Iterable[ShardState] | None = None, *,
               live_only: bool = False, ready_only: bool = False) -> list[Shard]:
        """Shards of one job (or all) in the given states; live_only: submitted and not terminal at
        the provider; ready_only: submitted and terminal (to collect)."""
        where, params = ["true"], []
        if states is not None:
            where.append(f"state IN ({', '.join(sql_literal(str(s)) for s in states)})")
        if live_only:
            where.append(f"state = 'submitted' AND coalesce(status, '') NOT IN {_TERMINAL_SQL}")
        if ready_only:
            where.append(f"state = 'submitted' AND status IN {_TERMINAL_SQL}")
        if job_name is not None:
            where.append("job_name = ?")
            params.append(job_name)
        return self.warehouse.rows(
            f"SELECT * FROM {SCHEMA}.batches WHERE {' AND '.join(where)} ORDER BY shard_id", params)

    def recorded_shards(self, job_name: str) -> tuple[set[str], set[str]]:
        """(the job's run ids, the shard ids recorded for it): which of the job's shard files the
        ledger knows."""
        runs = self.warehouse.execute(f"SELECT run_id FROM {SCHEMA}.runs WHERE job_name = ?", [job_name]).fetchall()
        recorded = self.warehouse.execute(
            f"SELECT shard_id FROM {SCHEMA}.batches WHERE job_name = ?", [job_name]).fetchall()
        return {r[0] for r in runs}, {r[0] for r in recorded}

    def collected_shards(self, job_name: str) -> set[str]:
        """The job's shard ids whose batch is over and loaded (or that ended without one)."""
        return {r[0] for r in self.warehouse.execute(
            f"SELECT shard_id FROM {SCHEMA}.batches WHERE job_name = ? AND state = 'collected'", [job_name]).fetchall()}

    def shard(self, shard_id: str) -> Shard:
        """One shard's row (NotFoundError if there is none)."""
        found = self.warehouse.rows(f"SELECT * FROM {SCHEMA}.batches WHERE shard_id = ?", [shard_id])
        if not found:
            raise NotFoundError(f"no shard {shard_id!r} in this warehouse")
        return found[0]

    def move(self, shard_id: str, to: ShardState, **values: Any) -> None:
        """Compare-and-set a shard to `to` (with other columns); IllegalTransition if it is not in a
        state that leads there."""
        allowed = _FROM[to]
        if to in (S.UPLOADING, S.CREATING):
            values.setdefault("intent_at", _now())
            values.setdefault("not_before", None)
        if to is S.SUBMITTED:
            values.setdefault("submitted_at", _now())
        if to is S.COLLECTED:
            values.setdefault("collected_at", _now())
        assignments = ", ".join(["state = ?"] + [f"{k} = ?" for k in values])
        moved = self.warehouse.execute(
            f"UPDATE {SCHEMA}.batches SET {assignments} WHERE shard_id = ? "
            f"AND state IN ({', '.join(sql_literal(str(s)) for s in allowed) or 'NULL'}) RETURNING shard_id",
            [str(to), *values.values(), shard_id],
        ).fetchall()
        if not moved:
            now = self.warehouse.scalar(f"SELECT state FROM {SCHEMA}.batches WHERE shard_id = ?", [shard_id])
            raise IllegalTransition(
                f"shard {shard_id} cannot move to {to} from {now or 'nowhere (no such shard)'}; another process may "
                "be working on this job. Check `warehouse-batch status` and run the command again"
            )

    def defer(self, shard_id: str, to: ShardState, *, reason: str, delay: float, count: bool = True) -> None:
        """Put a shard back in line (`uploaded`, or `written` to upload again) for `delay` seconds:
        what the provider said of its last batch is cleared, its requests (and their attempts) stay.
        `count`: the deferral counts towards the give-up limit of transient trouble. Deferring to
        `creating` (an ambiguous create) keeps the intent, so the batch is looked for before another."""
        not_before = _now() + timedelta(seconds=max(delay, 0.0))
        if to is S.CREATING:
            self.move(shard_id, to, not_before=not_before, deferred_reason=reason)
        else:
            self.move(shard_id, to, batch_id=None, status=None, errors=None, output_file_id=None, error_file_id=None,
                      total_count=None, completed_count=None, failed_count=None, polled_at=None, finished_at=None,
                      not_before=not_before, deferred_reason=reason, **({"file_id": None} if to is S.WRITTEN else {}))
        if count:
            self.warehouse.execute(
                f"UPDATE {SCHEMA}.batches SET deferrals = coalesce(deferrals, 0) + 1 WHERE shard_id = ?", [shard_id])

    def deferred(self, job_name: str | None) -> int:
        """Shards waiting to be sent again after provider trouble (quota, a spurious failure)."""
        params: list[Any] = []
        where = ""
        if job_name is not None:
            where, params = " AND job_name = ?", [job_name]
        states = ", ".join(sql_literal(str(s)) for s in UNSENT)
        return int(self.warehouse.scalar(
            f"SELECT count(*) FROM {SCHEMA}.batches WHERE state IN ({states}) AND deferred_reason IS NOT NULL{where}",
            params) or 0)

    def learn_quota(self, location: str, model: str, tokens: int) -> None:
        """Remember the enqueued-token quota a refusal stated (the latest refusal wins)."""
        self.warehouse.execute(
            f"INSERT INTO {SCHEMA}.quotas (location, model, enqueued_tokens) VALUES (?, ?, ?) "
            "ON CONFLICT (location, model) DO UPDATE SET enqueued_tokens = excluded.enqueued_tokens, "
            "learned_at = now()", [location, model, max(int(tokens), 1)])

    def quotas(self, location: str) -> dict[str, int]:
        return {r["model"]: int(r["enqueued_tokens"]) for r in self.warehouse.rows(
            f"SELECT model, enqueued_tokens FROM {SCHEMA}.quotas WHERE location = ?", [location])}

    def input_files_to_delete(self, job_name: str | None) -> list[Shard]:
        """Collected shards whose uploaded input file is still at the provider."""
        params: list[Any] = []
        where = ""
        if job_name is not None:
            where, params = " AND job_name = ?", [job_name]
        return self.warehouse.rows(
            f"SELECT * FROM {SCHEMA}.batches WHERE state = 'collected' AND file_id IS NOT NULL "
            f"AND input_deleted_at IS NULL{where} ORDER BY shard_id", params)

    def input_deleted(self, shard_id: str) -> None:
        self.warehouse.execute(f"UPDATE {SCHEMA}.batches SET input_deleted_at = ? WHERE shard_id = ?", [_now(), shard_id])

    def split(self, parent: Shard, children: list[Any], assignment: dict[str, tuple[str, int]]) -> None:
        """Replace an unsent (or quota-refused) shard by smaller ones, in one transaction: the children
        are recorded `written`, the requests are put in them (assignment: custom_id → (child, line);
        attempts unchanged), the parent is closed."""
        with self.warehouse.transaction():
            for f in children:
                self.warehouse.execute(
                    f"INSERT INTO {SCHEMA}.batches (shard_id, job_name, run_id, endpoint, model, path, line_count, "
                    "byte_count, sha256, est_tokens, state, parent_shard_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [f.shard_id, parent["job_name"], parent["run_id"], f.endpoint, f.model, str(f.path), f.line_count,
                     f.byte_count, f.sha256, f.tokens, str(S.WRITTEN), parent["shard_id"]],
                )
            self.warehouse.execute(
                f"""INSERT INTO {SCHEMA}.request_shards (request_hash, shard_id, line_no, attempt)
                    SELECT a.request_hash, a.shard_id, a.line_no, p.attempt
                    FROM (SELECT unnest(CAST(? AS VARCHAR[])) AS request_hash, unnest(CAST(? AS VARCHAR[])) AS shard_id,
                                 unnest(CAST(? AS BIGINT[])) AS line_no) AS a
                    JOIN {SCHEMA}.request_shards AS p ON p.request_hash = a.request_hash AND p.shard_id = ?""",
                [list(assignment), [c for c, _ in assignment.values()], [n for _, n in assignment.values()],
                 parent["shard_id"]])
            self.move(parent["shard_id"], S.COLLECTED, status="split")

    def request_tokens(self, shard_id: str) -> dict[str, int]:
        """Estimated tokens (input + output) of each request of a shard."""
        return {r[0]: int(r[1] or 0) for r in self.warehouse.execute(
            f"SELECT request_hash, est_input_tokens + coalesce(est_output_tokens, 0) FROM {SCHEMA}.requests "
            f"WHERE request_hash IN (SELECT request_hash FROM {SCHEMA}.request_shards WHERE shard_id = ?)",
            [shard_id]).fetchall()}

    def update_status(self, shard_id: str, info: BatchInfo) -> None:
        """What the provider says of a submitted shard's batch (its state does not change)."""
        self.warehouse.execute(
            f"""UPDATE {SCHEMA}.batches SET status = ?, total_count = ?, completed_count = ?, failed_count = ?,
                    errors = ?, output_file_id = ?, error_file_id = ?, input_tokens = ?, output_tokens = ?,
                    polled_at = ?, finished_at = ?
                WHERE shard_id = ? AND state = 'submitted'""",
            [info.status, info.total, info.completed, info.failed, json.dumps(info.errors) if info.errors else None,
             info.output_file_id, info.error_file_id, info.input_tokens, info.output_tokens, _now(),
             _now() if info.terminal else None, shard_id],
        )

    def enqueued_tokens(self) -> dict[str, int]:
        """Estimated tokens of batches the provider is still working on, per model."""
        return {
            row["model"]: int(row["tokens"] or 0)
            for row in self.warehouse.rows(
                f"SELECT model, sum(est_tokens) AS tokens FROM {SCHEMA}.batches "
                f"WHERE state = 'submitted' AND coalesce(status, '') NOT IN {_TERMINAL_SQL} GROUP BY model"
            )
        }

    def live_job_names(self) -> set[str]:
        """Jobs with batches not yet collected (one query, however many jobs are waited for)."""
        return {row[0] for row in self.warehouse.execute(
            f"SELECT DISTINCT job_name FROM {SCHEMA}.batches WHERE state <> 'collected'").fetchall()}

    def progress(self, job_name: str | None) -> dict[str, Any]:
        """Requests done / total across live batches, and an estimated time left from the rate so far."""
        live, done, total, elapsed = self.warehouse.one(read_sql("ledger/progress.sql"), {"job": job_name})
        eta = round(elapsed / done * (total - done)) if done and total > done and elapsed else None
        return {"live_batches": int(live), "done": int(done), "total": int(total), "eta_seconds": eta}

    # -- results -----------------------------------------------------------------------------
    def insert_results(self, load_sql: str, files: list[str], sources: list[dict[str, str]]) -> None:
        """Load answer lines from downloaded files (each mapped to its batch and shard) into results,
        with `load_sql` (results.load_sql: the endpoint's own reader)."""
        if files:
            self.warehouse.execute(load_sql, {"files": files, "sources": json.dumps(sources)})

    def drop_repeated_answers(self, shard_ids: list[str]) -> None:
        """Keep one answer per request among those just loaded for these shards (a completed one
        first) when a batch's files repeated a custom_id. The check groups 64-bit hashes of the
        request hashes only; the exact pass runs only if two of them collide."""
        if not shard_ids:
            return
        scope = f"shard_id IN (SELECT unnest(CAST(? AS VARCHAR[])))"
        repeated = self.warehouse.scalar(
            f"SELECT count(*) FROM (SELECT hash(request_hash) FROM {SCHEMA}.results WHERE {scope} "
            "GROUP BY 1 HAVING count(*) > 1)", [shard_ids])
        if repeated:
            self.warehouse.execute(
                f"""DELETE FROM {SCHEMA}.results WHERE rowid IN (
                        SELECT rowid FROM {SCHEMA}.results WHERE {scope}
                        QUALIFY row_number() OVER (PARTITION BY request_hash
                                                   ORDER BY status = 'completed' DESC, rowid) > 1)""",
                [shard_ids])

    def answered_counts(self, shard_ids: list[str]) -> dict[str, int]:
        """Results per shard (answers and settled outcomes) among these shards."""
        return dict(self.warehouse.execute(
            f"SELECT shard_id, count(*) FROM {SCHEMA}.results WHERE shard_id IN (SELECT unnest(CAST(? AS VARCHAR[]))) "
            "GROUP BY shard_id", [shard_ids]).fetchall())

    def settle_unanswered(self, shard: Shard, status: str, code: str, message: str,
                          line_errors: list[dict[str, Any]] | None = None) -> None:
        """Give each request of the shard that got no answer line one final state (`status`, with an
        error code and message); a validation error naming a line lands on that line's request."""
        values = {"shard_id": shard["shard_id"], "batch_id": shard.get("batch_id"), "status": status,
                  "error_code": code, "error_message": message, "line_errors": json.dumps(line_errors or [])}
        for statement in _statements(read_sql("duckdb/missing_results.sql")):
            self.warehouse.execute(statement, {k: v for k, v in values.items() if f"${k}" in statement})

    def related_jobs(self, job_name: str) -> set[str]:
        """Jobs whose unfinished batches hold requests this job's rows need (itself, a renamed model's
        old job, another job that asked the same question first)."""
        return {
            row[0]
            for row in self.warehouse.execute(
                f"""SELECT DISTINCT b.job_name FROM {SCHEMA}.job_rows AS jr
                    JOIN {SCHEMA}.request_shards AS r USING (request_hash)
                    JOIN {SCHEMA}.batches AS b ON b.shard_id = r.shard_id
                    WHERE jr.job_name = ? AND b.state <> 'collected'""",
                [job_name],
            ).fetchall()
        }

    def unsent_lines(self, job_name: str) -> tuple[int, int]:
        """(live batches, lines in shards not yet sent) holding this job's requests."""
        row = self.warehouse.one(
            f"""SELECT count_if(b.state = 'submitted'),
                       coalesce(sum(b.line_count) FILTER (WHERE b.state IN ({', '.join(sql_literal(str(s)) for s in UNSENT)})), 0)
                FROM {SCHEMA}.batches AS b
                WHERE b.state <> 'collected' AND b.shard_id IN (
                    SELECT r.shard_id FROM {SCHEMA}.job_rows AS jr JOIN {SCHEMA}.request_shards AS r USING (request_hash)
                    WHERE jr.job_name = ?)""",
            [job_name],
        )
        return (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)

    # -- what publish leaves behind ----------------------------------------------------------
    def published_fingerprint(self, job_name: str) -> str | None:
        return self.warehouse.scalar(f"SELECT published_fingerprint FROM {SCHEMA}.jobs WHERE name = ?", [job_name])

    def retire_job(self, job_name: str) -> bool:
        """Forget a job that has nothing in flight (a removed dbt model): its rows table and per-row
        records go; runs, batches, requests and the results cache stay, so nothing is paid twice and
        spend history is kept. Returns False (and changes nothing) while a shard is not collected."""
        with self.warehouse.transaction():
            if self.warehouse.scalar(f"SELECT count(*) FROM {SCHEMA}.batches WHERE job_name = ? AND state <> 'collected'",
                                     [job_name]):
                return False
            self.warehouse.execute(f"DROP TABLE IF EXISTS {rows_table(job_name)}")
            for table in ("job_rows", "answered_rows", "job_counts", "jobs"):
                key = "name" if table == "jobs" else "job_name"
                self.warehouse.execute(f"DELETE FROM {SCHEMA}.{table} WHERE {key} = ?", [job_name])
        return True

    def remember_answers(self, job_name: str) -> None:
        """Record, per row of the job, the request whose completed answer it now shows (answered_rows).
        Call in the transaction that builds the output table, before building it."""
        for statement in _statements(read_sql("ledger/remember_answers.sql").format(rows=rows_table(job_name))):
            self.warehouse.execute(statement, {"job": job_name})

    def record_published(self, job_name: str, table: str, fingerprint: str) -> None:
        """The output table's per-status counts (so job_status agrees with it) and its fingerprint.
        Call in the transaction that built the table."""
        self.warehouse.execute(f"DELETE FROM {SCHEMA}.job_counts WHERE job_name = ?", [job_name])
        self.warehouse.execute(
            f"INSERT INTO {SCHEMA}.job_counts SELECT ?, status, count(*), sum(cost_usd) FROM {table} GROUP BY status",
            [job_name],
        )
        self.warehouse.execute(
            f"UPDATE {SCHEMA}.jobs SET published_fingerprint = ?, table_created = true WHERE name = ?",
            [fingerprint, job_name])

    # -- reports -----------------------------------------------------------------------------
    def statuses(self, job_name: str) -> dict[str, int]:
        return {
            row["status"]: int(row["row_count"])
            for row in self.warehouse.rows(
                f"SELECT status, row_count FROM {SCHEMA}.job_counts WHERE job_name = ? ORDER BY status", [job_name])
        }

    def batches_of(self, job_name: str) -> list[Shard]:
        return self.warehouse.rows(
            f"""SELECT shard_id, batch_id, state, status, line_count, total_count, completed_count, failed_count,
                       CAST(errors AS VARCHAR) AS errors
                FROM {SCHEMA}.batches WHERE job_name = ? ORDER BY created_at, shard_id""",
            [job_name],
        )


def in_live_shard_sql(request_hash: str) -> str:
    """A subquery that has a row when the request `request_hash` (an SQL expression) sits in a shard not
    yet collected. A request is in at most one such shard, so any of its memberships will do."""
    return (f"SELECT 1 FROM {SCHEMA}.request_shards AS rs JOIN {SCHEMA}.batches AS b ON b.shard_id = rs.shard_id "
            f"WHERE rs.request_hash = {request_hash} AND b.state <> 'collected'")


def _statements(script: str) -> list[str]:
    import duckdb

    return [s.query for s in duckdb.extract_statements(script)]


def _now() -> datetime:
    return datetime.now(timezone.utc)


__all__ = ["IllegalTransition", "Ledger", "ShardState", "UNSENT"]
