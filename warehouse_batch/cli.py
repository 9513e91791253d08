"""`warehouse-batch`: the command line, one command per function of the Python API.

Exit codes: 0 success; 1 unexpected error; 2 usage or configuration error (or the warehouse stayed
busy); 3 invalid job, query or rows (nothing was sent); 4 provider error, or a job's step failed
(re-run to resume); 5 finished, but some rows did not complete (see their status in the output
table); 6 `--wait --timeout` ran out with batches still running; 130 stopped by SIGINT/SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from warehouse_batch import api
from warehouse_batch.cost import usd
from warehouse_batch.errors import (
    JobsFailedError,
    RowsFailedError,
    StoppedError,
    TimedOutError,
    WarehouseBatchError,
    interrupt,
    is_interrupt,
)
from warehouse_batch.progress import NullReporter, RichReporter
from warehouse_batch.runner import Report
from warehouse_batch.warehouses import DEFAULT_LOCK_TIMEOUT

out = Console()
err = Console(stderr=True)


def _db_option(fn: Callable) -> Callable:
    return click.option(
        "--db",
        default=lambda: os.environ.get("WAREHOUSE_BATCH_DB", api.DEFAULT_DB),
        show_default="$WAREHOUSE_BATCH_DB or warehouse.duckdb",
        help="The warehouse: a DuckDB file (created if missing) or postgresql://user[:password]@host:port/dbname.",
    )(fn)


def _common(fn: Callable) -> Callable:
    fn = click.option("--lock-timeout", type=float, default=DEFAULT_LOCK_TIMEOUT, show_default=True,
                      help="Seconds to wait (with back-off) while another process holds the database.")(fn)
    # Not exists=True: a missing file is reported like every other bad price file (and as JSON with --json).
    fn = click.option("--prices", type=click.Path(dir_okay=False), default=None,
                      help="JSON price list overriding the shipped one (default: $WAREHOUSE_BATCH_PRICES).")(fn)
    fn = click.option("--threads", type=int, default=None, help="DuckDB threads (default: all cores).")(fn)
    fn = click.option("--memory-limit", default=None, help="DuckDB memory limit, e.g. 2GB (default: 256MB; DuckDB spills to the work dir beyond it).")(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Print a JSON report on stdout (for scripts).")(fn)
    fn = click.option(
        "--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Where shard and result files go (default: <db>.warehouse_batch/ beside the database).",
    )(fn)
    return _db_option(fn)


def _provider_options(fn: Callable) -> Callable:
    fn = click.option("--concurrency", type=int, default=4, show_default=True,
                      help="Provider calls (uploads, creates, polls, downloads) in flight at once.")(fn)
    fn = click.option("--http-timeout", type=float, default=None,
                      help="Seconds before one API call times out (default 120); timeouts are retried safely.")(fn)
    return click.option(
        "--base-url", envvar="OPENAI_BASE_URL", default=None,
        help="API base URL, e.g. http://127.0.0.1:8000/v1 for the emulator (default: $OPENAI_BASE_URL, else OpenAI).",
    )(fn)


def _wait_options(fn: Callable) -> Callable:
    fn = click.option("--timeout", type=float, default=None, help="With --wait: stop waiting after this many seconds.")(fn)
    fn = click.option("--poll-interval", type=float, default=5.0, show_default=True,
                      help="With --wait: seconds between status checks (backs off up to 60 s).")(fn)
    return click.option("--wait", is_flag=True, help="Keep polling until every batch has finished, then load results.")(fn)


def _job_options(fn: Callable) -> Callable:
    options = [
        click.option("--query", help="The job's SELECT (instead of, or overriding, a job file)."),
        click.option("--name", help="Job name; also the output table unless --table is set."),
        click.option("--model", help="Model for every row without a model column."),
        click.option("--endpoint", help="Batch endpoint (default /v1/chat/completions)."),
        click.option("--system", help="System prompt."),
        click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
                     help="Request parameter, VALUE parsed as JSON when it can be (repeatable): --param temperature=0"),
        click.option("--table", help="Output table (default: the job name)."),
        click.option("--completion-window", help="Batch completion window (only 24h exists)."),
        click.option("--metadata", "metadata", multiple=True, metavar="KEY=VALUE", help="Batch metadata (repeatable)."),
        click.option("--max-requests-per-shard", type=int, help="Lines per shard file (≤ 50,000)."),
        click.option("--max-bytes-per-shard", type=int, help="Bytes per shard file (≤ 200 MB)."),
        click.option("--max-attempts", type=int, help="Sends per request, retries included (default 3)."),
        click.option("--max-cost-usd", type=float,
                     help="Refuse the run, before sending, if its estimated cost (see --cost-guard) is higher."),
        click.option("--cost-guard", type=click.Choice(["expected", "upper_bound"]),
                     help="Which cost --max-cost-usd and the daily budget compare (default: expected)."),
        click.option("--max-requests", type=int, help="Refuse the run, before sending, if it would send more requests."),
        click.option("--max-enqueued-tokens", type=int,
                     help="Per model: submit shards only while estimated enqueued tokens stay under this."),
        click.option("--no-cache", "cache", flag_value=False, default=None,
                     help="Send fresh requests even where an identical request was answered before."),
        click.option("--provider", help="Batch provider: openai (default) or azure (Azure OpenAI global batch)."),
        click.option("--price-model", help="The priced model behind --model (Azure: model is the deployment name)."),
        click.option("--enqueued-token-quota", type=int,
                     help="The provider's enqueued-token quota per model, if known (else learned from refusals)."),
        click.option("--input-expires-after", help="Uploaded shard files expire after this (seconds or 14d; default 14d)."),
        click.option("--output-expires-after", help="Result files expire after this (seconds or 14d; default 14d)."),
        click.option("--keep-input-files", "delete_input_files", flag_value=False, default=None,
                     help="Keep shard files (in the work dir, and at the provider until they expire) after their results are loaded."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return click.argument("job_file", required=False, type=click.Path(dir_okay=False, path_type=Path))(fn)


def _overrides(kw: dict[str, Any]) -> dict[str, Any]:
    params = {}
    for item in kw.pop("params", ()) or ():
        key, value = _pair(item, "--param")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    metadata = dict(_pair(item, "--metadata") for item in kw.pop("metadata", ()) or ())
    overrides = {k: v for k, v in kw.items() if v is not None}
    if params:
        overrides["params"] = params
    if metadata:
        overrides["metadata"] = metadata
    return overrides


def _pair(item: str, flag: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=flag)
    return key.strip(), value


def _load(job_file: Path | None, overrides: dict[str, Any]) -> Any:
    if job_file is not None:
        return api.load_job(job_file, **overrides)
    if "query" not in overrides:
        raise click.UsageError("give a JOB_FILE, or --query and --name")
    from warehouse_batch.jobs import Job

    return Job.from_options(overrides)


def _reporter(as_json: bool) -> Any:
    return NullReporter() if as_json else RichReporter(err)


def _handle(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into a message on stderr and the documented exit code; with --json,
    also `{"error": {"type", "message", "exit_code"}}` on stdout."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # SIGTERM stops as cleanly as Ctrl-C; both are set explicitly, since a parent (a scheduler, a
        # test runner) may have left SIGINT ignored and the command would then never stop.
        previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return fn(*args, **kwargs)
        except WarehouseBatchError as exc:
            # Scripts parse stdout: give them the error, not an empty string. Exit 5 comes after the
            # report was printed (its statuses say what failed): one JSON document, not two.
            if kwargs.get("as_json") and not isinstance(exc, _AFTER_REPORTS):
                click.echo(json.dumps({"error": {"type": type(exc).__name__, "message": str(exc),
                                                 "exit_code": exc.exit_code}}, indent=2))
            # escape: a custom_id or path in the message may contain [brackets] that rich would read as markup
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
            sys.exit(exc.exit_code)
        except BaseException as exc:
            if not is_interrupt(exc):
                raise
            err.print("[bold red]stopped[/] (interrupted); what was recorded stays, run the same command to resume",
                      highlight=False)
            sys.exit(StoppedError.exit_code)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    return wrapper


#: Raised once the reports are printed: with --json, stdout already holds the one JSON document.
_AFTER_REPORTS = (RowsFailedError, JobsFailedError, TimedOutError)


# -- output -------------------------------------------------------------------------------------
def _print_reports(reports: list[Report], as_json: bool, *, check_failed: bool = False, check_errors: bool = True) -> None:
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        for report in reports:
            _print_report(report)
    failed = [r for r in reports if r.error] if check_errors else []
    if failed:
        raise JobsFailedError(
            f"{len(failed)} job(s) failed and were skipped (the others went on): "
            + "; ".join(f"{r.job}: {r.error}" for r in failed)
        )
    timed_out = [r for r in reports if r.timed_out]
    if timed_out:
        raise TimedOutError(
            f"--timeout ran out while {', '.join(str(r.job) for r in timed_out)} still had batches running; their "
            "rows are pending in the output table. `warehouse-batch collect JOB` or `sync` continues later"
        )
    if check_failed and any(r.unsuccessful for r in reports):
        n = sum(r.unsuccessful for r in reports)
        raise RowsFailedError(f"{n} row(s) did not complete; their status and error are in the output table")


def _print_report(report: Report) -> None:
    if report.counts is not None:
        c = report.counts
        title = f"plan for {report.job} (dry run, nothing sent)" if report.dry_run else f"run {report.run_id} of {report.job}"
        if c.sample_size is not None:
            title += f" — a sample of {c.sample_size:,} request(s)"
        table = Table(title=title, show_header=False, title_justify="left")
        for label, value in [
            ("rows", f"{c.rows:,}"), ("distinct requests", f"{c.requests:,}"),
            ("already answered (cached)", f"{c.cached:,}"), ("in flight", f"{c.in_flight:,}"),
            ("to submit", f"{c.to_submit:,}"), ("shards", f"{c.shards:,}"),
            ("input tokens to send", f"{c.est_input_tokens:,} ({c.input_tokens_method or 'exact'})"),
            ("output tokens, expected", f"{c.est_output_tokens_expected:,} ({c.output_tokens_method})"),
            ("output tokens, upper bound", f"{c.est_output_tokens_upper_bound:,} (max_tokens, else the schema's "
                                           "bound, else 256)"),
            ("cost, expected (batch prices)", usd(c.cost_usd_expected)),
            ("cost, upper bound", usd(c.cost_usd_upper_bound)),
        ]:
            table.add_row(label, value)
        out.print(table)
    if report.dry_run:
        return
    if report.sample is not None:
        _print_sample(report.sample)
    rows = ", ".join(f"{n:,} {s}" for s, n in sorted(report.statuses.items())) or "no rows published yet"
    out.print(f"[bold]{report.job}[/] → table [cyan]{report.table}[/]: {rows}", highlight=False)
    if report.error:
        out.print(f"[red]failed:[/] {escape(report.error)}", highlight=False, markup=True, soft_wrap=True)

    progress = report.progress or {}
    if progress.get("live_batches"):
        eta = f", about {progress['eta_seconds']:,} s left" if progress.get("eta_seconds") is not None else ""
        out.print(f"{progress['live_batches']} batch(es) running: {progress['done']:,}/{progress['total']:,} "
                  f"requests done{eta}", highlight=False)
    if report.estimates and report.counts is None:
        table = Table("run", "requests", "input tokens est. → actual", "output tokens exp. / max → actual",
                      "cost exp. / max → actual", title="estimate vs actual", title_justify="left")
        for e in report.estimates:
            table.add_row(
                str(e["run_id"]) + (f" (sample of {e['sample_size']:,})" if e["sample_size"] else ""),
                f"{e['requests_answered']:,}/{e['requests_sent'] or 0:,}",
                f"{_n(e['est_input_tokens'])} → {_n(e['input_tokens'])}",
                f"{_n(e['est_output_expected'])} / {_n(e['est_output_upper_bound'])} → {_n(e['output_tokens'])}",
                f"{usd(e['est_cost_usd_expected'])} / {usd(e['est_cost_usd_upper_bound'])} → "
                + ("-" if e["cost_usd"] is None else usd(e["cost_usd"])),
            )
        out.print(table)
    if report.batches:
        table = Table("shard", "batch", "state", "status", "lines", "done", "failed", title_justify="left")
        for b in report.batches:
            table.add_row(b["shard_id"], b["batch_id"] or "-", b["state"], b["status"] or "-", str(b["line_count"]),
                          str(b["completed_count"] or 0), str(b["failed_count"] or 0))
        out.print(table)
        for b in report.batches:
            if b["errors"]:
                errors = json.loads(b["errors"])
                out.print(f"[red]batch {b['batch_id']} failed validation ({len(errors)} error(s)):[/]")
                for e in errors[:5]:
                    line = f"line {e['line']}: " if e.get("line") else ""
                    out.print(f"  {line}{e.get('code')}: {e.get('message')}", highlight=False, markup=False)


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _print_sample(sample: dict[str, Any]) -> None:
    out.print(
        f"[bold]sample[/]: {sample['answered']:,} of {sample['requests']:,} request(s) answered, actual cost "
        f"{usd(sample['actual_cost_usd'])} ({sample['input_tokens']:,} input + {sample['output_tokens']:,} output "
        f"tokens). The full job ({sample['full_requests']:,} requests to send): extrapolated "
        f"{'unknown' if sample['extrapolated_cost_usd'] is None else usd(sample['extrapolated_cost_usd'])}, "
        f"estimated {usd(sample['full_cost_usd_expected'])} expected / {usd(sample['full_cost_usd_upper_bound'])} "
        "at most. The other rows are pending: run the job again to send them (the sample is not paid twice).",
        highlight=False,
    )
    if sample["answers"]:
        columns = [c for c in sample["answers"][0] if c not in ("input_tokens", "output_tokens", "attempts")]
        table = Table(*columns, title="a few answers of the sample", title_justify="left")
        for row in sample["answers"]:
            table.add_row(*(escape(_short(row[c])) for c in columns))
        out.print(table)


def _short(value: Any, width: int = 60) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


# -- commands -----------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="warehouse-batch")
def main() -> None:
    """Run LLM workloads from SQL through the OpenAI Batch API (half price), tracked in your warehouse.

    \b
    Quick start (no API key needed, runs on the built-in emulator):
      warehouse-batch demo

    Exit codes: 0 ok, 1 unexpected error, 2 usage/configuration, 3 invalid job or rows (nothing sent),
    4 provider error (re-run to resume), 5 finished with some rows not completed.
    """


def _settings(kw: dict[str, Any]) -> dict[str, Any]:
    """Pop the common flags (database, provider, files) into the API's settings."""
    settings = {"reporter": _reporter(kw.pop("as_json"))}
    for key in ("work_dir", "prices", "lock_timeout", "memory_limit", "threads", "base_url", "http_timeout", "concurrency",
                "daily_budget_usd"):
        if key in kw:
            settings[key] = kw.pop(key)
    return settings


