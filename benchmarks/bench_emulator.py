#!/usr/bin/env python
"""Does the emulator hold a big job? N requests through the real `openai` SDK, emulator in its own process.

    .venv/bin/python benchmarks/bench_emulator.py                          # 100k, 1M, 10M requests
    .venv/bin/python benchmarks/bench_emulator.py --sizes 20000,100000     # a quick look
    .venv/bin/python benchmarks/bench_emulator.py --json emulator.json --plot emulator.png

Per size, a fresh emulator process (`serve()` on a free loopback port, default `EmulatorConfig()`,
no state_dir: big files go to its temporary directory) and, in this process, the library's
`OpenAIBatchProvider` (the official SDK over loopback) doing what a run does with the shards:

* `submit`   — per 50,000-line shard (the benchmark job's request lines, built by DuckDB from the
               reviews table, byte-identical bodies to warehouse_batch's): write it, `upload`,
               `create` the batch, delete the local file. Every batch is created before any poll.
* `complete` — `retrieve` each batch (creation order) until terminal: the emulator's worker parses,
               validates and answers every line meanwhile.
* `collect`  — `download` each output file (streamed to disk), count its lines and status codes,
               delete the batch's input and output files on the emulator (as a run does).

Reported per size: seconds per phase, and the emulator process's peak RSS (VmHWM) and final RSS;
requests the emulator counted; output lines and their status codes. Checked: every request has one
output line with status 200. It exits 1 when the emulator's peak RSS at the largest size exceeds
`--max-rss` MB or grows beyond `--growth` × its peak at the reference size (1M, else the
second-largest): the emulator's memory must not grow with the job. Times are reported, never judged.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _data  # noqa: E402
import _harness as h  # noqa: E402

SHARD_LINES = 50_000
PHASES = ["submit", "complete", "collect"]


def serve() -> None:
    """The emulator process: print the base URL, serve until terminated."""
    from warehouse_batch.emulator import EmulatorConfig
    from warehouse_batch.emulator.server import serve as run

    run(EmulatorConfig(), port=0)


def rss_mb(pid: int) -> tuple[float, float]:
    """(peak, current) resident set of a process, MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0]) / 1024.0
    return values["VmHWM"], values["VmRSS"]


