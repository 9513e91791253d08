#!/usr/bin/env python
"""What the output table costs to build and to read: the library's table vs a view over the same joins.

    .venv/bin/python benchmarks/bench_output.py            # 1,000,000 answers, 3 runs each
    .venv/bin/python benchmarks/bench_output.py --quick    # 20,000 answers, 1 run each

Issue #13 asks for `collect` (load + publish) of 1M answers within 2× DuckDB `read_json` of the
same files. This measures what publish can and cannot give up to get there. Set-up (not timed): the
job of `bench_load.py` is submitted to a local stand-in provider and collected once (that collect's
load time is printed). Then, each run in a fresh process on a fresh copy of that warehouse:

* read_json alone — `bench_load.py`'s baseline: one `CREATE TABLE … AS SELECT` over the output files.
* table — `publish.publish` rebuilds the output table (the library as it is).
* table, strings uncompressed — the same with DuckDB's `dict_fsst` string compression disabled.
* view — the same SELECT as a view (`CREATE VIEW`): nothing is written, every read runs the joins.

Each approach then runs three reads a dashboard or an analyst makes (status counts, answers by
typed column, one row by custom_id) and reports the table's size on disk.
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
from bench_load import read_json_child  # noqa: E402

APPROACHES = [
    h.Approach("read_json", "DuckDB read_json, explicit schema, alone"),
    h.Approach("table", "table (the library's publish)"),
    h.Approach("table_plain", "table, strings uncompressed (dict_fsst off)"),
    h.Approach("view", "view over the same joins (nothing written)"),
]

READS = {
    "status counts": "SELECT status, count(*) FROM {t} GROUP BY ALL",
    "by answer": "SELECT {answer}, count(*) FROM {t} GROUP BY ALL",
    "one row": "SELECT * FROM {t} WHERE custom_id = {custom_id}",
}


class _ViewMade(Exception):
    """Ends publish once its SELECT is a view: the rest of publish writes the table."""


def child(args) -> None:
    payload = json.loads(args.child_args)
    run_dir = Path(payload["run_dir"])
    if args.child == "read_json":
        read_json_child(args, payload, run_dir)
        return
    if args.child == "collect_once":
        _collect_once(args, payload, run_dir)
        return

    from warehouse_batch import publish
    from warehouse_batch.ledger import Ledger

    store = _data.open_store(run_dir / "warehouse.duckdb", Path(payload["src"]), run_dir / "work",
                             threads=args.threads, memory_limit=args.memory_limit)
    job = _data.make_job(schema_mode=payload["schema_mode"])
    table = job.target_table
    store.execute(f"DROP TABLE {table}")  # so publish builds it again (not timed)
    if args.child == "table_plain":
        store.execute("SET disabled_compression_methods = 'dict_fsst'")
    if args.child == "view":
        table = "bench_output_view"
        execute = store.execute

        def as_view(sql, params=None):
            if "WITH keyed AS" not in sql:
                return execute(sql, params)
            select = sql[sql.index("WITH keyed AS"):]
            execute(f"CREATE VIEW {table} AS {select}", params)
            raise _ViewMade

        store.execute = as_view
        publish.part_rows = lambda warehouse: 1 << 62  # one statement: the whole job
    t0 = time.perf_counter()
    try:
        publish.publish(store, Ledger(store), job)
    except _ViewMade:
        pass
    build = time.perf_counter() - t0
    if args.child == "view":
        del store.execute  # the wrapper above: the class's own method again
    size_mb = None
    if args.child != "view":
        store.execute("CHECKPOINT")
        block = store.scalar("SELECT block_size FROM pragma_database_size()")
        blocks = store.scalar(f"SELECT count(DISTINCT block_id) FROM pragma_storage_info('{table}') WHERE block_id >= 0")
        size_mb = blocks * block / 1e6
    cols = [r[0] for r in store.execute(f"DESCRIBE {table}").fetchall()]
    custom_id = store.scalar(f"SELECT custom_id FROM {table} LIMIT 1")
    fields = {"t": table, "answer": "sentiment" if "sentiment" in cols else "content",
              "custom_id": f"'{custom_id}'"}
    reads = {}
    for name, sql in READS.items():
        t1 = time.perf_counter()
        store.execute(sql.format(**fields)).fetchall()
        reads[name] = time.perf_counter() - t1
    h.report(build, reads=reads, table_mb=size_mb)


def _collect_once(args, payload: dict, run_dir: Path) -> None:
    """The set-up's collect (once, not among the approaches): its load time goes into the ratios."""
    from warehouse_batch import publish, results
    from warehouse_batch.runner import Runner

    steps = h.Steps()
    store = _data.open_store(run_dir / "warehouse.duckdb", Path(payload["src"]), run_dir / "work",
                             threads=args.threads, memory_limit=args.memory_limit)
    provider = _data.LocalProvider({k: Path(v) for k, v in payload["outputs"].items()}, payload["line_counts"])
    steps.wrap(results, "load", "load")
    steps.wrap(publish, "publish", "publish")
    t0 = time.perf_counter()
    Runner(store, provider).collect(_data.make_job(schema_mode=payload["schema_mode"]).name)
    seconds = time.perf_counter() - t0
    store.execute("CHECKPOINT")  # the copies below start from a file without a WAL
    h.report(seconds, steps)