@main.command()
@_job_options
@_common
@_provider_options
@_wait_options
@click.option("--sample", type=int, default=None, metavar="N",
              help="Send a seeded sample of N requests (stratified by model) first, wait, show answers and cost, stop.")
@click.option("--seed", type=int, default=0, show_default=True, help="With --sample: which requests are picked.")
@click.option("--daily-budget-usd", type=float, default=None,
              help="Refuse the run if today's spend plus its cost would exceed this "
                   "(default: $WAREHOUSE_BATCH_DAILY_BUDGET_USD, else `warehouse-batch budget`).")
@_handle
def run(job_file: Path | None, db: str, wait: bool, poll_interval: float, timeout: float | None, sample: int | None,
        seed: int, **kw: Any) -> None:
    """Compile a job's query into batches and submit them.

    \b
    Examples:
      warehouse-batch run examples/reviews/review_sentiment.sql --db reviews.duckdb --wait
      warehouse-batch run job.sql --model gpt-4o --param temperature=0 --max-cost-usd 5
      warehouse-batch run job.sql --sample 20        # 20 requests first: answers, cost, extrapolated cost
      warehouse-batch run --name greet --model gpt-4o-mini --query "SELECT 1 AS custom_id, 'Hi' AS prompt"

    Without --wait it returns once every batch is submitted; then use `collect` or `sync`.
    Re-running an unchanged job sends nothing: answers are cached by request (also a --sample's).
    """
    as_json = kw["as_json"]
    settings = _settings(kw)
    job = _load(job_file, _overrides(kw))
    report = api.run(job, db, wait=wait or sample is not None, poll_interval=poll_interval, timeout=timeout,
                     sample=sample, seed=seed, **settings)
    # A sample leaves the other rows pending on purpose: only its own failures count.
    _print_reports([report], as_json, check_failed=wait and sample is None)


