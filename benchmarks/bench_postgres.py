#!/usr/bin/env python
"""PostgreSQL as the warehouse: each bulk path against its bare ADBC baseline, in the same run.

    .venv/bin/python benchmarks/bench_postgres.py                 # 1,000,000 rows
    .venv/bin/python benchmarks/bench_postgres.py --rows 100000   # a quick look

Starts a throwaway PostgreSQL (tests/pg.py: initdb/pg_ctl, fsync off), then, each step in a fresh
process (peak RSS = that process's VmHWM):

* `pull`        — `PostgresWarehouse.query_source`: the query (BIGINT, 200-char text,
                  numeric(10,2)) streamed into the engine, vs `adbc fetch_record_batch` drained alone
* `publish`     — an output table (BIGINT, text, DOUBLE, text[], real[]) written typed with
                  `replica.push_whole`, vs `adbc_ingest` of the same Arrow data alone
* `upsert`      — 1M new rows of `warehouse_batch.results` pushed (keyed diff against the shadow,
                  temp table, DELETE … USING, INSERT … SELECT), vs `adbc_ingest` of those rows alone

Goal (issue #10): each ≤ 2× its baseline, peak RSS < 600 MB. Prints ratios; exits 1 when a peak
RSS exceeds --max-rss. Times are reported, not judged.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def step(name: str, uri: str, rows: int, work: str) -> dict[str, float]:
    import adbc_driver_postgresql.dbapi as dbapi

    from warehouse_batch.warehouses import replica
    from warehouse_batch.warehouses.postgres import PostgresWarehouse

    query = "SELECT id, txt, price FROM source"
    started = time.perf_counter()
    if name == "pull_baseline":
        with dbapi.connect(uri) as con, con.cursor() as cur:
            cur.execute(query)
            for _ in cur.fetch_record_batch():
                pass
    elif name == "pull":
        with PostgresWarehouse(uri, work_dir=work) as wh:
            started = time.perf_counter()
            wh.query_source(query)
    elif name in ("publish", "publish_baseline"):
        with PostgresWarehouse(uri, work_dir=work) as wh:
            engine = wh.engine
            engine.execute(f"""CREATE TABLE out_src AS SELECT i AS custom_id, repeat('a', 200) AS content,
                               i / 7.0 AS score, ['x', 'y'] AS tags, [0.5::FLOAT, 0.25::FLOAT] AS embedding
                               FROM range({rows}) t(i)""")
            types = {r[0]: r[1] for r in engine.execute("DESCRIBE out_src").fetchall()}
            started = time.perf_counter()
            if name == "publish":
                wh._pg("BEGIN")
                replica.push_whole(engine, wh.cursor, "out_src", types, "public", "bench_out", faithful=False)
                wh._pg("COMMIT")
            else:
                wh.cursor.adbc_ingest("bench_raw", engine.sql("SELECT * FROM out_src").to_arrow_reader(65536),
                                      mode="replace")
    elif name in ("upsert", "upsert_baseline"):
        with PostgresWarehouse(uri, work_dir=work) as wh:
            fill = (f"SELECT sha256(CAST(i AS VARCHAR)) AS request_hash, 'completed' AS status, 200 AS status_code, "
                    f"'answer ' || i AS content, 'stop' AS finish_reason, 'gpt-4o-mini' AS model, 20 AS input_tokens, "
                    f"5 AS output_tokens, 'batch_1' AS batch_id, 'shard_1' AS shard_id, now() AS completed_at "
                    f"FROM range({rows}) t(i)")
            if name == "upsert":
                started = time.perf_counter()
                with wh.transaction():
                    wh.execute("INSERT INTO warehouse_batch.results (request_hash, status, status_code, content, "
                               "finish_reason, model, input_tokens, output_tokens, batch_id, shard_id, completed_at) "
                               + fill)
            else:
                started = time.perf_counter()
                wh.cursor.adbc_ingest("results_raw", wh.engine.sql(fill).to_arrow_reader(65536), mode="replace")
    return {"seconds": time.perf_counter() - started, "peak_mb": _peak_mb()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--max-rss", type=float, default=600.0)
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.uri, args.rows, args.work)))
        return 0

    from tests.pg import Cluster

    try:
        cluster = Cluster()
    except BaseException as exc:  # noqa: BLE001 - pytest.skip's exception when PostgreSQL is missing
        print(f"cannot start PostgreSQL: {exc}")
        return 2
    try:
        uri = cluster.new_database()
        cluster.execute(f"CREATE TABLE source AS SELECT i::bigint AS id, repeat('x', 200) AS txt, "
                        f"(i / 100.0)::numeric(10,2) AS price FROM generate_series(1, {args.rows}) AS i", uri)
        results: dict[str, dict[str, float]] = {}
        work = str(Path(cluster.root) / "work")
        for name in ("pull_baseline", "pull", "publish_baseline", "publish", "upsert_baseline", "upsert"):
            done = subprocess.run([sys.executable, __file__, "--step", name, "--uri", uri, "--rows", str(args.rows),
                                   "--work", work], capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                print(done.stderr)
                return 1
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{args.rows:,} rows")
        print(f"{'step':<10}{'seconds':>10}{'baseline s':>12}{'ratio':>8}{'peak MB':>10}")
        failed = False
        for name in ("pull", "publish", "upsert"):
            mine, base = results[name], results[name + "_baseline"]
            print(f"{name:<10}{mine['seconds']:>10.2f}{base['seconds']:>12.2f}{mine['seconds'] / base['seconds']:>8.2f}"
                  f"{mine['peak_mb']:>10.0f}")
            failed |= mine["peak_mb"] > args.max_rss
        return 1 if failed else 0
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
