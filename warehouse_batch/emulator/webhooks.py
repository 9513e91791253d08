"""Signed webhooks, as OpenAI sends them when a batch ends (Standard Webhooks format).

With `webhook_url` and `webhook_secret` (`whsec_<base64 key>`) configured, a sender thread ticks
the engine (state advances lazily, so nobody else may be asking) and POSTs one event per batch that
reached a terminal status: `batch.completed`, `batch.failed`, `batch.expired`, `batch.cancelled`.
Headers `webhook-id`, `webhook-timestamp` (wall-clock seconds: receivers check it against their
own clock) and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.

Test hooks: `send(batch_id, forge=True)` signs with a wrong key; `replay()` sends a delivery
again byte for byte (same id, timestamp and signature), as an attacker who captured it would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import Engine

EVENT_TYPES = {"completed": "batch.completed", "failed": "batch.failed", "expired": "batch.expired",
               "cancelled": "batch.cancelled"}
TICK_SECONDS = 0.1


@dataclass
class Delivery:
    """One POST the emulator made (or tried)."""

    event: dict[str, Any]
    body: bytes
    headers: dict[str, str]
    status_code: int | None  # None: the receiver could not be reached

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event, "headers": self.headers, "status_code": self.status_code}


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for a body (Standard Webhooks, v1)."""
    key = base64.b64decode(secret[len("whsec_"):]) if secret.startswith("whsec_") else secret.encode()
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def new_secret() -> str:
    """A fresh `whsec_...` secret, like the one OpenAI shows when a webhook endpoint is created."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class WebhookSender:
    """Watches the engine's batches and notifies the configured URL when one ends."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.deliveries: list[Delivery] = []
        self._notified: set[str] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    def ensure_running(self) -> None:
        """Start the sender once a URL is configured; batches already ended are not announced."""
        if not self.engine.config.webhook_url or (self._thread is not None and self._thread.is_alive()):
            return
        with self.engine.lock:
            self._notified |= {b for b, rec in self.engine.batches.items() if rec.status in EVENT_TYPES}
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="emulator-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            if not self.engine.config.webhook_url:
                return
            for batch_id, status in self._newly_ended():
                self.send(batch_id, status)

    def _newly_ended(self) -> list[tuple[str, str]]:
        with self.engine.lock:
            self.engine._tick()
            ended = [(b, rec.status) for b, rec in self.engine.batches.items()
                     if rec.status in EVENT_TYPES and b not in self._notified]
            self._notified |= {b for b, _ in ended}
        return ended

    # -- sending -----------------------------------------------------------------------------
    def send(self, batch_id: str, status: str | None = None, *, forge: bool = False) -> Delivery:
        """POST a signed event for the batch (its current status unless given); `forge` signs it
        with a key that is not the configured secret."""
        config = self.engine.config
        if not config.webhook_url or not config.webhook_secret:
            raise ValueError("set webhook_url and webhook_secret first (POST /_emulator/config)")
        if status is None:
            status = self.engine.get_batch(batch_id)["status"]
        event = {"id": "evt_" + secrets.token_hex(12), "object": "event", "created_at": int(time.time()),
                 "type": EVENT_TYPES.get(status, f"batch.{status}"), "data": {"id": batch_id}}
        body = json.dumps(event, separators=(",", ":")).encode()
        timestamp = int(time.time())
        secret = new_secret() if forge else config.webhook_secret
        headers = {"content-type": "application/json", "webhook-id": event["id"],
                   "webhook-timestamp": str(timestamp), "webhook-signature": sign(secret, event["id"], timestamp, body)}
        return self._post(event, body, headers)

    def replay(self, index: int = -1) -> Delivery:
        """Send an earlier delivery again, unchanged."""
        with self._lock:
            if not self.deliveries:
                raise ValueError("no webhook was sent yet")
            old = self.deliveries[index]
        return self._post(old.event, old.body, old.headers)

    def _post(self, event: dict[str, Any], body: bytes, headers: dict[str, str]) -> Delivery:
        url = self.engine.config.webhook_url
        assert url is not None
        status_code: int | None
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers, method="POST"),
                                        timeout=10) as answer:
                status_code = answer.status
        except urllib.error.HTTPError as exc:
            status_code = exc.code
        except (urllib.error.URLError, OSError):
            status_code = None  # the receiver is down: OpenAI retries later; polling covers it here
        delivery = Delivery(event, body, headers, status_code)
        with self._lock:
            self.deliveries.append(delivery)
        self.engine.counters.add("webhooks_sent")
        return delivery