@main.command()
@_job_options
@_common
@_handle
def plan(job_file: Path | None, db: str, **kw: Any) -> None:
    """Dry run: validate the rows; count distinct requests, cache hits, shards, tokens and cost. Sends nothing.

    \b
    Example:
      warehouse-batch plan examples/reviews/review_sentiment.sql --db reviews.duckdb
    """
    as_json = kw["as_json"]
    settings = _settings(kw)
    job = _load(job_file, _overrides(kw))
    _print_reports([api.plan(job, db, **settings)], as_json)


@main.command()
@click.argument("job_name", required=False)
@_common
@_handle
def status(job_name: str | None, db: str, **kw: Any) -> None:
    """Show every job (or one): rows by status and each batch with its counts. No provider calls.

    \b
    Example:
      warehouse-batch status --db reviews.duckdb
      warehouse-batch status review_sentiment --json | jq '.[0].statuses'
    """
    as_json = kw["as_json"]
    _print_reports(api.status(db, job_name, **_settings(kw)), as_json, check_errors=False)


@main.command()
@click.argument("job_name")
@_common
@_provider_options
@_wait_options
@_handle
def collect(job_name: str, db: str, wait: bool, poll_interval: float, timeout: float | None, **kw: Any) -> None:
    """Poll a job's batches, load finished ones and republish its output table.

    \b
    Example:
      warehouse-batch collect review_sentiment --db reviews.duckdb --wait
    """
    as_json = kw["as_json"]
    report = api.collect(job_name, db, wait=wait, poll_interval=poll_interval, timeout=timeout, **_settings(kw))
    _print_reports([report], as_json, check_failed=wait)


