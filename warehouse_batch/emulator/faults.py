"""One-shot (or n-shot) faults injected into named API operations."""
from __future__ import annotations

import hashlib
import threading
from dataclasses import asdict, dataclass
from typing import Any

OPERATIONS = (
    "upload_file", "list_files", "retrieve_file", "download_file", "delete_file",
    "create_batch", "retrieve_batch", "list_batches", "cancel_batch",
    "chat_completions", "responses", "embeddings", "moderations", "completions",
    "any",  # matches every operation above
)

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", None),
    404: ("invalid_request_error", None),
    408: ("timeout", None),
    409: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", None),
}


@dataclass
class Fault:
    op: str
    status: int = 500
    times: int = 1
    retry_after: float | None = None
    drop: bool = False  # close the connection without an answer
    delay: float | None = None  # real seconds to wait, then answer normally
    truncate: bool = False  # file downloads: serve only the first half
    corrupt: bool = False  # file downloads: same length, but the middle line's JSON is garbled

    def error_body(self) -> dict[str, Any]:
        typ, code = _ERROR_TYPES.get(self.status, ("server_error" if self.status >= 500 else "invalid_request_error", None))
        message = "Rate limit reached (injected by the emulator)." if self.status == 429 else f"Injected fault: HTTP {self.status}."
        return {"error": {"message": message, "type": typ, "param": None, "code": code}}


class FaultRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        if fault.op not in OPERATIONS:
            raise ValueError(f"unknown operation {fault.op!r}; expected one of {', '.join(OPERATIONS)}")
        if fault.times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(fault)

    def take(self, op: str) -> Fault | None:
        """The first pending fault for `op`, consuming one of its `times`."""
        with self._lock:
            for fault in self._faults:
                if fault.op in (op, "any"):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


def picked(rate: float, *key: object) -> bool:
    """Deterministic draw: True for a `rate` fraction of keys, the same answer for the same key."""
    if rate <= 0:
        return False
    digest = hashlib.sha256("\x00".join(map(str, key)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate
