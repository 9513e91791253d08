#!/usr/bin/env python
"""Re-run of the unchanged 1,000,000-row job: wall time and requests submitted (must be 0).

    .venv/bin/python benchmarks/bench_rerun.py                   # 1,000,000 rows, 3 runs
    .venv/bin/python benchmarks/bench_rerun.py --quick           # 20,000 rows, 1 run
    .venv/bin/python benchmarks/bench_rerun.py --prime emulator  # first run through the emulator

Set-up (once, not timed), `--prime local` (default): the job runs through the library's
`Runner.run` against a local stand-in provider, then `Runner.collect` loads one output file per
shard, so every request has a result (the load benchmark's path). `--prime emulator`: the first
run is a real `Runner.run(job, wait=True)` against the in-process emulator (1,000,000 requests in
20 batches; slower, and it exercises the emulator at full size).

Measured, each run in a fresh process on a fresh copy of the primed warehouse, with a fresh
in-process emulator (start not timed): `Runner(store, OpenAIBatchProvider(emu)).run(job, wait=True)`.
Reported: wall time, requests submitted (`counts.to_submit` and the emulator's
`requests_received`, both must be 0), API calls.

Baseline in the same run: "(f) hash floor" — the least work any content-hash cache must do to
prove nothing changed: one DuckDB query that builds every body with the concat template, sha256s
it and anti-joins `warehouse_batch.results` (count of misses, expected 0). Ratio: "× (f)".
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _data  # noqa: E402
import _harness as h  # noqa: E402

APPROACHES = [
    h.Approach("wb", "warehouse_batch re-run (run --wait)"),
    h.Approach("hash_floor", "(f) DuckDB: sha256 every body, anti-join results"),
]


def child(args) -> None:
    payload = json.loads(args.child_args)
    run_dir = Path(payload["run_dir"])
    src = Path(payload["src"])
    if args.child == "hash_floor":
        import duckdb

        con = duckdb.connect(str(run_dir / "warehouse.duckdb"), read_only=True)
        con.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
        prefix, suffix = payload["template"]
        body = f"{_data._lit(prefix)} || to_json(review_text) || {_data._lit(suffix)}"
        t0 = time.perf_counter()
        misses = con.execute(
            f"""SELECT count(*) FROM (SELECT sha256({body}) AS h FROM src.reviews) AS s
                WHERE NOT EXISTS (SELECT 1 FROM warehouse_batch.results AS r WHERE r.request_hash = s.h)"""
        ).fetchone()[0]
        h.report(time.perf_counter() - t0, misses=misses)
        return

    from warehouse_batch import compile as compiler
    from warehouse_batch import publish, results, shards
    from warehouse_batch.ledger import Ledger
    from warehouse_batch.runner import Runner

    steps = h.Steps()
    if args.profile_sql and args.child == "wb":
        h.profile_sql(steps)
    steps.wrap(compiler, "compile_job", "compile_job (query → stage, bodies, sha256, validation)")
    steps.wrap(compiler, "_row_problems", "  of which row validation")
    steps.wrap(Runner, "_stage_counts", "stage counts (cached / in flight / to send)")
    steps.wrap(Ledger, "begin_run", "persist (jobs, runs, rename rows table, job_rows diff, requests)")
    steps.wrap(shards, "plan_shards", "plan_shards")
    steps.wrap(Runner, "submit", "submit")
    steps.wrap(Runner, "collect", "collect (poll + load + publish)")
    steps.wrap(publish, "publish", "publish.publish (typed output table)")
    steps.wrap(Runner, "job_report", "job_report")
    t0 = [0.0]
    h.hook_failpoints(steps, t0)
    job = _data.make_job(schema_mode=payload["schema_mode"])
    report, seconds, counters = _data.run_on_emulator(run_dir, src, job, poll_interval=0.2, clock=t0,
                                                       threads=args.threads, memory_limit=args.memory_limit)
    counts = report.counts
    h.report(seconds, steps, to_submit=counts.to_submit if counts else None, cached=counts.cached if counts else None,
             shards=counts.shards if counts else None, requests_received=counters.get("requests_received"),
             calls=counters.get("calls", {}), api_calls=sum(counters.get("calls", {}).values()),
             statuses=report.statuses)


def prime_emulator(directory: Path, src: Path, job) -> Path:
    """First run of the job against the in-process emulator, to completion."""
    from warehouse_batch.emulator import Emulator, EmulatorConfig
    from warehouse_batch.providers.openai import OpenAIBatchProvider
    from warehouse_batch.runner import Runner

    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    db = directory / "warehouse.duckdb"
    with Emulator(EmulatorConfig()) as emu:
        store = _data.open_store(db, src, directory / "work")
        try:
            provider = OpenAIBatchProvider(base_url=emu.base_url, api_key="bench")
            report = Runner(store, provider).run(job, wait=True, poll_interval=0.5)
            h.log(f"primed through the emulator: {report.statuses}, {len(report.batches)} batches, "
                  f"API calls {sum(emu.counters()['calls'].values())}")
            store.execute("CHECKPOINT")
        finally:
            _data.close_store(store)
    shutil.rmtree(directory / "work", ignore_errors=True)
    return db


def prime_local(directory: Path, src: Path, job, seed: int) -> Path:
    """The job's batches answered from local output files through `Runner.collect`."""
    from warehouse_batch.runner import Runner

    db, outputs, counts = _data.prepare_submitted(directory, src, job, seed=seed)
    store = _data.open_store(db, src, directory / "work")
    try:
        Runner(store, _data.LocalProvider(outputs, counts)).collect(job.name)
        store.execute("CHECKPOINT")
    finally:
        _data.close_store(store)
    shutil.rmtree(directory / "work", ignore_errors=True)
    shutil.rmtree(directory / "outputs", ignore_errors=True)
    return db


