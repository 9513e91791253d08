"""One root exception. Each subclass says whether waiting and re-running can fix it (transient)
and which process exit code the CLI uses for it, so scripts can branch on the cause."""

from __future__ import annotations

from typing import Any


class WarehouseBatchError(Exception):
    """Root of every error warehouse_batch raises on purpose. Messages say how to fix the cause."""

    exit_code: int = 1
    transient: bool = False


class JobError(WarehouseBatchError):
    """The job definition is wrong: unknown or invalid options, a query that does not parse or run."""

    exit_code = 3


class ValidationError(JobError):
    """The query ran, but some rows cannot become requests (NULL/duplicate custom_id, empty prompt...).

    Raised before anything is written or uploaded."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "the job's rows are not valid; nothing was uploaded:\n" + "\n".join(f"  - {p}" for p in problems)
        )


class ConfigError(WarehouseBatchError):
    """Missing or invalid configuration (API key, base URL, database path)."""

    exit_code = 2


class WarehouseBusyError(ConfigError):
    """Another process held the warehouse for longer than the lock timeout. Trying again later works."""

    transient = True


class DiskFullError(ConfigError):
    """The disk holding the work directory filled up. Nothing half-written is kept or recorded,
    so the same command, re-run after freeing space (or with --work-dir elsewhere), resumes."""


class ProviderError(WarehouseBatchError):
    """The provider refused or failed a call. transient=True means re-running later should succeed."""

    exit_code = 4

    def __init__(self, message: str, *, transient: bool = False, status_code: int | None = None,
                 code: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.transient = transient
        self.status_code = status_code  # the provider's HTTP status, when it answered
        self.code = code  # the provider's error code (e.g. token_limit_exceeded), when it gave one
        self.detail = detail  # the provider's own message, for `retries.create_refusal`

    @property
    def gone(self) -> bool:
        """The provider no longer has what we asked for (HTTP 404)."""
        return self.status_code == 404


class NotFoundError(WarehouseBatchError):
    """A job, run or batch named by the user does not exist in this warehouse."""

    exit_code = 3


class RowsFailedError(WarehouseBatchError):
    """The run finished but some rows did not complete; they are visible in the output table."""

    exit_code = 5


class StoppedError(WarehouseBatchError):
    """Stopped by SIGINT or SIGTERM. What was recorded stays; the same command resumes."""

    exit_code = 130


class TimedOutError(WarehouseBatchError):
    """`--wait --timeout` ran out while batches were still running; `collect`/`sync` continues later."""

    exit_code = 6


class JobsFailedError(WarehouseBatchError):
    """Some jobs' steps failed (each recorded on its job); every other job was handled."""

    exit_code = 4


def is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C / SIGTERM, however it surfaced. Inside a DuckDB query the signal handler's
    KeyboardInterrupt is turned into DuckDB's own interrupt error (a RuntimeError "Query
    interrupted" in the Python client), so both count."""
    if isinstance(exc, (KeyboardInterrupt, StoppedError)):
        return True
    name = type(exc).__name__
    return name == "InterruptException" or (isinstance(exc, RuntimeError) and "interrupted" in str(exc).lower())


def interrupt(signum: int, frame: Any) -> None:
    """A signal handler that stops like Ctrl-C: SIGTERM's default ends the process before any
    cleanup (temporary files, a transaction's rollback, the closing report) can run."""
    raise KeyboardInterrupt