@main.command()
@click.option("--retry", "retry_", is_flag=True, help="Also send expired, cancelled and transiently failed requests again.")
@_common
@_provider_options
@_wait_options
@_handle
def sync(db: str, retry_: bool, wait: bool, poll_interval: float, timeout: float | None, **kw: Any) -> None:
    """Advance every job: submit unsent shards, collect finished batches, republish. Good for cron.

    \b
    Example (every 10 minutes):
      */10 * * * * warehouse-batch sync --retry --db /data/warehouse.duckdb --json >> sync.log
    """
    as_json = kw["as_json"]
    reports = api.sync(db, wait=wait, retry=retry_, poll_interval=poll_interval, timeout=timeout, **_settings(kw))
    _print_reports(reports, as_json, check_failed=wait)


@main.command()
@click.argument("job_name")
@_common
@_provider_options
@_wait_options
@_handle
def retry(job_name: str, db: str, wait: bool, poll_interval: float, timeout: float | None, **kw: Any) -> None:
    """Send a job's expired, cancelled and transiently failed requests again, in new shards.

    Requests that failed for a reason of their own (too long, invalid parameter) are not resent:
    change the job instead. Each request is sent at most max_attempts times (job option, default 3).

    \b
    Example:
      warehouse-batch retry review_sentiment --db reviews.duckdb --wait
    """
    as_json = kw["as_json"]
    report = api.retry(job_name, db, wait=wait, poll_interval=poll_interval, timeout=timeout, **_settings(kw))
    _print_reports([report], as_json, check_failed=wait)


