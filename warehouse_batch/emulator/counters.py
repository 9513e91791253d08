"""Call and traffic counters that tests read through `counters()` or the admin API."""
from __future__ import annotations

import threading
from collections import Counter
from typing import Any

CUSTOM_ID_CAP = 100_000  # beyond this many distinct ids the map is dropped (memory)


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.files_uploaded = 0
        self.bytes_uploaded = 0
        self.batches_created = 0
        self.batch_create_calls = 0
        self.requests_received = 0
        self.batches_cancelled = 0
        self.sync_requests = 0
        self.faults_injected = 0
        self.retries = 0
        self.webhooks_sent = 0
        self.calls: Counter[str] = Counter()
        self.custom_ids: Counter[str] | None = Counter()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def call(self, key: str, retry_count: int) -> None:
        with self._lock:
            self.calls[key] += 1
            if retry_count > 0:
                self.retries += 1

    def received(self, custom_ids: list[str]) -> None:
        with self._lock:
            self.requests_received += len(custom_ids)
            if self.custom_ids is None:
                return
            self.custom_ids.update(custom_ids)
            if len(self.custom_ids) >= CUSTOM_ID_CAP:
                self.custom_ids = None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {
                "files_uploaded": self.files_uploaded,
                "bytes_uploaded": self.bytes_uploaded,
                "batches_created": self.batches_created,
                "batch_create_calls": self.batch_create_calls,
                "requests_received": self.requests_received,
                "batches_cancelled": self.batches_cancelled,
                "calls": dict(self.calls),
                "retries": self.retries,
                "sync_requests": self.sync_requests,
                "faults_injected": self.faults_injected,
                "webhooks_sent": self.webhooks_sent,
            }
            if self.custom_ids is not None:
                out["custom_ids_received"] = dict(self.custom_ids)
            return out
