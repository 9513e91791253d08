"""The one classification of failures: transient (wait and send again) or terminal (fix the job).

Provider trouble is scheduling, not failure: a quota refusal (`token_limit_exceeded`, as a failed
batch or as HTTP 400 at create), a spurious "Cannot find file", a 5xx at create and a batch that
failed before running anything put the *shard* back in line (`provider_trouble`), without writing
results or consuming any request's attempts.

Transient: the request never ran or hit a fault of the service — expired or cancelled batches, lines
of a batch that failed validation because of *other* lines, quota, rate limits, server errors,
timeouts, a missing result line; for provider calls, HTTP 408/409/429/5xx and lost connections.
Terminal: the provider rejected the request itself (context too long, unknown model, invalid
parameter): sending the same body again would fail again, so only a changed job (which changes the
request and its hash) sends it again. Python (provider calls) and SQL (stored results) both read
the lists below.
"""

from __future__ import annotations

import re

#: Error codes of a stored result that a retry may send again.
RETRYABLE_CODES = (
    "batch_expired",
    "batch_cancelled",
    "batch_failed",
    "token_limit_exceeded",
    "rate_limit_exceeded",
    "server_error",
    "request_timeout",
    "missing_result",
    "timeout",
    "batch_not_found",
    "output_file_gone",
    "shard_file_missing",
)
#: HTTP statuses that say "not now" rather than "not this": retried.
TRANSIENT_HTTP = (408, 409, 429)


def is_transient_status(status_code: int | None) -> bool:
    return status_code is not None and (status_code in TRANSIENT_HTTP or status_code >= 500)


#: A predicate over a `results` row aliased `res`.
RETRYABLE_SQL = (
    "(res.status IN ('expired', 'cancelled') OR (res.status = 'failed' AND ("
    f"res.error_code IN ({', '.join(repr(c) for c in RETRYABLE_CODES)}) "
    f"OR res.status_code IN ({', '.join(str(c) for c in TRANSIENT_HTTP)}) OR res.status_code >= 500 "
    "OR res.error_code LIKE 'http_5%')))"
)


#: Why a shard goes back in line instead of being collected (see `provider_trouble`).
QUOTA = "quota"  # the enqueued-token quota is full: wait until capacity frees
FILE_MISSING = "file_missing"  # the provider could not find the input file: re-create (or re-upload)
TRANSIENT = "transient"  # the service failed before running anything: resubmit after a back-off

#: Batch-level error codes (`line: null`) of a file the provider can never accept: resending the
#: same file fails the same way, so these stay failures (our shard limits should prevent them).
_TERMINAL_BATCH_CODES = frozenset({
    "too_many_tasks", "file_too_large", "empty_file", "empty_batch", "model_mismatch", "invalid_json_line",
    "input_modified", "input_no_permissions", "duplicate_custom_id", "url_mismatch", "invalid_url",
})


def _missing_file(code: str | None, message: str | None) -> bool:
    return "cannot find file" in (message or "").lower() or code in ("file_not_found", "input_file_not_found")


def provider_trouble(errors: list[dict[str, object]] | None, completed: int | None = None) -> str | None:
    """Why a *failed* batch should simply be sent again (QUOTA, FILE_MISSING, TRANSIENT), or None when
    it failed because of its requests (validation errors naming lines, a file the service refuses).

    Only a batch that ran nothing qualifies: requests that ran are answered and billed."""
    if completed:
        return None
    errors = errors or []
    if any(e.get("line") is not None for e in errors):
        return None  # a line's own fault: the request is reported, not resent
    codes = {str(e.get("code") or "") for e in errors}
    if "token_limit_exceeded" in codes or any("enqueued token limit" in str(e.get("message") or "").lower()
                                              for e in errors):
        return QUOTA
    if any(_missing_file(str(e.get("code") or ""), str(e.get("message") or "")) for e in errors):
        return FILE_MISSING
    if codes & _TERMINAL_BATCH_CODES:
        return None
    return TRANSIENT  # no errors at all, or a service-side code (server_error, internal_error…)


def create_refusal(status_code: int | None, code: str | None, message: str | None) -> str | None:
    """Why a refused `create` should be tried again later (QUOTA, FILE_MISSING, TRANSIENT), or None.

    Azure's fail-fast regions answer HTTP 400 `token_limit_exceeded`; create right after many uploads
    can answer 400 "Cannot find file"; 5xx/429 are the service's. A 400 refusal certainly created
    nothing, so the shard goes back to `uploaded`."""
    text = (message or "").lower()
    if code == "token_limit_exceeded" or "token_limit_exceeded" in text or "enqueued token limit" in text:
        return QUOTA
    if status_code in (400, 404) and _missing_file(code, message):
        return FILE_MISSING
    if is_transient_status(status_code):
        return TRANSIENT
    return None


def learned_limit(message: str | None) -> int | None:
    """The quota a refusal states ("… Limit: 90,000 enqueued tokens …"), if it states one."""
    match = re.search(r"limit:\s*([\d,_]+)\s*enqueued", message or "", re.IGNORECASE)
    return int(match.group(1).replace(",", "").replace("_", "")) if match else None
