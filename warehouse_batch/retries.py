"""The one classification of failures: transient (wait and send again) or terminal (fix the job).

Transient: the request never ran or hit a fault of the service — expired or cancelled batches, lines
of a batch that failed validation because of *other* lines, quota, rate limits, server errors,
timeouts, a missing result line; for provider calls, HTTP 408/409/429/5xx and lost connections.
Terminal: the provider rejected the request itself (context too long, unknown model, invalid
parameter): sending the same body again would fail again, so only a changed job (which changes the
request and its hash) sends it again. Python (provider calls) and SQL (stored results) both read
the lists below.
"""

from __future__ import annotations

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
