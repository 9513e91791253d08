"""warehouse_batch: run LLM workloads from SQL through the OpenAI Batch API, tracked in your warehouse.

    import warehouse_batch as wb
    report = wb.run("examples/reviews/review_sentiment.sql", db="reviews.duckdb", wait=True)
"""

from warehouse_batch.api import cancel, collect, open_runner, plan, retry, run, status, sync
from warehouse_batch.errors import (
    ConfigError,
    DiskFullError,
    JobError,
    JobsFailedError,
    NotFoundError,
    ProviderError,
    RowsFailedError,
    StoppedError,
    TimedOutError,
    ValidationError,
    WarehouseBatchError,
)
from warehouse_batch.jobs import Job
from warehouse_batch.runner import Report

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DiskFullError",
    "Job",
    "JobError",
    "JobsFailedError",
    "NotFoundError",
    "ProviderError",
    "Report",
    "RowsFailedError",
    "StoppedError",
    "TimedOutError",
    "ValidationError",
    "WarehouseBatchError",
    "cancel",
    "collect",
    "open_runner",
    "plan",
    "retry",
    "run",
    "status",
    "sync",
]
