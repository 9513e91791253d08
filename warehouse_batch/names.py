"""Names warehouse_batch gives things in the warehouse: its schema, derived tables, generated columns.

Every derived name is made here, so a table is never named two ways; temp tables are owned by a
handle (`TempTable`) that drops them however the block ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

from warehouse_batch.quoting import quote_ident

if TYPE_CHECKING:
    from warehouse_batch.warehouses.base import Warehouse

#: The schema that holds the metadata tables; reserved: no job may write a table in it.
SCHEMA = "warehouse_batch"
#: Prefix of the columns warehouse_batch adds to a job's rows (request hash, model, sizes...).
INTERNAL_PREFIX = "__wb_"

#: Columns the output table adds after the query's own (and the answer's typed columns). A query
#: column or schema field of the same name, in any case, would be shadowed: refused by name.
OUTPUT_COLUMNS = (
    "content",
    "status",
    "error_code",
    "error_message",
    "finish_reason",
    "refusal",
    "model",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "attempts",
    "request_hash",
    "batch_id",
    "completed_at",
    "is_stale",
    "answer_request_hash",
    "published_at",
)
#: Output columns a query may still have, because they mean something as input (a per-row model).
QUERY_MAY_HAVE = ("model",)


def rows_table(job_name: str) -> str:
    """The table that holds a job's query rows as of its last run (quoted, schema-qualified)."""
    return f"{SCHEMA}.{quote_ident(job_name + '__rows')}"


def rows_table_name(job_name: str) -> str:
    """The unqualified, unquoted name of `rows_table` (for a rename)."""
    return job_name + "__rows"


def stage_table(job_name: str) -> str:
    """Where a run compiles the job's query before it becomes the rows table."""
    return f"{SCHEMA}.{quote_ident(job_name + '__rows_next')}"


def is_reserved_column(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith(INTERNAL_PREFIX) or (lowered in OUTPUT_COLUMNS and lowered not in QUERY_MAY_HAVE)


class TempTable:
    """A temp table owned by a `with` block: dropped when the block ends, however it ends."""

    def __init__(self, warehouse: Warehouse, name: str):
        self.warehouse = warehouse
        self.name = f"temp.{quote_ident(name)}"

    def drop(self) -> None:
        self.warehouse.execute(f"DROP TABLE IF EXISTS {self.name}")


@contextmanager
def temp_table(warehouse: Warehouse, name: str) -> Iterator[TempTable]:
    table = TempTable(warehouse, name)
    table.drop()
    try:
        yield table
    except BaseException:
        # The block may have left an aborted transaction (an error, Ctrl-C) where the drop fails
        # too; what went wrong is the error to show. The next `temp_table` of the name drops it.
        with suppress(Exception):
            table.drop()
        raise
    table.drop()
