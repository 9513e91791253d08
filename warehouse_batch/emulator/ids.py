"""Identifier formats shaped like the real API's."""
from __future__ import annotations

import secrets
import string

_ALNUM = string.ascii_letters + string.digits


def _alnum(n: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def file_id() -> str:
    return "file-" + _alnum(22)


def batch_id() -> str:
    return "batch_" + secrets.token_hex(16)  # real ids: batch_ + 32 hex


def batch_request_id() -> str:
    # Called once per result line: token_hex is much cheaper than per-character choice.
    return "batch_req_" + secrets.token_hex(12)


def request_id() -> str:
    return "req_" + secrets.token_hex(16)
