"""Which failed answers are worth sending again.

Retryable: the request never ran or hit a transient fault — expired or cancelled batches, lines
of a batch that failed validation because of *other* lines, rate limits, server errors, timeouts,
a missing result line. Terminal: the provider rejected the request itself (context too long,
unknown model, invalid parameter): sending the same body again would fail again, so only a changed
job (which changes the request and its hash) sends it again.
"""

from __future__ import annotations

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
)

#: A predicate over a `results` row aliased `res`.
RETRYABLE_SQL = (
    "(res.status IN ('expired', 'cancelled') OR (res.status = 'failed' AND ("
    f"res.error_code IN ({', '.join(repr(c) for c in RETRYABLE_CODES)}) "
    "OR res.status_code = 429 OR res.status_code >= 500 OR res.error_code LIKE 'http_5%')))"
)
