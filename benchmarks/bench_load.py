#!/usr/bin/env python
"""Load 1,000,000 batch output lines into the typed output table vs DuckDB read_json alone.

    .venv/bin/python benchmarks/bench_load.py            # 1,000,000 lines, 3 runs each
    .venv/bin/python benchmarks/bench_load.py --quick    # 20,000 lines, 1 run each

Set-up (once, not timed): the benchmark job runs through the library's own `Runner.run` (compile →
shard → submit) against a local stand-in provider, leaving its batches in flight; then one output
file per shard is written in the real chat.completion batch output shape (shuffled, 0.5% status 400
error bodies, 0.1% `finish_reason: "length"` with truncated JSON), custom_id = request hash.

Approaches, each run in a fresh process on a fresh copy of that warehouse (time = core operation):

* warehouse_batch — `Runner.collect(job)`: poll (stand-in provider says completed), download (a hard
  link: no transfer), check each file, `results.load` into `warehouse_batch.results` in
  one statement and one transaction, then `publish.publish` (re)builds the typed output table (query rows ⋈
  results, answers parsed into typed columns).
* read_json alone — one `CREATE TABLE … AS SELECT` over all output files with an explicit STRUCT
  schema, the answer parsed behind `json_valid` into typed columns (performance.md §C's fastest
  loader), into a fresh DuckDB file.

Ratio: "× read_json" = median / median of read_json alone.
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
    h.Approach("wb", "warehouse_batch collect (load + publish)"),
    h.Approach("read_json", "DuckDB read_json, explicit schema, alone"),
]

READ_JSON_SQL = """
CREATE TABLE loaded AS
SELECT custom_id,
       response.status_code AS status_code,
       response.body.choices[1].message.content AS content,
       response.body.choices[1].finish_reason AS finish_reason,
       response.body.usage.prompt_tokens AS input_tokens,
       response.body.usage.completion_tokens AS output_tokens,
       response.body.error.code AS error_code,
       parsed.sentiment AS sentiment,
       parsed.confidence AS confidence