def main() -> None:
    p = h.parser(__doc__.splitlines()[1], 1_000_000)
    p.add_argument("--prime", choices=("local", "emulator"), default="local",
                   help="how the first run gets its answers (default local: output files via Runner.collect)")
    args = h.finish_args(p.parse_args())
    if args.child:
        child(args)
        return

    root, src, schema_mode, job = _data.bench_inputs(args, "rerun")
    template = _data.body_template(job)
    t0 = time.perf_counter()
    if args.prime == "emulator":
        db = prime_emulator(root / "prime", src, job)
    else:
        db = prime_local(root / "prime", src, job, args.seed)
    prime_seconds = time.perf_counter() - t0
    h.log(f"primed ({args.prime}) in {prime_seconds:.1f} s")

    def payload(a: h.Approach, i: int) -> dict:
        run_dir = root / "run"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        shutil.copyfile(db, run_dir / "warehouse.duckdb")  # fresh copy per run, not timed
        return {"src": str(src), "run_dir": str(run_dir), "schema_mode": schema_mode, "template": template}

    measured = h.measure(__file__, args, APPROACHES, payload=payload)
    shutil.rmtree(root, ignore_errors=True)
    by = {m.approach.key: m for m in measured}
    wb, base = by["wb"], by["hash_floor"]
    table = []
    for m in measured:
        if m.skipped:
            table.append([m.approach.label, m.skipped] + [""] * 4)
            continue
        e = m.extra()
        sent = f"{e['to_submit']} planned, {e['requests_received']} received" if "to_submit" in e else \
            f"{e.get('misses')} cache misses"
        table.append([m.approach.label, f"{m.median:.2f} ({m.lo:.2f}–{m.hi:.2f})",
                      h.fmt_ratio(m.median / base.median) if not base.skipped else "—", sent,
                      str(e.get("api_calls", "")), f"{m.rss:,.0f}"])
    print(f"\nRe-run of the unchanged {args.rows:,}-row job (primed via {args.prime} in {prime_seconds:.0f} s) — "
          f"median of {args.repeat} run(s), fresh process each; answer format via {schema_mode}")
    h.print_table("", ["approach", "seconds (min–max)", "× (f)", "requests submitted", "API calls", "peak RSS MB"], table)
    if not wb.skipped:
        e = wb.extra()
        print(f"requests submitted: {e.get('requests_received')} (emulator), to_submit {e.get('to_submit')}, "
              f"cached {e.get('cached')}, shards {e.get('shards')}; API calls {e.get('calls')}; rows {e.get('statuses')}")
    print(f"environment: {h.environment()}")
    h.print_steps(wb, "warehouse_batch")
    h.emit_json(args, "rerun", {"schema_mode": schema_mode, "prime": args.prime, "prime_seconds": prime_seconds,
                                "approaches": [h.measured_dict(m, args.rows) for m in measured]})


if __name__ == "__main__":
    main()
