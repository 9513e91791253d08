"""Give the memory Arrow freed back to the system once a streaming step ends.

pyarrow's default pool (mimalloc in the Linux wheels) keeps what a step freed for its next
allocations. After token counting or shard writing it held about 70 MB that no later step of the
process used, and the next step's DuckDB memory limit came on top: `run`'s publish of 1M rows peaked
at 600 MB instead of 523 (benchmarks/RESULTS.md, 2026-12-03).
"""

from __future__ import annotations

import pyarrow as pa


def release_unused() -> None:
    """Return the pool's unused memory to the system (cheap: nothing in use is touched)."""
    pa.default_memory_pool().release_unused()


__all__ = ["release_unused"]
