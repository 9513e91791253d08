#!/usr/bin/env python
"""Estimate the input tokens of 1,000,000 chat request bodies: bytes/4 in DuckDB vs exact vs sampled counts.

    .venv/bin/python benchmarks/bench_estimate.py            # 1,000,000 rows, 3 runs each
    .venv/bin/python benchmarks/bench_estimate.py --quick    # 20,000 rows, 1 run each

The bodies are the library's own (system prompt, review text, strict json_schema answer format),
built once by SQL into a cached DuckDB file; each run opens it read-only in a fresh process and
times only the estimate (opening the file and importing excluded):

* (a) bytes/4 — `sum(ceil(strlen(body) / 4))` in DuckDB: what `plan` shows today. The baseline.
* exact — `tokens.estimate(reader, "/v1/chat/completions")`: every body streamed from DuckDB as
  Arrow batches, parsed and counted with bpe-openai as the service bills (chat framing + schema).
* sampled — `tokens.estimate(reader, …, sample=N, seed=…)`: the same stream, a seeded reservoir
  sample of N bodies counted, the total extrapolated with a 95% interval.

Besides time and peak RSS, each row shows its total against the exact count of the same run set.

Then (or alone, with `--accuracy-only`) the estimate against the actual: three example jobs —
chat (`examples/reviews/review_sentiment.sql`), structured (`review_sentiment_columns.sql`),
embeddings (`review_embeddings.sql`) — are planned and then run on the in-process emulator over the
example reviews, and `warehouse_batch.estimate_vs_actual` gives, per job, the estimated input
tokens, expected output tokens and expected cost beside the emulator's usage and its cost. Goals:
expected cost within ±10% of the actual, input tokens within ±2%.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _data  # noqa: E402
import _harness as h  # noqa: E402

ENDPOINT = _data.ENDPOINT
BATCH_ROWS = 50_000  # Arrow batch size of the stream: bounds memory, large enough to amortise calls
APPROACHES = [
    h.Approach("bytes4", "(a) DuckDB sum(ceil(strlen(body) / 4))"),
    h.Approach("exact", "exact: tokens.estimate (stream, parse, bpe count)"),
    h.Approach("sampled", "sampled: tokens.estimate(sample=N)"),
]


def bodies_db(src: Path, template: tuple[str, str], rows: int, seed: int, cache: Path) -> Path:
    """A DuckDB file with table bodies(body VARCHAR): the library's body for every review; built once."""
    import duckdb

    key = hashlib.sha256(json.dumps(template).encode()).hexdigest()[:12]
    path = cache / f"bodies_{rows}_s{seed}_{key}.duckdb"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    prefix, suffix = template
    lit = lambda s: "'" + s.replace("'", "''") + "'"  # noqa: E731
    with duckdb.connect(str(tmp)) as con:
        con.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
        con.execute(f"CREATE TABLE bodies AS SELECT {lit(prefix)} || to_json(review_text) || {lit(suffix)} AS body "
                    "FROM src.reviews ORDER BY id")
        con.execute("CHECKPOINT")
    os.replace(tmp, path)
    return path


# -- children ------------------------------------------------------------------------------------
def child(args) -> None:
    import duckdb

    payload = json.loads(args.child_args)
    con = duckdb.connect(payload["db"], read_only=True)
    if args.threads:
        con.execute(f"SET threads = {int(args.threads)}")
    if args.memory_limit:
        con.execute(f"SET memory_limit = '{args.memory_limit}'")
    key = args.child
    if key == "bytes4":
        t0 = time.perf_counter()
        total = con.execute("SELECT CAST(sum(ceil(strlen(body) / 4)) AS BIGINT) FROM bodies").fetchone()[0]
        seconds = time.perf_counter() - t0
        h.report(seconds, input_tokens=int(total), method="bytes/4")
        return

    from warehouse_batch import tokens

    tokens.count_text("warm up")  # loads the vocabulary: start-up, like the imports, is not timed
    sample = payload["sample"] if key == "sampled" else None
    t0 = time.perf_counter()
    reader = con.sql("SELECT body FROM bodies").to_arrow_reader(BATCH_ROWS)
    est = tokens.estimate(reader, ENDPOINT, sample=sample, seed=args.seed)
    seconds = time.perf_counter() - t0
    h.report(seconds, input_tokens=est.input_tokens, low=est.low, high=est.high, counted=est.counted,
             rows=est.rows, method=est.method)


# -- estimate vs actual ----------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent
ACCURACY_JOBS = ("review_sentiment", "review_sentiment_columns", "review_embeddings")


