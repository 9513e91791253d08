"""Shared benchmark machinery: options, one fresh subprocess per measured run, medians, tables.

A script calls `main(spec)`. The parent process parses the options, prepares data, then runs every
approach `--repeat` times, round-robin, each run in a fresh `python <script> --child ...` process,
so peak RSS (`ru_maxrss` of that process) is per run. The child times only the core operation
(imports and set-up excluded) and prints one `BENCH_RESULT {json}` line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MARK = "BENCH_RESULT "


# -- child side ----------------------------------------------------------------------------------
class Steps:
    """Wall time and peak RSS per named step, over all its calls (wrap library functions to
    attribute them). A step's peak comes from resetting the kernel's high-water mark (VmHWM) when
    it starts (Linux `clear_refs`); `peak_rss_mb` still reports the whole process's peak."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.marks: dict[str, float] = {}  # step boundary → seconds since the start
        self.rss_mb: dict[str, float] = {}  # step → its peak RSS
        self._open: list[list[float]] = []  # peak so far of each running step, innermost last

    @contextmanager
    def step(self, name: str):
        self.seconds.setdefault(name, 0.0)  # listed in the order steps start
        self._enter()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            self.calls[name] = self.calls.get(name, 0) + 1
            self.rss_mb[name] = max(self.rss_mb.get(name, 0.0), self._leave())

    def _enter(self) -> None:
        now = _high_water_mb()  # the enclosing steps' peak up to here, before the reset forgets it
        for frame in self._open:
            frame[0] = max(frame[0], now)
        _reset_peak()
        self._open.append([0.0])

    def _leave(self) -> float:
        peak = max(self._open.pop()[0], _high_water_mb())
        for frame in self._open:
            frame[0] = max(frame[0], peak)
        return peak

    def wrap(self, owner: Any, attr: str, name: str | None = None) -> None:
        """Replace owner.attr with a timed wrapper (in this process only; library code is untouched).

        A name the library no longer has is skipped: the breakdown is best effort, the total is not."""
        original = getattr(owner, attr, None)
        if original is None:
            return
        label = name or attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.step(label):
                return original(*args, **kwargs)

        setattr(owner, attr, timed)


class StopHere(Exception):
    """Raised at a failpoint to end a library call at a step boundary."""


def hook_failpoints(steps: Steps, t0: list[float], stop_at: str | None = None) -> None:
    """Time the run at the library's own step boundaries (its crash-test failpoints), in this process.

    `warehouse_batch.runner.failpoint(name)` is replaced by a function that records the seconds
    since `t0[0]` the first time each boundary is reached, and raises StopHere at `stop_at`."""
    from warehouse_batch import runner

    original = runner.failpoint

    def boundary(name: str) -> None:
        steps.marks.setdefault(name, time.perf_counter() - t0[0])
        if name == stop_at:
            raise StopHere(name)
        original(name)

    runner.failpoint = boundary


def profile_sql(steps: Steps) -> None:
    """Time every statement the library sends through `DuckDBWarehouse.execute` (in this process only).

    Each statement is a step named by its first words, so the breakdown shows which SQL costs what.
    Streaming reads (`con.sql(...).to_arrow_reader`) are not seen here; their callers are timed."""
    import re

    from warehouse_batch.warehouses import DuckDBWarehouse as Store

    original = Store.execute

    def execute(self, sql, params=None):
        words = re.sub(r"\s+", " ", sql).strip()
        with steps.step("SQL " + words[:110]):
            return original(self, sql, params)

    Store.execute = execute


_FORGOTTEN_PEAK = [0.0]  # the process's peak before the last reset of VmHWM (Steps)


def peak_rss_mb() -> float:
    """Peak RSS of this process. VmHWM (Linux) belongs to the exec'd image alone; ru_maxrss would also
    carry the parent's RSS at fork time, which can exceed a small child's own peak."""
    return max(_FORGOTTEN_PEAK[0], _high_water_mb())