@main.command()
@click.argument("amount", type=float, required=False)
@click.option("--clear", is_flag=True, help="Remove the stored budget.")
@_common
@_handle
def budget(amount: float | None, clear: bool, db: str, **kw: Any) -> None:
    """Show or set the warehouse's daily budget (USD per UTC day, all jobs) and today's spend.

    A run whose cost (expected, or the upper bound with --cost-guard upper_bound) plus today's
    spend — answers received today and the expected cost of requests in flight — would exceed the
    budget is refused before anything is sent. Stored in the warehouse (warehouse_batch.settings),
    so dbt and every client use it; --daily-budget-usd or $WAREHOUSE_BATCH_DAILY_BUDGET_USD override it.

    \b
    Examples:
      warehouse-batch budget 25 --db reviews.duckdb     # at most $25 a day
      warehouse-batch budget --db reviews.duckdb        # today's spend and what is left
    """
    as_json = kw["as_json"]
    info = api.budget(db, amount, clear=clear, **_settings(kw))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    limit = "none" if info["daily_budget_usd"] is None else f"{usd(info['daily_budget_usd'])} (from {info['source']})"
    out.print(f"daily budget: {limit}\nspent today (UTC): {usd(info['spent_today_usd'])}, in flight (expected): "
              f"{usd(info['in_flight_usd'])}" + ("" if info["remaining_usd"] is None
                                                 else f"\nremaining today: {usd(info['remaining_usd'])}"),
              highlight=False)