FROM (
    SELECT *, CASE WHEN json_valid(response.body.choices[1].message.content)
                   THEN from_json(response.body.choices[1].message.content, '{"sentiment":"VARCHAR","confidence":"DOUBLE"}')
              END AS parsed
    FROM read_json(?, format = 'newline_delimited', columns = {
        custom_id: 'VARCHAR',
        response: 'STRUCT(status_code INTEGER, body STRUCT(
            choices STRUCT(message STRUCT(content VARCHAR), finish_reason VARCHAR)[],
            usage STRUCT(prompt_tokens INTEGER, completion_tokens INTEGER),
            error STRUCT(code VARCHAR)))'})
)
"""


def read_json_child(args, payload: dict, run_dir: Path) -> None:
    """The baseline: every output file read by one `read_json` into a fresh DuckDB file (timed)."""
    import duckdb

    con = duckdb.connect(str(run_dir / "baseline.duckdb"))
    if args.threads:
        con.execute(f"SET threads = {int(args.threads)}")
    if args.memory_limit:
        con.execute(f"SET memory_limit = '{args.memory_limit}'")
    files = sorted(payload["outputs"].values())
    t0 = time.perf_counter()
    con.execute(READ_JSON_SQL, [files])
    seconds = time.perf_counter() - t0
    n, typed = con.execute("SELECT count(*), count(sentiment) FROM loaded").fetchone()
    h.report(seconds, rows=n, typed_rows=typed)


def child(args) -> None:
    payload = json.loads(args.child_args)
    run_dir = Path(payload["run_dir"])
    steps = h.Steps()
    if args.profile_sql and args.child == "wb":
        h.profile_sql(steps)
    if args.child == "read_json":
        read_json_child(args, payload, run_dir)
        return

    from warehouse_batch import publish, results
    from warehouse_batch.batches import Batches
    from warehouse_batch.runner import Runner

    store = _data.open_store(run_dir / "warehouse.duckdb", Path(payload["src"]), run_dir / "work",
                             threads=args.threads, memory_limit=args.memory_limit)
    provider = _data.LocalProvider({k: Path(v) for k, v in payload["outputs"].items()}, payload["line_counts"])
    runner = Runner(store, provider)
    job = _data.make_job(schema_mode=payload["schema_mode"])
    steps.wrap(Batches, "poll", "poll (retrieve every batch)")
    steps.wrap(Batches, "_download_all", "download + check (line count via read_json)")
    steps.wrap(results, "load", "results.load (load_results.sql + missing_results.sql)")
    steps.wrap(publish, "publish", "publish.publish (typed output table)")
    t0 = time.perf_counter()
    runner.collect(job.name)
    seconds = time.perf_counter() - t0
    statuses = dict(store.execute(f"SELECT status, count(*) FROM {job.target_table} GROUP BY ALL").fetchall())
    cols = [r[0] for r in store.execute(f"DESCRIBE {job.target_table}").fetchall()]
    typed = store.scalar(f"SELECT count(sentiment) FROM {job.target_table}") if "sentiment" in cols else None
    h.report(seconds, steps, statuses=statuses, typed_rows=typed, provider_calls=provider.calls,
             results=store.scalar("SELECT count(*) FROM warehouse_batch.results"))


def main() -> None:
    p = h.parser(__doc__.splitlines()[1], 1_000_000)
    args = h.finish_args(p.parse_args())
    if args.child:
        child(args)
        return

    root, src, schema_mode, job = _data.bench_inputs(args, "load")
    t0 = time.perf_counter()
    db, outputs, counts = _data.prepare_submitted(root / "prep", src, job, seed=args.seed, threads=args.threads,
                                                  memory_limit=args.memory_limit)
    out_bytes = sum(p.stat().st_size for p in outputs.values())
    h.log(f"set-up: {len(outputs)} batches in flight, {sum(counts.values()):,} output lines "
          f"({out_bytes / 1e6:,.0f} MB) in {time.perf_counter() - t0:.1f} s")

    def payload(a: h.Approach, i: int) -> dict:
        run_dir = root / "run"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        if a.key == "wb":
            shutil.copyfile(db, run_dir / "warehouse.duckdb")  # a fresh warehouse per run, not timed
        return {"src": str(src), "run_dir": str(run_dir), "schema_mode": schema_mode,
                "outputs": {k: str(v) for k, v in outputs.items()}, "line_counts": counts}

    measured = h.measure(__file__, args, APPROACHES, payload=payload)
    shutil.rmtree(root, ignore_errors=True)

    by = {m.approach.key: m for m in measured}
    base = by["read_json"]
    table = []
    for m in measured:
        if m.skipped:
            table.append([m.approach.label, m.skipped, "", "", ""])
            continue
        table.append([m.approach.label, f"{m.median:.2f} ({m.lo:.2f}–{m.hi:.2f})", f"{args.rows / m.median:,.0f}",
                      h.fmt_ratio(m.median / base.median) if not base.skipped else "—", f"{m.rss:,.0f}"])
    print(f"\nLoad {sum(counts.values()):,} output lines ({out_bytes / 1e6:,.0f} MB, {len(outputs)} files) — "
          f"median of {args.repeat} run(s), fresh process each; answer format via {schema_mode}")
    h.print_table("", ["approach", "seconds (min–max)", "lines/s", "× read_json", "peak RSS MB"], table)
    wb = by["wb"]
    if not wb.skipped:
        print(f"warehouse_batch output table: {wb.extra().get('statuses')}, typed rows {wb.extra().get('typed_rows')}, "
              f"provider calls {wb.extra().get('provider_calls')}")
    if not base.skipped:
        print(f"read_json alone: {base.extra().get('rows'):,} rows, typed rows {base.extra().get('typed_rows'):,}")
    print(f"environment: {h.environment()}")
    h.print_steps(wb, "warehouse_batch")
    h.emit_json(args, "load", {"schema_mode": schema_mode, "output_bytes": out_bytes, "files": len(outputs),
                               "approaches": [h.measured_dict(m, args.rows) for m in measured]})


if __name__ == "__main__":
    main()
