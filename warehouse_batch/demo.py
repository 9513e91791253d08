"""`warehouse-batch demo`: the example job, end to end, on the built-in emulator."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

import pyarrow.csv

from warehouse_batch import api
from warehouse_batch.emulator import Emulator, EmulatorConfig
from warehouse_batch.errors import ConfigError
from warehouse_batch.progress import Reporter
from warehouse_batch.warehouses import Database, is_postgres_uri, open_warehouse
from warehouse_batch.warehouses.postgres import redact

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "reviews"


#: The joined sample, in SQL that DuckDB and PostgreSQL both run (it runs in the warehouse).
_SAMPLE = """
    SELECT r.review_id, left(replace(r.review_text, chr(10), ' '), 60) AS review, s.content, s.status
    FROM reviews AS r JOIN review_sentiment AS s ON s.custom_id = r.review_id
    ORDER BY r.review_id LIMIT 8
"""


def run_demo(directory: Path, *, console: Console, reporter: Reporter, db: Database | None = None) -> None:
    """db: the warehouse (default DIR/reviews.duckdb); a PostgreSQL URI runs the demo there, its
    tables `reviews` and `review_sentiment` in the default schema, shards under DIR/work."""
    csv_path, job_path = EXAMPLES / "reviews.csv", EXAMPLES / "review_sentiment.sql"
    if not csv_path.exists():
        raise ConfigError(
            f"the demo data is not at {csv_path}; run the demo from a clone of the repository "
            "(pip install -e . in its root)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    postgres = db is not None and is_postgres_uri(db)
    db = directory / "reviews.duckdb" if db is None else db
    shown = redact(str(db)) if postgres else str(db)
    settings = {"work_dir": directory / "work"} if postgres else {}
    # Emulator state persists beside the database, so an interrupted demo resumes its batches.
    config = EmulatorConfig(validation_delay=1.0, request_time=0.01, state_dir=str(directory / "emulator"))
    with Emulator(config) as emu:
        with open_warehouse(db, **settings) as warehouse:  # the demo's own source table, written with the bulk path
            warehouse.write_table("reviews", pyarrow.csv.read_csv(csv_path).to_reader(), "replace")
            work_dir = warehouse.work_dir
        console.print(f"emulator: {emu.base_url}   warehouse: {shown}   job: {job_path}\n", highlight=False)
        report = api.run(job_path, db, wait=True, poll_interval=0.5, base_url=emu.base_url, api_key="emulator",
                         reporter=reporter, **settings)
    with open_warehouse(db, **settings) as warehouse:
        sample = warehouse.execute(f"SELECT * FROM {warehouse.query_source(_SAMPLE)} ORDER BY 1").fetchall()
    table = Table("review_id", "review", "content", "status",
                  title="SELECT r.review_id, r.review_text, s.content, s.status FROM reviews r JOIN review_sentiment s ...",
                  title_justify="left")
    for row in sample:
        table.add_row(*(str(v) for v in row))
    console.print(table)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.statuses.items()))
    console.print(
        f"\n{report.counts.rows if report.counts else 0} rows → table review_sentiment ({counts}).\n"
        "The answers come from the built-in offline emulator (a deterministic stand-in for the model: a small "
        "sentiment lexicon), not from OpenAI.\n"
        f"Warehouse: {shown} (metadata in schema warehouse_batch: jobs, runs, requests, batches, results, job_status)\n"
        f"Shards and downloaded results: {work_dir}\n"
        + (f"Try: psql '{shown}' -c \"SELECT status, count(*) FROM review_sentiment GROUP BY 1\"\n" if postgres else
           f"Try (with the duckdb CLI): duckdb {db} \"SELECT status, count(*) FROM review_sentiment GROUP BY ALL\"\n")
        + "Run the demo again: every answer is cached, nothing is sent twice.",
        highlight=False,
    )
