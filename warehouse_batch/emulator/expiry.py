"""`expires_after` / `output_expires_after`: validation against the flavor's range."""
from __future__ import annotations

from typing import Any

from .errors import APIError
from .flavors import MAX_EXPIRES_AFTER, Flavor


def check_expires_after(value: Any, param: str, rules: Flavor) -> int:
    """Seconds of a `{"anchor": "created_at", "seconds": N}` object, or the 400 production gives."""
    if not isinstance(value, dict):
        raise APIError(400, f"Invalid type for '{param}': expected an object.", param=param, code="invalid_type")
    anchor = value.get("anchor")
    if anchor != "created_at":
        raise APIError(400, f"Invalid value: '{anchor}'. Supported values are: 'created_at'.",
                       param=f"{param}.anchor", code="invalid_value")
    seconds = value.get("seconds")
    if isinstance(seconds, str):  # multipart form fields arrive as text
        try:
            seconds = int(seconds)
        except ValueError:
            pass
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise APIError(400, f"Invalid type for '{param}.seconds': expected an integer.",
                       param=f"{param}.seconds", code="invalid_type")
    if not rules.min_expires_after <= seconds <= MAX_EXPIRES_AFTER:
        raise APIError(400, f"Invalid '{param}.seconds': must be between {rules.min_expires_after} and "
                            f"{MAX_EXPIRES_AFTER}.", param=f"{param}.seconds", code="invalid_value")
    return seconds
