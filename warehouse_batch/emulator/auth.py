"""API-key check in front of the API paths (/v1, and Azure's /openai): production answers 401.

Admin calls (/_emulator/*) need no key, so tests and scripts can steer the emulator freely.
"""
from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import EmulatorConfig
from .errors import envelope

AZURE_PREFIX = "/openai/"  # an API path only in the Azure flavor (else it is a plain 404)


def _presented_key(headers: dict[str, str], config: EmulatorConfig) -> str | None:
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    if config.flavor == "azure" and headers.get("api-key", "").strip():
        return headers["api-key"].strip()
    return None


def _masked(key: str) -> str:
    # Like production: enough to recognise the key, never the key itself (secrets stay out of logs).
    return key[:3] + "*" * 4 + key[-4:] if len(key) > 10 else "*" * len(key)


def auth_error(headers: dict[str, str], config: EmulatorConfig) -> JSONResponse | None:
    """The 401 for a request without an acceptable key, else None."""
    if not config.require_auth:
        return None
    key = _presented_key(headers, config)
    if key is None:
        where = "an `api-key` header or " if config.flavor == "azure" else ""
        message = (f"You didn't provide an API key. You need to provide your API key in {where}an Authorization "
                   "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        return JSONResponse(envelope(message), status_code=401)
    if config.api_key is not None and key != config.api_key:
        return JSONResponse(envelope(f"Incorrect API key provided: {_masked(key)}.", code="invalid_api_key"),
                            status_code=401)
    return None


class AuthMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        config: EmulatorConfig = scope["app"].state.engine.config
        path: str = scope["path"]
        if path.startswith("/v1/") or (config.flavor == "azure" and path.startswith(AZURE_PREFIX)):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            refusal = auth_error(headers, config)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)