def start_emulator() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "base URL" not in line:
        proc.kill()
        raise SystemExit(f"the emulator did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[1].strip()


def shard_lines(src: Path, job) -> tuple[object, object]:
    """A DuckDB connection and a reader of the request lines, SHARD_LINES per record batch."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
    line = _data.request_line_sql(_data.body_template(job))
    reader = con.sql(f"SELECT {line} AS line FROM src.reviews").to_arrow_reader(SHARD_LINES)
    return con, reader


def measure_size(rows: int, args, cache: Path) -> dict:
    from warehouse_batch.jobs import METADATA_SHARD_KEY
    from warehouse_batch.providers.openai import OpenAIBatchProvider

    src = _data.reviews_db(rows, seed=args.seed, directory=cache)
    job = _data.make_job(schema_mode=_data.resolve_schema_mode("auto"))
    work = cache / "runs" / f"emulator_{rows}"
    work.mkdir(parents=True, exist_ok=True)
    proc, base_url = start_emulator()
    result: dict = {"seconds": {}}
    try:
        provider = OpenAIBatchProvider(base_url=base_url, api_key="bench", timeout=600.0)
        since = time.time()
        batches: list[tuple[str, str]] = []  # (batch id, input file id)
        con, reader = shard_lines(src, job)
        t0 = time.perf_counter()
        pending: list[str] = []
        sent = 0

        def send(lines: list[str]) -> None:
            nonlocal sent
            n = len(batches)
            path = work / f"shard_{n:05d}.jsonl"
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            file_id = provider.upload(path, path.name)
            path.unlink()
            info = provider.create(input_ref=file_id, endpoint=_data.ENDPOINT, completion_window="24h",
                                   metadata={METADATA_SHARD_KEY: f"bench-{n}"}, since=since)
            batches.append((info.id, file_id))
            sent += len(lines)

        for batch in reader:  # record batches may be shorter than asked: regroup into full shards
            pending += batch.column(0).to_pylist()
            while len(pending) >= SHARD_LINES:
                send(pending[:SHARD_LINES])
                pending = pending[SHARD_LINES:]
        if pending:
            send(pending)
        con.close()
        result["seconds"]["submit"] = time.perf_counter() - t0
        h.log(f"{rows:>11,}  submit   {result['seconds']['submit']:8.1f} s  {len(batches)} batches  "
              f"emulator peak {rss_mb(proc.pid)[0]:6.0f} MB")

        t1 = time.perf_counter()
        infos = []
        for batch_id, _ in batches:
            info = provider.retrieve(batch_id)
            while not info.terminal:
                time.sleep(args.poll)
                info = provider.retrieve(batch_id)
            infos.append(info)
        result["seconds"]["complete"] = time.perf_counter() - t1
        h.log(f"{rows:>11,}  complete {result['seconds']['complete']:8.1f} s  "
              f"emulator peak {rss_mb(proc.pid)[0]:6.0f} MB")

        t2 = time.perf_counter()
        lines = 0
        statuses: dict[str, int] = {}
        for (batch_id, input_id), info in zip(batches, infos):
            for kind, ref in provider.result_files(info):
                dest = provider.download(ref, work / f"{batch_id}_{kind}.jsonl")
                with open(dest, "rb") as handle:
                    for raw in handle:
                        lines += 1
                        code = json.loads(raw)["response"]["status_code"]
                        statuses[str(code)] = statuses.get(str(code), 0) + 1
                dest.unlink()
                provider.delete_file(ref)
            provider.delete_file(input_id)
        result["seconds"]["collect"] = time.perf_counter() - t2
        peak, current = rss_mb(proc.pid)
        counters = _admin_counters(base_url)
        result.update(
            rows=rows, batches=len(batches), requests_sent=sent, output_lines=lines, statuses=statuses,
            completed=sum(i.completed or 0 for i in infos), statuses_batches=sorted({i.status for i in infos}),
            requests_received=counters.get("requests_received"), emulator_peak_mb=peak, emulator_rss_end_mb=current,
        )
        h.log(f"{rows:>11,}  collect  {result['seconds']['collect']:8.1f} s  emulator peak {peak:6.0f} MB, "
              f"{current:6.0f} MB at the end; {lines:,} lines {statuses}")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return result


def _admin_counters(base_url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_emulator/counters", timeout=600) as answer:
        return json.loads(answer.read())


def plot(path: Path, sizes: list[int], table: dict[int, dict], max_rss: float) -> None:
    with h.growth_figure(path, "warehouse_batch emulator: a job of N requests through the openai SDK (own process)",
                         "requests", (("emulator peak RSS", "MB"), ("seconds per phase (client side)", "s")),
                         max_rss) as (ax_rss, ax_s):
        ax_rss.plot(sizes, [table[n]["emulator_peak_mb"] for n in sizes], marker="o", label="emulator peak RSS")
        for phase in PHASES:
            ax_s.plot(sizes, [table[n]["seconds"][phase] for n in sizes], marker="o", label=phase)
        ax_s.set_yscale("log")
        ax_rss.set_ylim(0, max([max_rss * 1.15] + [table[n]["emulator_peak_mb"] * 1.1 for n in sizes]))
        ax_rss.legend(fontsize=8)
        ax_s.legend(fontsize=8)


def main() -> None:
    p = h.sizes_parser(__doc__.splitlines()[1], measured="the emulator", plot_default="none")
    p.add_argument("--poll", type=float, default=0.2, help="seconds between polls of an unfinished batch")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve()
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    cache = _data.cache_dir(args.cache_dir)
    table = {rows: measure_size(rows, args, cache) for rows in sizes}

    largest, reference = sizes[-1], h.reference_size(sizes)
    head = ["requests", "batches"] + [f"{ph} s" for ph in PHASES] + ["emulator peak MB", "at end MB", "output lines"]
    body = [[f"{n:,}", str(table[n]["batches"])] + [f"{table[n]['seconds'][ph]:.1f}" for ph in PHASES]
            + [f"{table[n]['emulator_peak_mb']:,.0f}", f"{table[n]['emulator_rss_end_mb']:,.0f}",
               f"{table[n]['output_lines']:,}"] for n in sizes]
    print(f"\nThe emulator (own process) holding jobs of {', '.join(f'{n:,}' for n in sizes)} requests")
    h.print_table("", head, body)
    growth = table[largest]["emulator_peak_mb"] / table[reference]["emulator_peak_mb"]
    print(f"emulator peak RSS {largest:,} / {reference:,} requests: {growth:.2f}×; load average {os.getloadavg()}")
    print(f"environment: {h.environment()}")
    failures = []
    for n in sizes:
        t = table[n]
        if t["output_lines"] != n or t["statuses"] != {"200": n} or t["requests_received"] != n:
            failures.append(f"{n:,} requests: {t['output_lines']:,} output lines {t['statuses']}, "
                            f"emulator received {t['requests_received']}")
    if failures:
        print("WRONG RESULTS:\n  " + "\n  ".join(failures))
        raise SystemExit(2)
    if args.json:  # before the plot: figures of a long run are never lost to a missing matplotlib
        Path(args.json).write_text(json.dumps({"sizes": sizes, "results": table, "load": os.getloadavg(),
                                               "environment": h.environment()}, indent=2, default=str))
    if args.plot:
        plot(Path(args.plot), sizes, table, args.max_rss)  # needs the `bench` extra (matplotlib)
    bound = []
    if table[largest]["emulator_peak_mb"] > args.max_rss:
        bound.append(f"emulator peak {table[largest]['emulator_peak_mb']:.0f} MB at {largest:,} > {args.max_rss:.0f} MB")
    if largest != reference and growth > args.growth:
        bound.append(f"emulator peak grew {growth:.2f}× from {reference:,} to {largest:,} (bound {args.growth:.2f}×)")
    h.memory_verdict(bound, f"memory bound met: emulator ≤ {args.max_rss:.0f} MB at {largest:,} requests and "
                            f"within {args.growth:.2f}× of {reference:,}")


if __name__ == "__main__":
    main()
