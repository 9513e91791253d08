"""The `BatchProvider` interface: everything the runner asks of a batch service.

A shard is a local JSONL file of our request lines. A provider turns it into an *input reference*
(`upload`: a file id at OpenAI; a provider whose batches are created from a list of requests, like
Anthropic's Message Batches, can keep the local path and read it at `create`), creates one batch per
shard tagged with metadata naming the shard (so a crash between create and record is reconciled by
`find_batches`), and hands results back as files of OpenAI batch output lines (`result_files` +
`download`; a provider whose results are one stream converts them while downloading), so the loader
never branches on the provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

#: Batch statuses after which nothing changes at the provider.
TERMINAL_STATUSES = ("completed", "failed", "expired", "cancelled")


@dataclass(frozen=True)
class BatchInfo:
    """What we keep of a provider batch object."""

    id: str
    status: str
    created_at: int | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    total: int | None = None
    completed: int | None = None
    failed: int | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class ProviderRules:
    """What a provider accepts, as data: checked when a job is defined (at `plan`), before any spend."""

    #: Batch endpoints it serves (None: every endpoint warehouse_batch knows).
    endpoints: tuple[str, ...] | None = None
    #: Why the others are refused, for the message.
    endpoints_note: str = ""
    max_requests_per_file: int = 50_000
    #: Shortest `expires_after` / `output_expires_after` it accepts (seconds).
    min_file_expiry: int = 3600
    #: Seconds the provider asks to leave between status checks of a batch.
    min_poll_interval: float = 0.0


@runtime_checkable
class BatchProvider(Protocol):
    """A batch service. Methods raise `errors.ProviderError` (with `transient` set by `retries`'
    one classification) on failure; `create` is the only call that could cost money twice and must
    adopt an existing batch after an ambiguous failure rather than create another."""

    name: str
    rules: ProviderRules
    #: Seconds to leave between two status checks of one batch (Azure asks for 60).
    min_poll_interval: float

    @property
    def location(self) -> str:
        """Where the provider is (a base URL without credentials), for messages."""

    def upload(self, path: Path, name: str, *, expires_after: int | None = None) -> str:
        """Make a shard file available to `create` (expiring `expires_after` seconds after upload);
        returns its input reference."""

    def file_exists(self, ref: str) -> bool:
        """Whether an uploaded input file is still there (after a "Cannot find file" refusal)."""

    def find_uploads(self, wanted: dict[str, int]) -> dict[str, str]:
        """Input references of earlier uploads among `wanted` (name → size): uploads whose reply was lost."""

    def create(self, *, input_ref: str, endpoint: str, completion_window: str, metadata: dict[str, str],
               since: float, output_expires_after: int | None = None) -> BatchInfo:
        """Create the shard's batch exactly once (metadata names the shard). A refusal raises
        ProviderError with the provider's `code` and `detail` (`retries.create_refusal` reads them)."""

    def find_batches(self, shard_ids: set[str], since: float) -> dict[str, BatchInfo]:
        """Our batches by shard tag, created since `since` (unix seconds)."""

    def retrieve(self, batch_id: str) -> BatchInfo: ...

    def result_files(self, info: BatchInfo) -> list[tuple[str, str]]:
        """(kind, reference) of each file of results a finished batch has: ("output", …), ("error", …)."""

    def download(self, ref: str, dest: Path) -> Path:
        """Write a result file, as OpenAI batch output lines, to `dest` atomically."""

    def cancel(self, batch_id: str) -> BatchInfo: ...

    def delete_file(self, ref: str) -> None:
        """Delete an uploaded input file (once its batch is finished and loaded)."""