def accuracy(directory: Path) -> list[dict]:
    """Plan, then run, each example job on the emulator; the estimate_vs_actual row of each run."""
    import duckdb

    import warehouse_batch as wb
    from warehouse_batch.emulator import Emulator, EmulatorConfig

    db = directory / "estimate_accuracy.duckdb"
    db.unlink(missing_ok=True)
    shutil.rmtree(directory / "estimate_accuracy.duckdb.warehouse_batch", ignore_errors=True)
    csv = ROOT / "examples" / "reviews" / "reviews.csv"
    with duckdb.connect(str(db)) as con:  # review_sentiment.sql reads a `reviews` table
        con.execute(f"CREATE TABLE reviews AS SELECT * FROM read_csv('{csv}', header = true)")
    os.environ.setdefault("OPENAI_API_KEY", "emulator")
    previous = Path.cwd()
    os.chdir(ROOT)  # the other two jobs read examples/reviews/reviews.csv by a relative path
    try:
        with Emulator(EmulatorConfig()) as emulator:
            out = []
            for name in ACCURACY_JOBS:
                job = ROOT / "examples" / "reviews" / f"{name}.sql"
                wb.run(job, db, wait=True, poll_interval=0.05, base_url=emulator.base_url)
                with duckdb.connect(str(db), read_only=True) as con:
                    cur = con.execute("SELECT * FROM warehouse_batch.estimate_vs_actual WHERE job_name = ? "
                                      "ORDER BY started_at DESC LIMIT 1", [name])
                    out.append(dict(zip([d[0] for d in cur.description], cur.fetchone())))
            return out
    finally:
        os.chdir(previous)


def print_accuracy(rows: list[dict]) -> None:
    def pct(x: float | None) -> str:
        return "—" if x is None else f"{x:+.2%}"

    def usd(x: float | None) -> str:
        return "—" if x is None else f"${x:.6f}"

    table = []
    for r in rows:
        table.append([
            r["job_name"], f"{r['requests_answered']}/{r['requests_sent']}",
            f"{r['est_input_tokens']:,} → {r['input_tokens']:,}", pct(r["input_tokens_error"]),
            f"{r['est_output_expected']:,} (≤ {r['est_output_upper_bound']:,}) → {r['output_tokens']:,}",
            pct(r["output_tokens_error"]),
            f"{usd(r['est_cost_usd_expected'])} (≤ {usd(r['est_cost_usd_upper_bound'])}) → {usd(r['cost_usd'])}",
            pct(r["cost_error"]),
        ])
    h.print_table("Estimate vs actual on the emulator (example reviews; goals: cost ±10%, input tokens ±2%)",
                  ["job", "answered", "input tokens est → actual", "error", "output tokens exp (max) → actual",
                   "error", "cost exp (max) → actual", "error"], table)
    for r in rows:
        print(f"  {r['job_name']}: input {r['est_input_method']}; output {r['est_output_method']}")


# -- parent --------------------------------------------------------------------------------------
def main() -> None:
    p = h.parser(__doc__.splitlines()[1], 1_000_000)
    p.add_argument("--sample", type=int, default=10_000, help="bodies counted by the sampled approach (default 10,000)")
    p.add_argument("--accuracy-only", action="store_true",
                   help="only the estimate-vs-actual runs of the example jobs on the emulator (seconds)")
    args = h.finish_args(p.parse_args())
    if args.child:
        child(args)
        return

    cache = _data.cache_dir(args.cache_dir)
    accurate = accuracy(cache)
    if args.accuracy_only:
        print_accuracy(accurate)
        h.emit_json(args, "estimate", {"accuracy": accurate})
        return
    t0 = time.perf_counter()
    src = _data.reviews_db(args.rows, seed=args.seed, directory=cache)
    schema_mode = _data.resolve_schema_mode(args.schema_mode)
    template = _data.body_template(_data.make_job(schema_mode=schema_mode))
    db = bodies_db(src, template, args.rows, args.seed, cache)
    h.log(f"data: {db} ({time.perf_counter() - t0:.1f} s to build or find)")
    profile = _data.data_profile(src)

    measured = h.measure(__file__, args, APPROACHES, payload=lambda a, i: {"db": str(db), "sample": args.sample})
    by = {m.approach.key: m for m in measured}
    base, exact = by["bytes4"], by["exact"]
    truth = exact.extra().get("input_tokens") if not exact.skipped else None
    rows_out = []
    for m in measured:
        if m.skipped:
            rows_out.append([m.approach.label, m.skipped] + [""] * 6)
            continue
        extra = m.extra()
        total = extra["input_tokens"]
        covered = ""
        if "low" in extra and truth is not None and extra["method"] != "exact":
            covered = "yes" if extra["low"] <= truth <= extra["high"] else "NO"
        rows_out.append([
            m.approach.label,
            f"{m.median:.2f} ({m.lo:.2f}–{m.hi:.2f})",
            f"{args.rows / m.median:,.0f}",
            h.fmt_ratio(m.median / base.median) if not base.skipped else "—",
            f"{m.rss:,.0f}",
            f"{total:,}",
            h.fmt_ratio(total / truth) if truth else "—",
            f"{extra['method']}" + (f" (truth inside: {covered})" if covered else ""),
        ])
    print(f"\nEstimate input tokens of {args.rows:,} chat request bodies — median of {args.repeat} run(s), fresh process each")
    print(f"data: {profile['rows']:,} reviews, mean {profile['mean_chars']:.0f} chars; body = system prompt + review + "
          f"json_schema ({schema_mode}); sample = {args.sample:,}")
    h.print_table("", ["approach", "seconds (min–max)", "rows/s", "× (a)", "peak RSS MB", "input tokens",
                       "× exact", "method"], rows_out)
    print_accuracy(accurate)
    print(f"environment: {h.environment()}")
    h.emit_json(args, "estimate", {"data": profile, "sample": args.sample, "schema_mode": schema_mode,
                                   "approaches": [h.measured_dict(m, args.rows) for m in measured],
                                   "accuracy": accurate})


if __name__ == "__main__":
    main()
