"""A DuckDB file another process holds: wait for it (plugin setting busy_timeout), or say so in one line.

DuckDB has one writer process per file. dbt-duckdb meets a held file with a long traceback ending
in "Could not set lock on file"; the plugin looks first, just before dbt opens the file, and either
waits until the holder lets go or stops the invocation with a message naming the holder and the fix.
"""

from __future__ import annotations

import re
import time
from typing import Any

import duckdb

from warehouse_batch.errors import WarehouseBusyError

_LOCK = "Could not set lock"


def wait_until_free(path: str, timeout: float, config: dict[str, Any] | None = None, *,
                    interval: float = 0.5) -> None:
    """Return once `path` can be opened for writing; raise WarehouseBusyError after `timeout` seconds."""
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        try:
            duckdb.connect(path, config=dict(config or {})).close()
            return
        except duckdb.Error as exc:
            text = str(exc)
            if _LOCK not in text:
                return  # not a lock problem: let dbt-duckdb open it and report whatever it is
            if time.monotonic() >= deadline:
                holder = re.search(r"\(PID (\d+)\)", text)
                who = f"process {holder.group(1)}" if holder else "another process"
                waited = f"waited {timeout:g} s; " if timeout else ""
                raise WarehouseBusyError(
                    f"the warehouse {path} is busy: {who} holds it ({waited}DuckDB allows one writer process per "
                    "file). Run dbt when it is done, or let dbt wait: plugin setting busy_timeout: <seconds>"
                ) from None
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
