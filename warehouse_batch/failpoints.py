"""Named crash points for the crash tests: `WAREHOUSE_BATCH_FAILPOINT=<name>` kills the process there.

A failpoint costs one environment lookup; it is how tests prove that a run killed between any two
steps resumes without losing or duplicating work (the same idea as FoundationDB's and TiKV's).
"""

from __future__ import annotations

import os
import signal

ENV = "WAREHOUSE_BATCH_FAILPOINT"
POINTS = (
    "after_plan",  # rows, requests and the run are recorded; no shard written
    "mid_shard_write",  # a shard file is half written
    "after_shards_written",  # shard files complete on disk, not yet recorded
    "after_shards_recorded",  # batches rows in state 'written'
    "after_upload",  # the provider has the file; its id is not recorded
    "after_create",  # the provider has the batch; its id is not recorded
    "mid_poll",  # between retrieving two batches
    "after_download",  # result files on disk, nothing loaded
    "mid_load",  # results inserted inside the transaction, not committed
)


def failpoint(name: str) -> None:
    """Die here, at once and without cleanup (SIGKILL), when the environment asks for `name`."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
