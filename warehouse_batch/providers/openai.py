"""The OpenAI Files + Batch API, through the official `openai` SDK.

The key and base URL come from arguments or the SDK's standard environment variables
(`OPENAI_API_KEY`, `OPENAI_BASE_URL`); the key is held by the SDK client only and never logged.

Batch creation is the one call that can cost money twice: the SDK retries a POST after a timeout
or 5xx, and the first attempt may already have created a batch. So creation runs without SDK
retries, and after any ambiguous failure we look for our batch by its metadata tag first.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit
from pathlib import Path
from typing import Any

import openai

from warehouse_batch.errors import ConfigError, ProviderError
from warehouse_batch.jobs import METADATA_SHARD_KEY
from warehouse_batch.providers.base import BatchInfo, ProviderRules
from warehouse_batch.retries import create_refusal, is_transient_status

_TRANSIENT = (openai.APIConnectionError, openai.APITimeoutError)
#: Overrides the provider's minimum interval between status checks (for emulators and tests).
POLL_INTERVAL_ENV = "WAREHOUSE_BATCH_MIN_POLL_INTERVAL"


def batch_info(batch: Any) -> BatchInfo:
    """A BatchInfo from the SDK's Batch object, tolerant of compatible servers' and Azure's gaps:
    capitalised statuses, ISO-8601 times, `request_counts` with nulls, `output_file_id: ""`."""
    counts = batch.request_counts
    usage = getattr(batch, "usage", None)
    errors = []
    if batch.errors is not None and getattr(batch.errors, "data", None):
        errors = [{"code": e.code, "message": e.message, "param": e.param, "line": e.line} for e in batch.errors.data]
    return BatchInfo(
        id=batch.id,
        status=str(batch.status).lower(),  # Azure previews send "Validating"
        created_at=unix_time(batch.created_at),
        output_file_id=batch.output_file_id or None,  # "" from some compatible servers
        error_file_id=batch.error_file_id or None,
        total=counts.total if counts else None,
        completed=counts.completed if counts else None,
        failed=counts.failed if counts else None,
        errors=errors,
        input_tokens=getattr(usage, "input_tokens", None) if usage else None,
        output_tokens=getattr(usage, "output_tokens", None) if usage else None,
        metadata=dict(batch.metadata or {}),
    )


def unix_time(value: Any) -> int | None:
    """Unix seconds from an int or an ISO-8601 string (Azure previews), None when unreadable."""
    if value is None or isinstance(value, (int, float)):
        return None if value is None else int(value)
    try:
        return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


class OpenAIBatchProvider:
    """Upload, create, poll, download and cancel batches. Methods raise ProviderError on failure."""

    name = "openai"
    rules = ProviderRules()
    #: How to fix a rejected key, in error messages.
    key_hint = "check OPENAI_API_KEY"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        reconcile_wait: float = 15.0,
        min_poll_interval: float | None = None,
        **options: Any,
    ):
        self._client = self._make_client(base_url=base_url, api_key=api_key, timeout=timeout,
                                         max_retries=max_retries, **options)
        self._sleep = sleep
        self.max_retries = max_retries
        self.reconcile_wait = reconcile_wait
        if min_poll_interval is None and os.environ.get(POLL_INTERVAL_ENV):
            min_poll_interval = float(os.environ[POLL_INTERVAL_ENV])
        #: Seconds between status checks of one batch (the provider's own unless set: emulators, tests).
        self.min_poll_interval = self.rules.min_poll_interval if min_poll_interval is None else min_poll_interval

    def _make_client(self, *, base_url: str | None, api_key: str | None, timeout: float, max_retries: int,
                     **options: Any) -> openai.OpenAI:
        if options:
            raise ConfigError(f"the openai provider takes no option(s) {', '.join(sorted(options))}")
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise ConfigError(
                "no API key: set OPENAI_API_KEY in the environment (for the local emulator any value works, "
                "e.g. OPENAI_API_KEY=emulator with --base-url http://127.0.0.1:8000/v1)"
            )
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        if base_url is not None:
            check_url(base_url)
        return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)

    def batch_endpoint(self, endpoint: str) -> str:
        """The endpoint string `create` sends (Azure's samples drop the `/v1`)."""
        return endpoint

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    @property
    def location(self) -> str:
        return redact_url(self.base_url)

    # -- files -----------------------------------------------------------------------------
    def upload(self, path: Path, filename: str, *, expires_after: int | None = None) -> str:
        """Upload a shard (purpose=batch) under `filename`; returns the file id. With `expires_after`
        the provider deletes it by itself (and Azure allows 10,000 such files instead of 500)."""
        extra: dict[str, Any] = {}
        if expires_after:
            extra["expires_after"] = {"anchor": "created_at", "seconds": int(expires_after)}
        with open(path, "rb") as handle:
            created = self._call("upload", lambda: self._client.files.create(
                file=(filename, handle), purpose="batch", **extra))
        return created.id

    def file_exists(self, ref: str) -> bool:
        try:
            self._client.files.retrieve(ref)
            return True
        except openai.NotFoundError:
            return False
        except openai.OpenAIError as exc:
            raise _provider_error("retrieve file", exc, self.location, self.key_hint) from None

    def find_uploads(self, wanted: dict[str, int]) -> dict[str, str]:
        """Uploaded batch files by name, among `wanted` (name → size): uploads whose reply was never recorded."""
        def scan() -> dict[str, str]:
            found: dict[str, str] = {}
            for item in self._client.files.list(purpose="batch"):
                if wanted.get(item.filename) == item.bytes and item.filename not in found:
                    found[item.filename] = item.id
                    if len(found) == len(wanted):
                        break
            return found

        return self._call("list files", scan)

    def download(self, file_id: str, dest: Path) -> Path:
        """Stream a file's content to `dest` atomically."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")

        def fetch() -> None:
            with self._client.files.with_streaming_response.content(file_id) as response:
                response.stream_to_file(tmp)

        self._call("download", fetch)
        os.replace(tmp, dest)
        return dest

    # -- batches ---------------------------------------------------------------------------
    def create(
        self, *, input_ref: str, endpoint: str, completion_window: str, metadata: dict[str, str], since: float,
        output_expires_after: int | None = None,
    ) -> BatchInfo:
        """Create a batch exactly once: after an ambiguous failure, adopt the batch if it exists."""
        client = self._client.with_options(max_retries=0)
        shard_id = metadata[METADATA_SHARD_KEY]
        extra: dict[str, Any] = {}
        if output_expires_after:
            extra["output_expires_after"] = {"anchor": "created_at", "seconds": int(output_expires_after)}
        delay = 1.0
        for _ in range(self.max_retries + 3):
            try:
                batch = client.batches.create(
                    input_file_id=input_ref,
                    endpoint=self.batch_endpoint(endpoint),  # type: ignore[arg-type]
                    completion_window=completion_window,  # type: ignore[arg-type]
                    metadata=metadata,
                    **extra,
                )
                return batch_info(batch)
            except openai.RateLimitError as exc:  # refused, so certainly not created
                last: Exception = exc
                wait = _retry_after(exc) or delay
            except (openai.APIConnectionError, openai.InternalServerError) as exc:
                # Ambiguous: the batch may exist, or may still be created by a slow server.
                last = exc
                wait = 0.0
                existing = self._reconcile(shard_id, since)
                if existing is not None:
                    return existing
            except openai.APIStatusError as exc:
                raise _provider_error("create batch", exc, self.location, self.key_hint) from None
            self._sleep(wait)
            delay = min(delay * 2, 30.0)
        raise _provider_error("create batch", last, self.location, self.key_hint)

    def _reconcile(self, shard_id: str, since: float) -> BatchInfo | None:
        """Look for our batch a few times over `reconcile_wait` seconds before concluding it does not exist."""
        waited, pause = 0.0, 0.5
        while True:
            found = self.find_batch(shard_id, since)
            if found is not None or waited >= self.reconcile_wait:
                return found
            self._sleep(pause)
            waited += pause
            pause = min(pause * 2, self.reconcile_wait - waited) or 0.5

    def find_batch(self, shard_id: str, since: float) -> BatchInfo | None:
        """Our batch for `shard_id`, among batches created since `since` (unix seconds)."""
        return self.find_batches({shard_id}, since).get(shard_id)

    def find_batches(self, shard_ids: set[str], since: float) -> dict[str, BatchInfo]:
        """Our batches by shard tag, searching newest first back to `since` (minus 10 minutes of clock skew)."""
        def scan() -> dict[str, BatchInfo]:
            found: dict[str, BatchInfo] = {}
            for batch in self._client.batches.list(limit=100):
                tag = (batch.metadata or {}).get(METADATA_SHARD_KEY)
                if tag in shard_ids and tag not in found:  # newest first: keep the newest
                    found[tag] = batch_info(batch)
                    if len(found) == len(shard_ids):
                        break
                created = unix_time(batch.created_at)
                if created is not None and created < since - 600:
                    break  # nothing older can be ours
            return found

        return self._call("list batches", scan)

    def retrieve(self, batch_id: str) -> BatchInfo:
        return batch_info(self._call("retrieve batch", lambda: self._client.batches.retrieve(batch_id)))

    def result_files(self, info: BatchInfo) -> list[tuple[str, str]]:
        return [(kind, ref) for kind, ref in (("output", info.output_file_id), ("error", info.error_file_id)) if ref]

    def delete_file(self, ref: str) -> None:
        try:
            self._client.files.delete(ref)
        except openai.NotFoundError:
            return  # already gone: the goal is reached
        except openai.OpenAIError as exc:
            raise _provider_error("delete file", exc, self.location, self.key_hint) from None

    def cancel(self, batch_id: str) -> BatchInfo:
        try:
            return batch_info(self._client.batches.cancel(batch_id))
        except openai.ConflictError:  # already finished: nothing to cancel
            return self.retrieve(batch_id)
        except openai.OpenAIError as exc:
            raise _provider_error("cancel batch", exc, self.location, self.key_hint) from None

    # -- helpers ---------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except openai.OpenAIError as exc:
            raise _provider_error(what, exc, self.location, self.key_hint) from None


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return min(float(value), 120.0) if value else None
    except ValueError:
        return None


def _error_code(exc: Exception) -> str | None:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        code = inner.get("code") if isinstance(inner, dict) else None
        return str(code) if code else None
    return getattr(exc, "code", None)


def _provider_error(what: str, exc: Exception, location: str, key_hint: str = "check OPENAI_API_KEY") -> ProviderError:
    status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
    code = _error_code(exc)
    transient = isinstance(exc, _TRANSIENT) or is_transient_status(status)
    if isinstance(exc, openai.AuthenticationError):
        return ProviderError(f"{what}: the provider rejected the API key (HTTP 401); {key_hint}", status_code=401)
    detail = getattr(exc, "message", None) or str(exc)
    raw = detail
    # Quota and spurious "Cannot find file" refusals at create are scheduling, not the job's fault.
    transient = transient or create_refusal(status, code, detail) is not None
    if isinstance(exc, openai.APIConnectionError) and not isinstance(exc, openai.APITimeoutError):
        detail = f"cannot reach {location} ({detail.rstrip('.')}); check --base-url / $OPENAI_BASE_URL and the network"
    elif isinstance(exc, openai.APITimeoutError):
        detail = f"{location} did not answer in time"
    prefix = f"{what} failed" + (f" (HTTP {status})" if status else "")
    hint = "; re-run the same command to resume, nothing is sent twice" if transient else ""
    return ProviderError(f"{prefix}: {detail}{hint}", transient=transient, status_code=status, code=code, detail=raw)


def redact_url(url: str) -> str:
    """A URL without user, password or query string (where Azure keys and tokens can hide)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        if parts.port:
            host += f":{parts.port}"
    except ValueError:  # a port that is no number: show what was given, without credentials
        host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def check_url(url: str) -> None:
    """Refuse a base URL that cannot work before any call is made (named, redacted)."""
    parts = urlsplit(url)
    try:
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(
            f"the base URL {redact_url(url)!r} is not an http(s) URL with a host; pass e.g. "
            "--base-url https://api.openai.com/v1 (or http://127.0.0.1:8000/v1 for the emulator)"
        )
