#!/usr/bin/env python
"""Recording which shard each request is in, at 1M and 10M requests, under the default memory limit.

    .venv/bin/python benchmarks/bench_record.py                        # 1,000,000 and 10,000,000
    .venv/bin/python benchmarks/bench_record.py --sizes 100000,1000000 # a quick look

This is the step that ran out of memory in the last 10M-row `run` (benchmarks/RESULTS.md):

* `update` — the statement it replaced: `UPDATE requests SET shard_id, attempts = attempts + 1
  FROM plan` over every request (DuckDB keeps an UPDATE's undo data in memory until commit);
* `insert` — `Ledger.record_shards` as it is now: one INSERT into the append-only
  `request_shards` (migration 0012) from the shard writer's line index (a Parquet file).

Set-up, not timed: a warehouse with the library's migrations and N requests (sha256 hashes), the
shard plan (50,000 requests a shard) and, for `insert`, the line index. Each approach runs in a
fresh process at the library's default settings (DuckDB `memory_limit` 256MB, spilling to the
work directory); the figures are the seconds and peak RSS of the recording transaction alone.
Exits 1 when `insert` fails, passes `--max-rss` MB, or its peak at the largest size grows more
than `--growth` × its peak at the smallest. `update` failing is reported, not judged.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _data  # noqa: E402
import _harness as h  # noqa: E402

APPROACHES = ["update", "insert"]
PLAN = "wb_shard_plan"


def prepare(directory: Path, rows: int, approach: str) -> Path:
    """A migrated warehouse holding `rows` requests (and, for `insert`, the line index)."""
    import duckdb

    from warehouse_batch.warehouses import DuckDBWarehouse

    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    con = duckdb.connect(str(directory / "warehouse.duckdb"))
    store = DuckDBWarehouse(con, work_dir=directory / "work")
    store.migrate()
    con.execute(
        f"""INSERT INTO warehouse_batch.requests (request_hash, endpoint, model, line_bytes, est_input_tokens, first_job)
            SELECT sha256(CAST(i AS VARCHAR)), '/v1/chat/completions', 'gpt-4o-mini', 900, 200, 'bench'
            FROM range({rows}) t(i)""")
    if approach == "update":  # the columns migration 0012 dropped, as the old statement wrote them
        con.execute("ALTER TABLE warehouse_batch.requests ADD COLUMN shard_id VARCHAR")
        con.execute("ALTER TABLE warehouse_batch.requests ADD COLUMN attempts INTEGER DEFAULT 0")
    else:
        con.execute(
            f"""COPY (SELECT request_hash, 'bench-run-' || lpad(CAST(i // 50000 + 1 AS VARCHAR), 4, '0') AS shard_id,
                             i % 50000 AS line_no
                      FROM (SELECT request_hash, row_number() OVER () - 1 AS i FROM warehouse_batch.requests))
                TO '{directory / "lines.parquet"}' (FORMAT parquet)""")
    con.execute("CHECKPOINT")
    store.close()
    con.close()
    return directory


def child(approach: str, payload: dict) -> None:
    from warehouse_batch.ledger import Ledger

    directory = Path(payload["directory"])
    store = _data.open_store(directory / "warehouse.duckdb", Path(payload["src"]), directory / "work")
    store.execute(f"""CREATE TEMP TABLE {PLAN} AS
                      SELECT request_hash, (row_number() OVER () - 1) // 50000 + 1 AS shard_no, 1100 AS tokens
                      FROM warehouse_batch.requests""")
    steps = h.Steps()
    t0 = time.perf_counter()
    with steps.step("record"):
        if approach == "update":
            with store.transaction():
                store.execute(
                    f"""UPDATE warehouse_batch.requests AS r
                        SET shard_id = ? || lpad(CAST(p.shard_no AS VARCHAR), 4, '0'), attempts = r.attempts + 1
                        FROM {PLAN} AS p WHERE p.request_hash = r.request_hash""", ["bench-run-"])
        else:
            Ledger(store).record_shards(_data.make_job(), "run", [], PLAN, directory / "lines.parquet",
                                        replace_results=False)
    seconds = time.perf_counter() - t0
    recorded = store.scalar("SELECT count(*) FROM warehouse_batch.request_shards") if approach == "insert" else \
        store.scalar("SELECT count(shard_id) FROM warehouse_batch.requests")
    _data.close_store(store)
    h.report(seconds, steps, recorded=recorded, record_rss_mb=steps.rss_mb["record"])


def run(approach: str, payload: dict) -> dict:
    try:
        return h.run_script_child(__file__, approach, payload)
    except h.ChildFailed as exc:
        return {"failed": str(exc)[:160]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--sizes", default="1000000,10000000")
    p.add_argument("--max-rss", type=float, default=600.0)
    p.add_argument("--growth", type=float, default=1.2)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--payload", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, json.loads(args.payload))
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    cache = _data.cache_dir(args.cache_dir)
    src = _data.reviews_db(100_000, directory=cache)  # attached by open_store; not read here
    table: dict[tuple[int, str], dict] = {}
    for rows in sizes:
        for approach in APPROACHES:
            directory = prepare(cache / "runs" / f"record_{rows}_{approach}", rows, approach)
            got = table[rows, approach] = run(approach, {"directory": str(directory), "src": str(src)})
            shutil.rmtree(directory, ignore_errors=True)
            if "failed" in got:
                h.log(f"{rows:>11,} requests  {approach:<6} FAILED: {got['failed']}")
            else:
                h.log(f"{rows:>11,} requests  {approach:<6} {got['seconds']:8.2f} s  record peak RSS "
                      f"{got['extra']['record_rss_mb']:6.0f} MB (process {got['rss_mb']:.0f} MB), "
                      f"{got['extra']['recorded']:,} recorded")

    def cell(rows: int, approach: str, key: str) -> str:
        got = table[rows, approach]
        if "failed" in got:
            return "FAILED (out of memory)" if "memory" in got["failed"].lower() else "FAILED"
        return f"{got['seconds']:.2f}" if key == "seconds" else f"{got['extra']['record_rss_mb']:,.0f}"

    h.print_table(
        "Recording each request's shard — fresh process per cell, default settings (256MB)",
        ["approach"] + [f"{n:,} s" for n in sizes] + [f"{n:,} peak MB" for n in sizes],
        [[a] + [cell(n, a, "seconds") for n in sizes] + [cell(n, a, "rss") for n in sizes] for a in APPROACHES])
    print(f"environment: {h.environment()}")
    failures = [f"insert at {n:,} failed: {table[n, 'insert']['failed']}" for n in sizes if "failed" in table[n, "insert"]]
    if not failures:
        peaks = [table[n, "insert"]["extra"]["record_rss_mb"] for n in sizes]
        if peaks[-1] > args.max_rss:
            failures.append(f"insert peak {peaks[-1]:.0f} MB > {args.max_rss:.0f} MB")
        if len(sizes) > 1 and peaks[-1] > args.growth * peaks[0]:
            failures.append(f"insert peak grew {peaks[-1] / peaks[0]:.2f}× from {sizes[0]:,} to {sizes[-1]:,}")
    h.memory_verdict(failures, f"memory bound met: recording stays under {args.max_rss:.0f} MB and within "
                               f"{args.growth:.2f}× from {sizes[0]:,} to {sizes[-1]:,} requests")


if __name__ == "__main__":
    main()
