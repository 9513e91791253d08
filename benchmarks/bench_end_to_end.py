#!/usr/bin/env python
"""200,000 rows end to end through the in-process Batch API emulator, in several batches.

    .venv/bin/python benchmarks/bench_end_to_end.py            # 200,000 rows, 4 batches, 3 runs
    .venv/bin/python benchmarks/bench_end_to_end.py --quick    # 20,000 rows, 1 run

Each run, in a fresh process with a fresh warehouse: start `Emulator(EmulatorConfig())` on loopback,
then `Runner(store, OpenAIBatchProvider(base_url=emu.base_url, api_key="bench")).run(job, wait=True,
poll_interval=0.2)` — compile, shard (`max_requests_per_shard`, default 50,000 → 4 batches at
200,000 rows), upload, create, poll, download, load, publish, all through the official `openai`
SDK. Reported: wall time of `run` (emulator start excluded), API calls by kind from
`emu.counters()["calls"]`, batches, requests received by the emulator, final row statuses.

Baseline measured in the same run: "(a) compile limit" — one DuckDB concat-template COPY of the
same request lines (as bench_compile's (a)), to show how much of the end-to-end time is I/O-bound
compile versus the API round trip. Ratio: "× (a)" = median / median of (a).
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
    h.Approach("wb", "warehouse_batch run --wait via emulator"),
    h.Approach("copy_concat", "(a) DuckDB COPY of the request lines only"),
]


def child(args) -> None:
    payload = json.loads(args.child_args)
    run_dir = Path(payload["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    src = Path(payload["src"])
    if args.child == "copy_concat":
        import duckdb

        con = duckdb.connect(":memory:")
        con.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
        t0 = time.perf_counter()
        con.execute(f"COPY (SELECT {_data.request_line_sql(tuple(payload['template']))} AS line FROM src.reviews) "
                    f"TO '{run_dir / 'requests.jsonl'}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '')")
        h.report(time.perf_counter() - t0)
        return

    from warehouse_batch import compile as compiler
    from warehouse_batch import publish, results, shards
    from warehouse_batch.batches import Batches
    from warehouse_batch.providers.openai import OpenAIBatchProvider
    from warehouse_batch.ledger import Ledger
    from warehouse_batch.runner import Runner

    steps = h.Steps()
    if args.profile_sql and args.child == "wb":
        h.profile_sql(steps)
    steps.wrap(compiler, "compile_job", "compile_job")
    steps.wrap(Ledger, "begin_run", "persist")
    steps.wrap(shards, "write_shards", "write_shards")
    steps.wrap(Runner, "submit", "submit (upload + create, all batches)")
    steps.wrap(OpenAIBatchProvider, "upload", "  of which upload")
    steps.wrap(Batches, "poll", "poll")
    steps.wrap(OpenAIBatchProvider, "download", "download")
    steps.wrap(results, "load", "results.load")
    steps.wrap(publish, "publish", "publish.publish")
    t0 = [0.0]
    h.hook_failpoints(steps, t0)
    job = _data.make_job(schema_mode=payload["schema_mode"], max_requests_per_shard=payload["shard_size"])
    report, seconds, counters = _data.run_on_emulator(run_dir, src, job, poll_interval=payload["poll_interval"], clock=t0,
                                                       threads=args.threads, memory_limit=args.memory_limit)
    calls = counters.get("calls", {})
    h.report(seconds, steps, api_calls=sum(calls.values()), calls=calls, batches=len(report.batches),
             batches_created=counters.get("batches_created"), requests_received=counters.get("requests_received"),
             bytes_uploaded=counters.get("bytes_uploaded"), statuses=report.statuses)


def main() -> None:
    p = h.parser(__doc__.splitlines()[1], 200_000)
    p.add_argument("--shard-size", type=int, default=50_000, help="max_requests_per_shard (default 50,000)")
    p.add_argument("--poll-interval", type=float, default=0.2, help="first poll interval, seconds (default 0.2)")
    args = h.finish_args(p.parse_args())
    if args.quick and args.shard_size == 50_000:
        args.shard_size = 5_000  # keep "several batches" in the smoke run
    if args.child:
        child(args)
        return

    root, src, schema_mode, job = _data.bench_inputs(args, "e2e")
    template = _data.body_template(job)

    def payload(a: h.Approach, i: int) -> dict:
        shutil.rmtree(root, ignore_errors=True)
        return {"src": str(src), "run_dir": str(root / f"{a.key}_{i}"), "schema_mode": schema_mode,
                "shard_size": args.shard_size, "poll_interval": args.poll_interval, "template": template}

    measured = h.measure(__file__, args, APPROACHES, payload=payload)
    shutil.rmtree(root, ignore_errors=True)
    by = {m.approach.key: m for m in measured}
    wb, base = by["wb"], by["copy_concat"]
    table = []
    for m in measured:
        if m.skipped:
            table.append([m.approach.label, m.skipped] + [""] * 6)
            continue
        e = m.extra()
        table.append([m.approach.label, f"{m.median:.2f} ({m.lo:.2f}–{m.hi:.2f})", f"{args.rows / m.median:,.0f}",
                      h.fmt_ratio(m.median / base.median) if not base.skipped else "—",
                      str(e.get("api_calls", "")), str(e.get("batches", "")),
                      f"{e['requests_received']:,}" if "requests_received" in e else "", f"{m.rss:,.0f}"])
    print(f"\nEnd to end, {args.rows:,} rows, max_requests_per_shard {args.shard_size:,}, poll interval "
          f"{args.poll_interval} s — median of {args.repeat} run(s), fresh process each; answer format via {schema_mode}")
    h.print_table("", ["approach", "seconds (min–max)", "rows/s", "× (a)", "API calls", "batches",
                       "requests sent", "peak RSS MB"], table)
    if not wb.skipped:
        e = wb.extra()
        print(f"API calls by kind: {e.get('calls')}")
        print(f"row statuses: {e.get('statuses')}; MB uploaded: {(e.get('bytes_uploaded') or 0) / 1e6:,.0f}")
    print(f"environment: {h.environment()}")
    h.print_steps(wb, "warehouse_batch")
    h.emit_json(args, "end_to_end", {"schema_mode": schema_mode, "shard_size": args.shard_size,
                                     "approaches": [h.measured_dict(m, args.rows) for m in measured]})


if __name__ == "__main__":
    main()