def main() -> None:
    p = h.parser(__doc__.splitlines()[1], 1_000_000)
    args = h.finish_args(p.parse_args())
    if args.child:
        child(args)
        return

    root, src, schema_mode, job = _data.bench_inputs(args, "output")
    db, outputs, counts = _data.prepare_submitted(root / "prep", src, job, seed=args.seed, threads=args.threads,
                                                  memory_limit=args.memory_limit)
    base = {"src": str(src), "schema_mode": schema_mode, "outputs": {k: str(v) for k, v in outputs.items()},
            "line_counts": counts}
    collected = root / "collected"
    shutil.rmtree(collected, ignore_errors=True)
    collected.mkdir(parents=True)
    shutil.copyfile(db, collected / "warehouse.duckdb")
    setup = h.run_child(__file__, "collect_once", args, {**base, "run_dir": str(collected)})
    load_s = setup["steps"].get("load", 0.0)
    h.log(f"set-up: collect of {sum(counts.values()):,} answers {setup['seconds']:.2f} s "
          f"(load {load_s:.2f} s, publish {setup['steps'].get('publish', 0.0):.2f} s), peak RSS {setup['rss_mb']:.0f} MB")

    def payload(a: h.Approach, i: int) -> dict:
        run_dir = root / "run"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        if a.key != "read_json":
            shutil.copyfile(collected / "warehouse.duckdb", run_dir / "warehouse.duckdb")
        return {**base, "run_dir": str(run_dir)}

    measured = h.measure(__file__, args, APPROACHES, payload=payload)
    shutil.rmtree(root, ignore_errors=True)

    by = {m.approach.key: m for m in measured}
    baseline = by["read_json"]
    rows = []
    for m in measured:
        if m.skipped:
            rows.append([m.approach.label, m.skipped] + [""] * 7)
            continue
        extra = m.extra()
        if m.approach.key == "read_json":
            rows.append([m.approach.label, f"{m.median:.2f} ({m.lo:.2f}–{m.hi:.2f})", "1.00×", "", "", "", "",
                         f"{m.rss:,.0f}"])
            continue
        collect_s = load_s + m.median
        ratio = h.fmt_ratio(collect_s / baseline.median) if not baseline.skipped else "—"
        reads = extra.get("reads", {})
        size = extra.get("table_mb")
        rows.append([m.approach.label, f"{m.median:.2f} ({m.lo:.2f}–{m.hi:.2f})", ratio,
                     *(f"{reads.get(n, 0.0):.2f}" for n in READS), "—" if size is None else f"{size:,.0f}",
                     f"{m.rss:,.0f}"])
    print(f"\nBuild the output table of {sum(counts.values()):,} answers — median of {args.repeat} run(s), "
          f"fresh process each; load (set-up collect, once) {load_s:.2f} s")
    h.print_table("", ["approach", "build s (min–max)", "(load + build) × read_json",
                       *(f"read: {n} s" for n in READS), "table MB", "peak RSS MB"], rows)
    print(f"environment: {h.environment()}")
    h.emit_json(args, "output", {"schema_mode": schema_mode, "load_seconds": load_s,
                                 "setup_collect": {k: setup[k] for k in ("seconds", "rss_mb", "steps")},
                                 "approaches": [h.measured_dict(m, args.rows) for m in measured]})


if __name__ == "__main__":
    main()
