#!/usr/bin/env python
"""Compile 1,000,000 chat requests (query → bodies → hashes → shard files) vs baselines.

    .venv/bin/python benchmarks/bench_compile.py            # 1,000,000 rows, 3 runs each
    .venv/bin/python benchmarks/bench_compile.py --quick    # 20,000 rows, 1 run each

Approaches, each run in a fresh process (time = the core operation only):

* warehouse_batch — the library's own run path up to shard files on disk, without a provider:
  `compile.compile_job` → `Ledger.begin_run` → `Runner._shard` (plan + write + record), into a fresh
  warehouse file that ATTACHes the source read-only.
  It opens the warehouse itself, as the CLI does, so it runs at the library's defaults (DuckDB
  `memory_limit = DEFAULT_MEMORY_LIMIT`, spilling to the work dir) unless --memory-limit is given.
* (a) DuckDB COPY — the same lines built by one SQL concat template and written by the CSV writer as
  raw lines (performance.md's fastest writer): no hashing, no sharding, no metadata. The limit.
* (a0) the floor of any design that keeps the rows in the warehouse: (a) plus writing the query's
  rows with their sha256 request hash once as a table of a warehouse file (what a re-run and the
  output table join on), at the library's default memory limit. The library cannot beat this
  without giving up a guarantee.
* (a2) DuckDB struct `COPY … (FORMAT json)` with `preserve_insertion_order=false` (low-memory form).
* (b) Python: `fetchmany(10000)` + dict + stdlib `json.dumps` per row.
* (c) openbatch `BatchCollector().chat.completions.create` per row, when installed.

Ratios: "× (a)" = median / median of (a); "× faster than openbatch" = openbatch median / median.
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
    h.Approach("wb", "warehouse_batch (compile → persist → shard)"),
    h.Approach("copy_concat", "(a) DuckDB concat template + raw-lines COPY"),
    h.Approach("floor", "(a0) (a) + the rows with their sha256 stored once"),
    h.Approach("copy_struct", "(a2) DuckDB struct COPY (FORMAT json), unordered"),
    h.Approach("python_json", "(b) Python fetchmany + json.dumps"),
    h.Approach("openbatch", "(c) openbatch BatchCollector per row"),
]


def _openbatch_missing() -> str | None:
    try:
        import openbatch  # noqa: F401
    except ImportError:
        return "not installed (pip install openbatch)"
    return None


APPROACHES[-1].available = _openbatch_missing


# -- children ------------------------------------------------------------------------------------
def _connect(path: str, args, src: Path):
    import duckdb

    con = duckdb.connect(path)
    con.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
    if args.threads:
        con.execute(f"SET threads = {int(args.threads)}")
    if args.memory_limit:
        con.execute(f"SET memory_limit = '{args.memory_limit}'")
    return con


def child(args) -> None:
    payload = json.loads(args.child_args)
    src = Path(payload["src"])
    run_dir = Path(payload["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / "requests.jsonl"
    key = args.child
    steps = h.Steps()
    if args.profile_sql and args.child == "wb":
        h.profile_sql(steps)

    if key == "wb":
        from warehouse_batch import compile as compiler
        from warehouse_batch import shards
        from warehouse_batch.ledger import Ledger
        from warehouse_batch.runner import Runner

        # Opened by path, as the CLI does: the library's own settings, not DuckDB's defaults.
        store = _data.open_store(run_dir / "warehouse.duckdb", src, run_dir / "work",
                                 memory_limit=args.memory_limit, threads=args.threads)
        runner = Runner(store, submit=False)  # shards are written and recorded, never sent
        job = _data.make_job(schema_mode=payload["schema_mode"])
        steps.wrap(compiler, "compile_job", "compile_job (query → stage, bodies, sha256, validation)")
        steps.wrap(compiler, "_row_problems", "  of which row validation")
        steps.wrap(Runner, "_stage_counts", "stage counts (cached / in flight / to send)")
        steps.wrap(Ledger, "begin_run", "persist (jobs, runs, rename rows table, job_rows diff, requests)")
        steps.wrap(shards, "plan_shards", "plan_shards (window functions)")
        steps.wrap(shards, "write_shards", "write_shards (stream lines, sha256, fsync)")
        t0 = [0.0]
        h.hook_failpoints(steps, t0, stop_at="after_shards_recorded")
        t0[0] = time.perf_counter()
        try:
            runner.run(job)  # Runner.run's own path: compile → persist → shard, stopped at its boundary
            raise SystemExit("the run did not reach the after_shards_recorded boundary")
        except h.StopHere:
            pass
        seconds = time.perf_counter() - t0[0]
        files = store.rows("SELECT line_count, byte_count FROM warehouse_batch.batches")
        h.report(seconds, steps, files=len(files), lines=sum(f["line_count"] for f in files),
                 bytes=sum(f["byte_count"] for f in files))
        return

    con = _connect(":memory:", args, src)
    template = tuple(payload["template"])
    if key == "copy_concat":
        t0 = time.perf_counter()
        con.execute(f"COPY (SELECT {_data.request_line_sql(template)} AS line FROM src.reviews) "
                     f"TO '{out}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '')")
        seconds = time.perf_counter() - t0
    elif key == "floor":
        from warehouse_batch.warehouses.duckdb import DEFAULT_MEMORY_LIMIT

        con.close()
        con = _connect(str(run_dir / "floor.duckdb"), args, src)
        if not args.memory_limit:
            con.execute(f"SET memory_limit = '{DEFAULT_MEMORY_LIMIT}'")
        con.execute("SET preserve_insertion_order = false")
        line = _data.request_line_sql(template)
        t0 = time.perf_counter()
        con.execute(f"COPY (SELECT {line} AS line FROM src.reviews) "
                    f"TO '{out}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '')")
        con.execute(f"CREATE TABLE job_rows AS SELECT *, sha256({line}) AS request_hash FROM src.reviews")
        con.execute("CHECKPOINT")
        seconds = time.perf_counter() - t0
    elif key == "copy_struct":
        # Same body through a STRUCT: model + messages as DuckDB values, the remaining keys as raw JSON.
        body = _data.body_dict(template)
        rest = {k: v for k, v in body.items() if k not in ("model", "messages")}
        system = body["messages"][0]["content"].replace("'", "''")
        rest_sql = ", ".join(f"'{k}': '{json.dumps(v, ensure_ascii=False, separators=(',', ':'))}'::JSON"
                             for k, v in rest.items())
        con.execute("SET preserve_insertion_order = false")
        t0 = time.perf_counter()
        con.execute(
            f"""COPY (SELECT id AS custom_id, 'POST' AS method, '{_data.ENDPOINT}' AS url,
                       {{'model': '{body["model"]}',
                         'messages': [{{'role': 'system', 'content': '{system}'}}, {{'role': 'user', 'content': review_text}}],
                         {rest_sql}}} AS body
                FROM src.reviews) TO '{out}' (FORMAT json)"""
        )
        seconds = time.perf_counter() - t0
    elif key == "python_json":
        dumps = json.dumps
        body = _data.body_dict(template)
        system_message, others = body["messages"][0], {k: v for k, v in body.items() if k not in ("model", "messages")}
        model = body["model"]
        t0 = time.perf_counter()
        cur = con.execute("SELECT id, review_text FROM src.reviews")
        with open(out, "w", encoding="utf-8") as fh:
            while rows := cur.fetchmany(10_000):
                fh.write("".join(
                    dumps({"custom_id": i, "method": "POST", "url": _data.ENDPOINT,
                           "body": {"model": model, "messages": [system_message, {"role": "user", "content": t}], **others}},
                          ensure_ascii=False, separators=(",", ":")) + "\n"
                    for i, t in rows))
        seconds = time.perf_counter() - t0
    elif key == "openbatch":
        from openbatch import BatchCollector

        body = _data.body_dict(template)
        system_message, others = body["messages"][0], {k: v for k, v in body.items() if k not in ("model", "messages")}
        limit = payload.get("limit")
        sql = "SELECT id, review_text FROM src.reviews" + (f" LIMIT {int(limit)}" if limit else "")
        t0 = time.perf_counter()
        collector = BatchCollector(out)
        create = collector.chat.completions.create
        cur = con.execute(sql)
        while rows := cur.fetchmany(10_000):
            for i, t in rows:
                create(custom_id=i, model=body["model"], messages=[system_message, {"role": "user", "content": t}],
                       **others)
        seconds = time.perf_counter() - t0
        if limit and limit < args.rows:  # extrapolate to the full row count, and say so
            h.report(seconds * args.rows / limit, measured_rows=limit, measured_seconds=seconds,
                     bytes=out.stat().st_size * args.rows / limit, files=1)
            return
    else:
        raise SystemExit(f"unknown approach {key}")
    h.report(seconds, bytes=out.stat().st_size, files=1)


# -- parent --------------------------------------------------------------------------------------
def verify_bodies(src: Path, job, template: tuple[str, str], rows: int = 2000) -> str:
    """Check on a sample that baseline (a)'s lines carry bodies byte-identical to warehouse_batch's."""
    import duckdb

    from warehouse_batch import compile as compiler
    from warehouse_batch.jobs import Job
    from warehouse_batch.warehouses import DuckDBWarehouse as Store

    from warehouse_batch import bodies

    con = duckdb.connect(":memory:")
    con.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
    store = Store(con, work_dir=Path("/nonexistent-wb-bench"))
    sample = Job.from_options({**job.to_options(), "query": job.query + f" ORDER BY id LIMIT {rows}"})
    body = bodies.build(sample, compiler.describe(store, sample)).body
    bad = store.scalar(
        f"""SELECT count(*) FROM (SELECT q.custom_id, {body} AS b FROM ({sample.query}) AS q) AS s
            JOIN src.reviews AS r ON r.id = s.custom_id
            WHERE {_data.request_line_sql(template, 'r.id', 'r.review_text')}
               <> '{{"custom_id":' || to_json(r.id) || ',"method":"POST","url":"{_data.ENDPOINT}","body":' || s.b || '}}'"""
    )
    return f"{rows - bad:,}/{rows:,} sampled bodies byte-identical to baseline (a)" + ("" if bad == 0 else "  ← MISMATCH")


def main() -> None:
    p = h.parser(__doc__.splitlines()[1], 1_000_000)
    p.add_argument("--openbatch-rows", type=int, default=None,
                   help="run openbatch on this many rows only and extrapolate its time (default: all rows)")
    args = h.finish_args(p.parse_args())
    if args.child:
        child(args)
        return

    cache = _data.cache_dir(args.cache_dir)
    t0 = time.perf_counter()
    src = _data.reviews_db(args.rows, seed=args.seed, directory=cache)
    h.log(f"data: {src} ({time.perf_counter() - t0:.1f} s to build or find)")
    profile = _data.data_profile(src)
    schema_mode = _data.resolve_schema_mode(args.schema_mode)
    job = _data.make_job(schema_mode=schema_mode)
    template = _data.body_template(job)
    check = verify_bodies(src, job, template)
    h.log(check)
    runs_root = cache / "runs" / f"compile_{args.rows}"

    def payload(a: h.Approach, i: int) -> dict:
        shutil.rmtree(runs_root, ignore_errors=True)  # previous run's output: deleted, not timed
        d = {"src": str(src), "run_dir": str(runs_root / f"{a.key}_{i}"), "schema_mode": schema_mode,
             "template": template}
        if a.key == "openbatch" and args.openbatch_rows:
            d["limit"] = args.openbatch_rows
        return d

    measured = h.measure(__file__, args, APPROACHES, payload=payload)
    shutil.rmtree(runs_root, ignore_errors=True)

    by = {m.approach.key: m for m in measured}
    base = by["copy_concat"]
    ob = by["openbatch"]
    rows_out = []
    for m in measured:
        if m.skipped:
            rows_out.append([m.approach.label, m.skipped, "", "", "", "", "", ""])
            continue
        extra = m.extra()
        note = f" (extrapolated from {extra['measured_rows']:,} rows)" if "measured_rows" in extra else ""
        rows_out.append([
            m.approach.label + note,
            f"{m.median:.2f} ({m.lo:.2f}–{m.hi:.2f})",
            f"{args.rows / m.median:,.0f}",
            h.fmt_ratio(m.median / base.median) if not base.skipped else "—",
            h.fmt_ratio(ob.median / m.median) if not ob.skipped else "not installed",
            f"{m.rss:,.0f}",
            f"{extra.get('bytes', 0) / 1e6:,.0f}",
            str(extra.get("files", "")),
        ])
    print(f"\nCompile {args.rows:,} chat requests — median of {args.repeat} run(s), fresh process each")
    print(f"data: {profile['rows']:,} rows, {profile['utf8_bytes'] / 1e6:,.0f} MB of text, mean {profile['mean_chars']:.0f} chars; "
          f"{check}; answer format via {schema_mode}")
    h.print_table("", ["approach", "seconds (min–max)", "rows/s", "× (a)", "× faster than openbatch",
                       "peak RSS MB", "MB out", "files"], rows_out)
    wb = by["wb"]
    print(f"environment: {h.environment()}")
    h.print_steps(wb, "warehouse_batch")
    h.emit_json(args, "compile", {"data": profile, "verify": check, "schema_mode": schema_mode,
                                  "approaches": [h.measured_dict(m, args.rows) for m in measured]})


if __name__ == "__main__":
    main()