@main.command()
@click.argument("job_name")
@_common
@_provider_options
@_handle
def cancel(job_name: str, db: str, **kw: Any) -> None:
    """Cancel a job's live batches. Answers already finished are kept (and were paid for).

    \b
    Example:
      warehouse-batch cancel review_sentiment --db reviews.duckdb
    """
    as_json = kw["as_json"]
    _print_reports([api.cancel(job_name, db, **_settings(kw))], as_json)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback by default).")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on; 0 picks a free one (the printed base URL says which).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="Keep files and batches here, so a restarted emulator continues where it stopped.")
@click.option("--validation-delay", type=float, default=0.0, show_default=True, help="Seconds a batch validates.")
@click.option("--request-time", type=float, default=0.0, show_default=True, help="Seconds each request takes.")
@click.option("--time-scale", type=float, default=1.0, show_default=True, help="Emulated seconds per real second.")
@click.option("--completion-window", "completion_window_seconds", type=int, default=86400, show_default=True,
              help="Seconds until a batch expires.")
@click.option("--error-rate", type=float, default=0.0, show_default=True, help="Fraction of requests answered HTTP 500.")
@click.option("--refusal-rate", type=float, default=0.0, show_default=True, help="Fraction of answers refused.")
@click.option("--truncate-rate", type=float, default=0.0, show_default=True,
              help="Fraction of answers cut off (finish_reason length).")
@click.option("--invalid-json-rate", type=float, default=0.0, show_default=True,
              help="Fraction of structured answers that are not JSON.")
@click.option("--seed", type=int, default=0, show_default=True, help="Changes which requests the rates pick.")
@click.option("--flavor", type=click.Choice(["openai", "azure"]), default="openai", show_default=True,
              help="azure: also serve /openai/v1/... and /openai/...?api-version=, with Azure's limits.")
@click.option("--api-key", default=None, help="Accept only this key (default: any non-empty key).")
@click.option("--no-auth", "require_auth", flag_value=False, default=True, help="Serve /v1 without an API key.")
@click.option("--models", "supported_models", default=None, metavar="A,B",
              help="Models the Batch API accepts (dated snapshots and ft: fine-tunes too); '@openai' = OpenAI's "
                   "batch models, '*' = any. Default: @openai.")
@click.option("--enqueued-token-limit", type=int, default=None, help="Enqueued-token quota per model (default: none).")
@click.option("--token-limit-style", type=click.Choice(["async", "fail-fast"]), default="async", show_default=True,
              help="Over quota: the batch fails later (async) or create answers HTTP 400 (fail-fast).")
@click.option("--file-not-found-rate", type=float, default=0.0, show_default=True,
              help="Fraction of batch creations told their (existing) input file cannot be found.")
@click.option("--file-not-found-style", type=click.Choice(["async", "sync"]), default="async", show_default=True,
              help="Spurious 'Cannot find file': the batch fails later (async) or create answers HTTP 400 (sync).")
@click.option("--output-retention", type=int, default=30 * 86400, show_default=True,
              help="Seconds until result files are deleted, unless a batch sets output_expires_after.")
@click.option("--max-embedding-inputs", "max_embedding_inputs_per_batch", type=int, default=50_000,
              show_default=True, help="Embedding inputs across all requests of one /v1/embeddings batch.")
@click.option("--webhook-url", default=None, help="POST a signed event here when a batch ends (e.g. a worker's "
              "http://127.0.0.1:8080/webhooks/openai).")
@click.option("--webhook-secret", envvar="OPENAI_WEBHOOK_SECRET", default=None,
              help="whsec_... secret the webhooks are signed with (default: $OPENAI_WEBHOOK_SECRET).")
def emulator(host: str, port: int, state_dir: str | None, supported_models: str | None, **timing: Any) -> None:
    """Serve an offline emulator of the OpenAI Files + Batch API (and chat/responses/embeddings).

    \b
    Example:
      warehouse-batch emulator --port 8000 &
      OPENAI_API_KEY=emulator warehouse-batch run job.sql --base-url http://127.0.0.1:8000/v1 --wait
    """
    from warehouse_batch.emulator import EmulatorConfig, serve

    if supported_models is not None:
        timing["supported_models"] = tuple(m.strip() for m in supported_models.split(",") if m.strip())
    serve(EmulatorConfig(state_dir=state_dir, **timing), host=host, port=port)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface for the status page, metrics and webhooks.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on (0 picks a free one).")
@click.option("--check-interval", type=float, default=5.0, show_default=True,
              help="Seconds between looks at warehouse_batch.job_definitions.")