def _high_water_mb() -> float:
    """VmHWM: the peak RSS since the process started or since the last `_reset_peak`."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _reset_peak() -> None:
    """Start VmHWM again from the current RSS (remembering the process's peak so far)."""
    _FORGOTTEN_PEAK[0] = peak_rss_mb()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux: step peaks are the process's peak so far


def report(seconds: float, steps: Steps | None = None, **extra: Any) -> None:
    """Print the child's result line (the parent reads the last one)."""
    out = {"seconds": seconds, "rss_mb": peak_rss_mb(), "extra": extra}
    if steps is not None:
        out["steps"] = steps.seconds
        out["step_calls"] = steps.calls
        out["marks"] = steps.marks
        out["step_rss_mb"] = steps.rss_mb
    sys.stdout.write(MARK + json.dumps(out, default=str) + "\n")
    sys.stdout.flush()


# -- parent side ---------------------------------------------------------------------------------
@dataclass
class Approach:
    key: str  # passed to the child as --child KEY
    label: str
    available: Callable[[], str | None] = lambda: None  # returns a reason when it cannot run
    note: str = ""


@dataclass
class Measured:
    approach: Approach
    runs: list[dict[str, Any]] = field(default_factory=list)
    skipped: str | None = None

    def _values(self, key: str) -> list[float]:
        return [r[key] for r in self.runs]

    @property
    def median(self) -> float:
        return statistics.median(self._values("seconds"))

    @property
    def lo(self) -> float:
        return min(self._values("seconds"))

    @property
    def hi(self) -> float:
        return max(self._values("seconds"))

    @property
    def rss(self) -> float:
        return statistics.median(self._values("rss_mb"))

    @property
    def rss_max(self) -> float:
        return max(self._values("rss_mb"))

    def median_steps(self) -> dict[str, float]:
        names: list[str] = []
        for r in self.runs:
            names += [n for n in r.get("steps", {}) if n not in names]
        return {n: statistics.median(r.get("steps", {}).get(n, 0.0) for r in self.runs) for n in names}

    def median_marks(self) -> dict[str, float]:
        names: list[str] = []
        for r in self.runs:
            names += [n for n in r.get("marks", {}) if n not in names]
        return {n: statistics.median(r.get("marks", {}).get(n, 0.0) for r in self.runs) for n in names}

    def extra(self) -> dict[str, Any]:
        return self.runs[-1].get("extra", {}) if self.runs else {}


def parser(description: str, default_rows: int, quick_rows: int = 20_000) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--rows", type=int, default=None, help=f"rows (default {default_rows:,}; --quick: {quick_rows:,})")
    p.add_argument("--quick", action="store_true", help=f"smoke run on {quick_rows:,} rows, 1 repeat unless --repeat")
    p.add_argument("--repeat", type=int, default=None, help="measured runs per approach (default 3; --quick: 1)")
    p.add_argument("--json", dest="json_path", metavar="PATH", nargs="?", const="-", default=None,
                   help="also write the figures as JSON to PATH (or stdout with no PATH)")
    p.add_argument("--cache-dir", default=None, help="where generated data is cached (default $TMPDIR/warehouse_batch_bench)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=None, help="DuckDB threads for every approach (default: DuckDB's)")
    p.add_argument("--memory-limit", default=None, help="DuckDB memory_limit for every approach, e.g. 500MB")
    p.add_argument("--only", default=None, help="comma-separated approach keys to run")
    p.add_argument("--schema-mode", choices=("auto", "output_schema", "params"), default="auto",
                   help="answer format via the job's output_schema (typed columns) or a response_format param "
                        "(auto: output_schema when the library supports it)")
    p.add_argument("--profile-sql", action="store_true",
                   help="also time every SQL statement of warehouse_batch (DuckDBWarehouse.execute) in its breakdown")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-args", default=None, help=argparse.SUPPRESS)
    p.set_defaults(_default_rows=default_rows, _quick_rows=quick_rows)
    return p


def sizes_parser(description: str, *, measured: str, plot_default: str) -> argparse.ArgumentParser:
    """Options of the benchmarks that draw cost against size (bench_scale, bench_emulator): the
    sizes, the memory bound they judge (`measured`: what must stay under it), --plot, --json."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--sizes", default="100000,1000000,10000000")
    p.add_argument("--max-rss", type=float, default=600.0, help=f"MB {measured} may not exceed at the largest size")
    p.add_argument("--growth", type=float, default=1.2,
                   help=f"largest size's peak / reference size's peak of {measured} must stay under this")
    p.add_argument("--plot", default=None, help=f"PNG path (default: {plot_default})")
    p.add_argument("--json", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--seed", type=int, default=42)
    return p


def reference_size(sizes: list[int]) -> int:
    """The size the largest one's peak is compared with: 1M when measured, else the next largest."""
    largest = sizes[-1]
    return 1_000_000 if 1_000_000 in sizes and largest != 1_000_000 else (sizes[-2] if len(sizes) > 1 else largest)


@contextmanager
def growth_figure(path: Path, title: str, x_label: str, panels: tuple[tuple[str, str], tuple[str, str]],
                  max_rss: float):
    """Two panels against size on a log axis (peak RSS with the bound drawn, and seconds), saved
    to `path` as a PNG when the block ends. Needs the `bench` extra (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rss, ax_s) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax_rss.axhline(max_rss, color="grey", linestyle="--", linewidth=1, label=f"{max_rss:.0f} MB bound")
    yield ax_rss, ax_s
    for ax, (panel, unit) in zip((ax_rss, ax_s), panels):
        ax.set_xscale("log")
        ax.set_xlabel(x_label)
        ax.set_ylabel(unit)
        ax.set_title(panel)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    log(f"plot written to {path}")


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    if args.rows is None:
        args.rows = args._quick_rows if args.quick else args._default_rows
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    return args


def run_child(script: str, key: str, args: argparse.Namespace, payload: dict[str, Any]) -> dict[str, Any]:
    """One measured run in a fresh interpreter; returns its result dict (plus process wall time)."""
    os.sync()  # written data of the previous run goes to disk outside the timed region
    cmd = [sys.executable, script, "--child", key, "--rows", str(args.rows), "--seed", str(args.seed),
           "--child-args", json.dumps(payload)]
    if args.cache_dir:
        cmd += ["--cache-dir", args.cache_dir]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.memory_limit:
        cmd += ["--memory-limit", args.memory_limit]
    if getattr(args, "profile_sql", False):
        cmd += ["--profile-sql"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"benchmark child {key!r} failed (exit {proc.returncode})")
    result = json.loads(lines[-1][len(MARK):])
    result["process_seconds"] = wall
    return result


def measure(script: str, args: argparse.Namespace, approaches: list[Approach],
            payload: Callable[[Approach, int], dict[str, Any]] | None = None,
            before_run: Callable[[Approach, int], None] | None = None) -> list[Measured]:
    """Run every available approach `args.repeat` times, round-robin, each in a fresh process."""
    only = set(args.only.split(",")) if args.only else None
    measured = []
    for a in approaches:
        m = Measured(a)
        if only is not None and a.key not in only:
            m.skipped = "not selected (--only)"
        else:
            m.skipped = a.available()
        measured.append(m)
    for i in range(args.repeat):
        for m in measured:
            if m.skipped:
                continue
            if before_run:
                before_run(m.approach, i)
            data = payload(m.approach, i) if payload else {}
            result = run_child(script, m.approach.key, args, data)
            m.runs.append(result)
            log(f"  run {i + 1}/{args.repeat} {m.approach.label}: {result['seconds']:.2f} s, "
                f"peak RSS {result['rss_mb']:.0f} MB")
    return measured


# -- output --------------------------------------------------------------------------------------
class ChildFailed(Exception):
    """A measured child process failed (e.g. DuckDB ran out of its memory limit): reported, never hidden."""


def run_script_child(script: str, key: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Run `script --child KEY --payload JSON` in a fresh process; its result line, or ChildFailed
    with the last error line it printed."""
    proc = subprocess.run([sys.executable, script, "--child", key, "--payload", json.dumps(payload)],
                          capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-2000:])
        errors = [line for line in proc.stderr.splitlines() if "Error" in line or "Exception" in line]
        raise ChildFailed(errors[-1] if errors else f"exit {proc.returncode}")
    return json.loads(lines[-1][len(MARK):])


def memory_verdict(failures: list[str], met: str) -> None:
    """Print whether the memory bound held; exit 1 when it did not (benchmarks judge memory, tests never do)."""
    if failures:
        print("MEMORY BOUND NOT MET:\n  " + "\n  ".join(failures))
        raise SystemExit(1)
    print(met)


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def fmt_ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


def print_table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for i, h in enumerate(headers):
            table.add_column(h, justify="left" if i == 0 else "right")
        for r in rows:
            table.add_row(*r)
        Console(width=max(100, sum(max(len(h), *(len(r[i]) for r in rows)) + 3 for i, h in enumerate(headers)) + 4)).print(table)
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        print(title)
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print()


def print_steps(m: Measured, title: str) -> None:
    """The median time of each wrapped library function, and of the run at each step boundary."""
    if m.skipped or not m.runs:
        return
    steps = m.median_steps()
    if steps:
        calls = m.runs[-1].get("step_calls", {})
        peaks = m.runs[-1].get("step_rss_mb", {})
        print_table(f"{title}: time inside library functions (median s; indented = part of the line above)",
                    ["function", "calls", "seconds", "share of total", "peak RSS MB (last run)"],
                    [[n, str(calls.get(n, "")), f"{s:.2f}", f"{s / m.median:.0%}",
                      f"{peaks[n]:,.0f}" if n in peaks else ""] for n, s in steps.items()])
    marks = m.median_marks()
    if marks:
        rows, last = [], 0.0
        for n, t in sorted(marks.items(), key=lambda kv: kv[1]):
            rows.append([n, f"{t:.2f}", f"{t - last:.2f}"])
            last = t
        print_table(f"{title}: step boundaries reached (median s since start)", ["boundary", "at", "since previous"], rows)


def environment() -> dict[str, Any]:
    import platform

    import duckdb

    import warehouse_batch

    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "python": platform.python_version(),
            "duckdb": duckdb.__version__, "cpus": os.cpu_count(),
            "library": _shown_path(Path(warehouse_batch.__file__).parent.parent)}
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent)
        info["commit"] = out.stdout.strip()
        pinned = Path(warehouse_batch.__file__).parent.parent / ".commit"
        if pinned.exists():  # a `git archive` export pointed to by PYTHONPATH
            info["library_commit"] = pinned.read_text().strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", ":/warehouse_batch", ":/sql"], capture_output=True,
                               text=True, cwd=Path(__file__).parent)
        info["library_tree"] = "uncommitted changes" if dirty.stdout.strip() else "clean"
    except OSError:
        pass
    return info


def _shown_path(library: Path) -> str:
    """The library's folder, relative to this repository when it is this checkout (saved figures are
    committed and must make sense on any machine); a copy elsewhere (PYTHONPATH) shows in full."""
    repo = Path(__file__).resolve().parent.parent
    return "." if library.resolve() == repo else str(library)


def emit_json(args: argparse.Namespace, name: str, figures: dict[str, Any]) -> None:
    if not args.json_path:
        return
    doc = {"benchmark": name, "rows": args.rows, "repeat": args.repeat, "environment": environment(), **figures}
    text = json.dumps(doc, indent=2, default=str)
    if args.json_path == "-":
        print(text)
    else:
        Path(args.json_path).write_text(text + "\n")


def measured_dict(m: Measured, rows: int) -> dict[str, Any]:
    if m.skipped:
        return {"key": m.approach.key, "label": m.approach.label, "skipped": m.skipped}
    return {"key": m.approach.key, "label": m.approach.label, "median_s": m.median, "min_s": m.lo, "max_s": m.hi,
            "rows_per_s": rows / m.median, "peak_rss_mb": m.rss, "peak_rss_mb_max": m.rss_max,
            "steps_median_s": m.median_steps(), "marks_median_s": m.median_marks(), "runs": m.runs}
