"""The example dbt project end to end on the built-in emulator: `python -m warehouse_batch.dbt.demo`.

Copies examples/dbt_reviews into ./demo/dbt/project, starts the emulator in-process, and runs real
dbt-core: deps, seed, build (rows pending, the llm_batch_complete test warns), waits for the
emulator to finish the batches, build again (rows completed, the mart filled), the status
run-operation, and prints the mart. Run it twice: the second time nothing is sent.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import duckdb
import openai

from warehouse_batch.dbt.package import packages_yml
from warehouse_batch.emulator import Emulator, EmulatorConfig

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "dbt_reviews"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warehouse_batch.dbt.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("demo") / "dbt", help="working directory (default demo/dbt)")
    args = parser.parse_args(argv)
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
        from dbt.cli.main import dbtRunner
    except ImportError:
        print("dbt is not installed: pip install -e '.[dbt]' (dbt-core~=1.11.0, dbt-duckdb, numpy)", file=sys.stderr)
        return 2
    if not EXAMPLE.exists():
        print(f"the example project is not at {EXAMPLE}; run the demo from a clone of the repository", file=sys.stderr)
        return 2

    work = args.dir.resolve()
    project = work / "project"
    if project.exists():
        shutil.rmtree(project)
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(
        "target", "dbt_packages", "logs", "*.duckdb*", "package-lock.yml"))
    (project / "packages.yml").write_text(packages_yml(), encoding="utf-8")  # the installed dbt package
    db = work / "reviews.duckdb"

    def dbt(*command: str) -> bool:
        print(f"\n$ dbt {' '.join(command)}", flush=True)
        try:
            result = dbtRunner().invoke([*command, "--project-dir", str(project), "--profiles-dir", str(project)])
        finally:
            DuckDBConnectionManager.close_all_connections()  # release the DuckDB file between steps
        return result.success

    # The emulator keeps its state beside the database, so a second demo run finds its batches.
    config = EmulatorConfig(validation_delay=1.0, request_time=0.01, state_dir=str(work / "emulator"))
    with Emulator(config) as emu:
        # Point this process (and so dbt and the plugin) at the emulator, never at a real provider.
        os.environ.update(OPENAI_BASE_URL=emu.base_url, OPENAI_API_KEY="emulator", DBT_REVIEWS_DB=str(db),
                          WAREHOUSE_BATCH_SUBMIT="true", WAREHOUSE_BATCH_POLL_INTERVAL="1")
        os.environ.setdefault("DO_NOT_TRACK", "1")
        print(f"emulator: {emu.base_url}   warehouse: {db}   project: {project}", flush=True)
        steps = [("deps",), ("seed",), ("build",)]
        if not all(dbt(*step) for step in steps):
            return 1
        print("\nThe batches run at the provider now; a scheduled `dbt build` picks them up. Waiting...", flush=True)
        _wait_for_batches(emu.base_url)
        if not (dbt("build") and dbt("run-operation", "llm_batch_status")):
            return 1
    with duckdb.connect(str(db), read_only=True) as con:
        print("\nSELECT * FROM product_sentiment")
        con.sql("SELECT * FROM product_sentiment ORDER BY product").show(max_width=140)
    print(f"Warehouse: {db}. Run the demo again: every answer is cached, nothing is sent twice.")
    return 0


def _wait_for_batches(base_url: str, timeout: float = 120.0) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="emulator")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(b.status in ("completed", "failed", "expired", "cancelled") for b in client.batches.list()):
            return
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