@click.option("--poll-interval", type=float, default=5.0, show_default=True,
              help="First wait before polling the provider; backs off x1.5 while nothing finishes.")
@click.option("--max-poll-interval", type=float, default=60.0, show_default=True, help="Longest wait between polls.")
@click.option("--allow-definer", "allowed", multiple=True, metavar="NAME",
              help="Only run definitions whose defined_by is one of these (repeat; PostgreSQL: role names; "
                   "default: anyone).")
@click.option("--definer-daily-budget-usd", type=float, default=None,
              help="Each definer's spend per UTC day; a definition that would exceed it is refused in its row.")
@click.option("--definer-budget", "definer_budgets", multiple=True, metavar="NAME=USD",
              help="One definer's own daily budget (repeat).")
@click.option("--default-definer", default=None,
              help="DuckDB: defined_by of rows that leave it empty (default: the worker's OS user). "
                   "Not on PostgreSQL, where the definer is the role that wrote the row.")
@click.option("--daily-budget-usd", type=float, default=None,
              help="The warehouse's daily budget, all jobs (default: $WAREHOUSE_BATCH_DAILY_BUDGET_USD or `budget`).")
@_common
@_provider_options
@_handle
def worker(db: str, host: str, port: int, check_interval: float, poll_interval: float, max_poll_interval: float,
           allowed: tuple[str, ...], definer_daily_budget_usd: float | None, definer_budgets: tuple[str, ...],
           default_definer: str | None, **kw: Any) -> None:
    """Run the jobs analysts define as rows of warehouse_batch.job_definitions (docs/worker.md).

    Serves the status page (/), /healthz, /metrics and POST /webhooks/openai (secret from
    $OPENAI_WEBHOOK_SECRET). Stops cleanly on SIGTERM; a restart resumes without paying twice.

    \b
    Example:
      warehouse-batch worker --db team.duckdb --port 8080 --allow-definer alice --definer-daily-budget-usd 20
      duckdb team.duckdb "INSERT INTO warehouse_batch.job_definitions (name, query, options)
        VALUES ('sentiment', 'SELECT id AS custom_id, text AS prompt FROM reviews', '{\"model\": \"gpt-4o-mini\"}')"
      warehouse-batch worker --db postgresql://wb_worker@db.internal/analytics --allow-definer alice
      psql analytics -c "SELECT warehouse_batch.define_job('sentiment', 'SELECT ...', '{\"model\": \"gpt-4o-mini\"}')"
    """
    from warehouse_batch.cost import budget_value
    from warehouse_batch.definitions import Policy
    from warehouse_batch.worker.main import serve
    from warehouse_batch.worker.service import Timing

    budgets = {}
    for item in definer_budgets:
        name, value = _pair(item, "--definer-budget")
        budgets[name] = budget_value(value, "--definer-budget")
    policy = Policy(allowed_definers=frozenset(allowed) if allowed else None,
                    definer_daily_budget_usd=definer_daily_budget_usd, definer_budgets=budgets)
    settings = _settings(kw)
    settings["reporter"] = NullReporter()  # the worker logs; progress bars would fill its log
    with api.open_runner(db, **settings) as runner:
        serve(runner, host=host, port=port, policy=policy, default_definer=default_definer,
              timing=Timing(check_interval=check_interval, poll_interval=poll_interval,
                            max_poll_interval=max_poll_interval))


@main.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("demo"),
              show_default=True, help="Where the demo database and files go.")
# Not $WAREHOUSE_BATCH_DB: the demo writes tables named reviews and review_sentiment, so it only
# goes to a warehouse named on its command line.
@click.option("--db", default=None, help="Run the demo in this warehouse instead of DIR/reviews.duckdb "
                                         "(e.g. postgresql://user@127.0.0.1:5432/dbname).")
@_handle
def demo(directory: Path, db: str | None) -> None:
    """Run the example job end to end on the built-in emulator: no API key, no network.

    Creates DIR/reviews.duckdb (or the table reviews in --db) from examples/reviews/reviews.csv,
    starts the emulator in-process, runs the review_sentiment job with --wait, and prints the
    joined result.

    \b
    Examples:
      warehouse-batch demo --dir /tmp/wb-demo
      warehouse-batch demo --db postgresql://me@127.0.0.1:5432/analytics
    """
    from warehouse_batch.demo import run_demo

    run_demo(directory, console=out, reporter=RichReporter(err), db=db)


