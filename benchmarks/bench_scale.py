#!/usr/bin/env python
"""How time and peak memory grow with rows: every command at 100k, 1M and 10M rows, one process each.

    .venv/bin/python benchmarks/bench_scale.py                          # 100k, 1M, 10M rows
    .venv/bin/python benchmarks/bench_scale.py --sizes 20000,100000     # a quick look
    .venv/bin/python benchmarks/bench_scale.py --plot scale.png --json scale.json

Per size, each step runs in a fresh process against the same warehouse file, at the library's
default settings (DuckDB memory_limit `DEFAULT_MEMORY_LIMIT`, spilling to the work directory):

* `plan`    — `Runner.plan(job)`: compile, validate, count, estimate (a dry run; nothing stays)
* `run`     — `Runner.run(job)`: compile → persist → shards → submit (to `_data.LocalProvider`, a
              stand-in that hands out ids) → publish (every row pending)
* (set-up, not timed: one synthetic output file per shard in the real chat.completion batch shape,
  0.5% status-400 error lines, 0.1% truncated answers; the shard files are deleted to save disk)
* `collect` — `Runner.collect(job)`: poll, download (a hard link), load, publish the typed table
* `rerun`   — `Runner.run(job, wait=True)` of the unchanged job: must send 0 requests
* `retry`   — `Runner.retry(job)`: nothing retryable (status 400 is terminal), shards nothing
* `sync`    — `Runner.collect()` over every job with nothing to do

Inside each command, library functions are wrapped (in the benchmark process only) to report each
part's seconds and peak RSS: compile (or reuse of the rows table), stage counts and estimates,
persist, plan_shards, write_shards, record_shards, submit, load, publish.

It prints seconds and peak RSS (VmHWM of the step's process) per step and size, and the ratio of
the largest size to 1M (or to the second-largest size). It exits 1 when any step's peak RSS at the
largest size exceeds `--max-rss` MB, or grows beyond `--growth` × its peak at the reference size:
memory must not grow with rows. Times are reported, never judged.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _data  # noqa: E402
import _harness as h  # noqa: E402

STEPS = ["plan", "run", "collect", "rerun", "retry", "sync"]
MARK = h.MARK


#: (module, owner, attribute, label) of the parts of a command whose time and peak RSS are reported.
PARTS = [
    ("warehouse_batch.compile", None, "compile_job", "compile"),
    ("warehouse_batch.compile", None, "reuse_rows", "reuse rows (fingerprint)"),
    ("warehouse_batch.runner", "Runner", "_stage_counts", "counts + estimates"),
    ("warehouse_batch.ledger", "Ledger", "begin_run", "persist"),
    ("warehouse_batch.shards", None, "plan_shards", "plan_shards"),
    ("warehouse_batch.shards", None, "write_shards", "write_shards"),
    ("warehouse_batch.ledger", "Ledger", "record_shards", "record_shards"),
    ("warehouse_batch.runner", "Runner", "submit", "submit"),
    ("warehouse_batch.results", None, "load", "load"),
    ("warehouse_batch.publish", None, "publish", "publish"),
]


def wrap_parts() -> h.Steps:
    import importlib

    steps = h.Steps()
    for module, owner, attr, label in PARTS:
        target = importlib.import_module(module)
        steps.wrap(getattr(target, owner) if owner else target, attr, label)
    return steps


def child(step: str, payload: dict) -> None:
    steps = wrap_parts()  # before the Runner binds any of them
    from warehouse_batch.runner import Runner

    root = Path(payload["root"])
    outputs = {k: Path(v) for k, v in payload.get("outputs", {}).items()}
    store = _data.open_store(root / "warehouse.duckdb", Path(payload["src"]), root / "work",
                             memory_limit=payload.get("memory_limit"), threads=payload.get("threads"))
    provider = _data.LocalProvider(outputs, payload.get("line_counts", {}))
    runner = Runner(store, provider)
    job = _data.make_job(schema_mode=payload["schema_mode"])
    extra: dict = {}
    t0 = time.perf_counter()
    if step == "plan":
        report = runner.plan(job)
        extra = {"to_submit": report.counts.to_submit, "shards": report.counts.shards}
    elif step == "run":
        report = runner.run(job)
        extra = {"to_submit": report.counts.to_submit, "shards": report.counts.shards}
    elif step == "collect":
        runner.collect(job.name)
    elif step == "rerun":
        report = runner.run(job, wait=True, poll_interval=0.01)
        extra = {"to_submit": report.counts.to_submit, "created": provider.calls.get("create", 0)}
    elif step == "retry":
        report = runner.retry(job.name)
    elif step == "sync":
        runner.collect()
    seconds = time.perf_counter() - t0
    if step in ("collect", "rerun", "sync"):
        extra["statuses"] = dict(store.execute(f"SELECT status, count(*) FROM {job.target_table} GROUP BY ALL").fetchall())
    extra["provider_calls"] = provider.calls
    _data.close_store(store)
    h.report(seconds, steps, **extra)


def run_step(step: str, payload: dict) -> dict:
    return h.run_script_child(__file__, step, payload)


StepFailed = h.ChildFailed


def measure_size(rows: int, args, cache: Path) -> dict[str, dict]:
    src = _data.reviews_db(rows, seed=args.seed, directory=cache)
    schema_mode = _data.resolve_schema_mode(args.schema_mode)
    root = cache / "runs" / f"scale_{rows}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    payload = {"root": str(root), "src": str(src), "schema_mode": schema_mode,
               "memory_limit": args.memory_limit, "threads": args.threads}
    results: dict[str, dict] = {}

    def step(name: str) -> None:
        os.sync()
        try:
            results[name] = run_step(name, payload)
        except StepFailed as exc:
            h.log(f"{rows:>11,} rows  {name:<8} FAILED: {exc}")
            results[name] = {"failed": str(exc)}
            raise
        r = results[name]
        h.log(f"{rows:>11,} rows  {name:<8} {r['seconds']:8.2f} s  peak RSS {r['rss_mb']:7.0f} MB  "
              f"{ {k: v for k, v in r['extra'].items() if k != 'provider_calls'} }")
        for part, seconds in r.get("steps", {}).items():
            h.log(f"{'':>22}{part:<26} {seconds:8.2f} s  peak RSS {r.get('step_rss_mb', {}).get(part, 0):7.0f} MB")

    try:
        if "plan" not in args.skip:
            step("plan")
        step("run")
        later = [name for name in ("collect", "rerun", "retry", "sync") if name not in args.skip]
        if later:  # the answers take minutes to write at 10M: only when a step reads them
            prepare_outputs(rows, args, root, payload)
        for name in later:
            step(name)
    except StepFailed:
        pass  # the rest of this size depends on the failed step
    results["_sizes"] = {"warehouse_mb": (root / "warehouse.duckdb").stat().st_size / 1e6,
                         "output_mb": payload.get("output_bytes", 0) / 1e6}
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return results


def prepare_outputs(rows: int, args, root: Path, payload: dict) -> None:
    # Set-up, not timed: the answers the provider would return, one file per shard.
    import duckdb

    t0 = time.perf_counter()
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    con.execute("SET preserve_insertion_order = false")
    outputs = _data.write_output_files(
        con, "SELECT shard_id, request_hash FROM warehouse_batch.request_attempts",
        root / "outputs", seed=args.seed)
    counts = dict(con.execute(
        "SELECT shard_id, count(*) FROM warehouse_batch.request_attempts GROUP BY 1").fetchall())
    con.close()
    shutil.rmtree(root / "work" / "bench_reviews" / "shards", ignore_errors=True)  # sent: only disk now
    out_bytes = sum(p.stat().st_size for p in outputs.values())
    h.log(f"set-up: {len(outputs)} output files, {sum(counts.values()):,} lines ({out_bytes / 1e6:,.0f} MB) "
          f"in {time.perf_counter() - t0:.1f} s")
    payload["outputs"] = {k: str(v) for k, v in outputs.items()}
    payload["line_counts"] = counts
    payload["output_bytes"] = out_bytes


def plot(path: Path, sizes: list[int], table: dict[int, dict[str, dict]], max_rss: float) -> None:
    with h.growth_figure(path, "warehouse_batch: cost against rows (default settings, one process per command)",
                         "rows", (("peak RSS per command", "MB"), ("seconds per command", "s")), max_rss) as (ax_rss, ax_s):
        for name in STEPS:
            done = [n for n in sizes if "rss_mb" in table[n].get(name, {})]
            ax_rss.plot(done, [table[n][name]["rss_mb"] for n in done], marker="o", label=name)
            ax_s.plot(done, [table[n][name]["seconds"] for n in done], marker="o", label=name)
            for n in sizes:
                if "failed" in table[n].get(name, {}):
                    ax_rss.plot([n], [max_rss], marker="x", color="red", markersize=10)
        if any("seconds" in table[n].get(name, {}) for n in sizes for name in STEPS):
            ax_s.set_yscale("log")
        ax_rss.set_ylim(0, max([max_rss * 1.15] + [table[n][s]["rss_mb"] * 1.1 for n in sizes for s in STEPS
                                                   if "rss_mb" in table[n].get(s, {})]))
        ax_rss.legend(fontsize=8)


def main() -> None:
    p = h.sizes_parser(__doc__.splitlines()[1], measured="each step", plot_default="benchmarks/scale.png")
    p.add_argument("--schema-mode", default="auto", choices=["auto", "output_schema", "params"])
    p.add_argument("--memory-limit", default=None, help="default: the library's own")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep each size's warehouse and files")
    p.add_argument("--replot", default=None, metavar="JSON",
                   help="only draw the plot (to --plot) from figures saved by --json, or typed in from a log")
    p.add_argument("--skip", default="", help="steps not to run, e.g. plan (run compiles too): saves time at 10M")
    p.add_argument("--with", dest="with_json", default=None, metavar="JSON",
                   help="add the sizes measured by an earlier --json run (e.g. 100k and 1M) to the table, plot and verdict")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--payload", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, json.loads(args.payload))
        return

    if args.replot:
        saved = json.loads(Path(args.replot).read_text())
        steps = {int(n): v for n, v in saved["steps"].items()}
        plot(Path(args.plot or Path(__file__).resolve().parent / "scale.png"), sorted(steps), steps, args.max_rss)
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    cache = _data.cache_dir(args.cache_dir)
    table: dict[int, dict[str, dict]] = {}
    args.skip = {s for s in args.skip.split(",") if s}
    for rows in sizes:
        table[rows] = measure_size(rows, args, cache)
        if args.json:  # after each size, so a run stopped later still leaves what it measured
            Path(args.json).write_text(json.dumps({"sizes": sorted(table), "steps": table, "environment": h.environment()},
                                                  indent=2, default=str))
    if args.with_json:
        earlier = json.loads(Path(args.with_json).read_text())
        for n, figures in earlier["steps"].items():
            table.setdefault(int(n), figures)
        sizes = sorted(table)
        if args.json:  # the merged table, so --replot draws what this run printed
            Path(args.json).write_text(json.dumps({"sizes": sizes, "steps": table, "environment": h.environment(),
                                                   "with": earlier.get("environment")}, indent=2, default=str))

    largest, reference = sizes[-1], h.reference_size(sizes)
    head = ["step"] + [f"{n:,} rows s" for n in sizes] + [f"{n:,} rows MB" for n in sizes] + [
        f"RSS {largest:,}/{reference:,}", f"s {largest:,}/{reference:,}"]
    body, failures = [], []

    def cell(n: int, name: str, key: str, fmt: str) -> str:
        got = table[n].get(name, {})
        return format(got[key], fmt) if key in got else ("FAILED" if "failed" in got else "—")

    for name in STEPS:
        for n in sizes:
            if "failed" in table[n].get(name, {}):
                failures.append(f"{name} at {n:,} rows failed: {table[n][name]['failed']}")
        if not all("rss_mb" in table[n].get(name, {}) for n in (largest, reference)):
            body.append([name] + [cell(n, name, "seconds", ".2f") for n in sizes]
                        + [cell(n, name, "rss_mb", ",.0f") for n in sizes] + ["—", "—"])
            continue
        growth = table[largest][name]["rss_mb"] / table[reference][name]["rss_mb"]
        body.append([name] + [cell(n, name, "seconds", ".2f") for n in sizes]
                    + [cell(n, name, "rss_mb", ",.0f") for n in sizes]
                    + [f"{growth:.2f}×", f"{table[largest][name]['seconds'] / table[reference][name]['seconds']:.1f}×"])
        if table[largest][name]["rss_mb"] > args.max_rss:
            failures.append(f"{name}: peak RSS {table[largest][name]['rss_mb']:.0f} MB at {largest:,} rows "
                            f"> {args.max_rss:.0f} MB")
        if largest != reference and growth > args.growth:
            failures.append(f"{name}: peak RSS grew {growth:.2f}× from {reference:,} to {largest:,} rows "
                            f"(bound {args.growth:.2f}×)")
    print(f"\nEvery command at {', '.join(f'{n:,}' for n in sizes)} rows — one fresh process per step, "
          "default settings")
    h.print_table("", head, body)
    for n in sizes:
        facts = []
        if "extra" in table[n].get("rerun", {}):
            rerun = table[n]["rerun"]["extra"]
            facts.append(f"rerun sent {rerun.get('to_submit')} requests ({rerun.get('created')} batches created)")
        if "extra" in table[n].get("collect", {}):
            facts.append(f"collect statuses {table[n]['collect']['extra'].get('statuses')}")
        sized = table[n].get("_sizes", {})
        facts.append(f"warehouse {sized.get('warehouse_mb', 0):,.0f} MB, outputs {sized.get('output_mb', 0):,.0f} MB")
        print(f"{n:,} rows: " + "; ".join(facts))
    print(f"environment: {h.environment()}")
    plot_path = Path(args.plot) if args.plot else Path(__file__).resolve().parent / "scale.png"
    plot(plot_path, sizes, table, args.max_rss)
    h.memory_verdict(failures, f"memory bound met: every step ≤ {args.max_rss:.0f} MB at {largest:,} rows and "
                               f"within {args.growth:.2f}× of {reference:,} rows")


if __name__ == "__main__":
    main()