@main.group()
def dbt() -> None:
    """The dbt integration (docs/dbt.md)."""


@dbt.command("package-path")
@click.option("--yml", is_flag=True, help="Print a packages.yml that installs it instead of the bare path.")
@_handle
def dbt_package_path(yml: bool) -> None:
    """Print where the installed dbt package is, for packages.yml `- local: <path>`.

    \b
    Example:
      warehouse-batch dbt package-path --yml > packages.yml && dbt deps
    """
    from warehouse_batch.dbt.package import package_path, packages_yml

    click.echo(packages_yml() if yml else str(package_path()), nl=not yml)


def _dbt_postgres_options(fn: Callable) -> Callable:
    """The library's settings for `dbt build` / `dbt sync` on dbt-postgres (the plugin settings of dbt-duckdb)."""
    fn = click.option("--daily-budget-usd", type=float, default=None,
                      help="The project's spending limit per UTC day (default: $WAREHOUSE_BATCH_DAILY_BUDGET_USD, "
                           "else the warehouse's).")(fn)
    fn = click.option("--poll-interval", type=float, default=5.0, show_default=True,
                      help="Seconds between polls while a model waits (its wait_timeout).")(fn)
    fn = click.option("--lock-timeout", type=float, default=DEFAULT_LOCK_TIMEOUT, show_default=True,
                      help="Seconds to wait while another warehouse_batch process writes the warehouse.")(fn)
    fn = click.option("--prices", type=click.Path(dir_okay=False), default=None, help="JSON price list.")(fn)
    fn = click.option("--work-dir", type=click.Path(file_okay=False), default=None,
                      help="Shard and result files (default: <project>/.warehouse_batch/<host>_<port>_<db>).")(fn)
    fn = _provider_options(fn)
    return click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED)(fn)


def _dbt_settings(kw: dict[str, Any], submit: bool) -> tuple[Any, float]:
    from warehouse_batch.dbt.sync import Settings

    lock_timeout = kw.pop("lock_timeout")
    return Settings(submit=submit, **{k: v for k, v in kw.items() if v is not None}), lock_timeout


def _say(line: str) -> None:
    err.print(escape(line), highlight=False, soft_wrap=True)


def _warn(line: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)


_DBT_PASSTHROUGH = {"ignore_unknown_options": True, "allow_interspersed_args": False}


@dbt.command("build", context_settings=_DBT_PASSTHROUGH)
@click.option("--submit/--no-submit", default=lambda: os.environ.get("WAREHOUSE_BATCH_SUBMIT", "true"),
              show_default="$WAREHOUSE_BATCH_SUBMIT or true",
              help="--no-submit: collect and rebuild, write new requests to shards but send nothing (no key needed).")
@_dbt_postgres_options
@_handle
def dbt_build(dbt_args: tuple[str, ...], submit: bool, **kw: Any) -> None:
    """dbt build for dbt-postgres projects with llm_batch models: builds their upstream, runs them
    through the library against the target's PostgreSQL, then builds them and their downstream.

    \b
    This command's options come first, then dbt's (passed through):
      warehouse-batch dbt build --no-submit -s +review_sentiment+ --target postgres
    """
    from warehouse_batch.dbt import postgres_build

    settings, lock_timeout = _dbt_settings(kw, submit)
    postgres_build.build(list(dbt_args), settings, lock_timeout=lock_timeout, say=_say, warn=_warn)


@dbt.command("sync", context_settings=_DBT_PASSTHROUGH)
@click.option("--submit", is_flag=True, help="Also send shards held by a --no-submit build.")
@click.option("--retry", "retry_", is_flag=True, help="Also resend retryable failures (within max_attempts).")
@_dbt_postgres_options
@_handle
def dbt_sync(dbt_args: tuple[str, ...], submit: bool, retry_: bool, **kw: Any) -> None:
    """For cron between builds (dbt-postgres): collect the llm_batch models' finished batches and
    republish their tables. Sends nothing new; downstream models update on the next dbt build.

    \b
      warehouse-batch dbt sync --target postgres
    """
    from warehouse_batch.dbt import postgres_build

    settings, lock_timeout = _dbt_settings(kw, submit or retry_)
    postgres_build.sync(list(dbt_args), settings, retry=retry_, lock_timeout=lock_timeout, say=_say, warn=_warn)


if __name__ == "__main__":
    main()
