"""Azure OpenAI's paths for the same handlers (served when `flavor == "azure"`).

* v1 API: `/openai/v1/files`, `/openai/v1/batches`, ... (`OpenAI(base_url=".../openai/v1/")`).
* legacy API: `/openai/files?api-version=...`, `/openai/batches?api-version=...`
  (`AzureOpenAI(azure_endpoint=..., api_version=...)`), no `/deployments/` segment for batch.

The routes always exist, so `POST /_emulator/config {"flavor": "azure"}` switches a running
emulator; with the OpenAI flavor they answer 404 like any unknown URL.
"""
from __future__ import annotations

import functools
from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .errors import envelope

Handler = Callable[[Request], Awaitable[Response]]

# api-versions of the legacy API that serve Files + Batch (batch arrived in 2024-07-01-preview).
API_VERSIONS = frozenset({
    "2024-07-01-preview", "2024-08-01-preview", "2024-09-01-preview", "2024-10-01-preview", "2024-10-21",
    "2024-12-01-preview", "2025-01-01-preview", "2025-02-01-preview", "2025-03-01-preview", "2025-04-01-preview",
})
_LEGACY_RESOURCES = ("/files", "/batches")


def _azure_only(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        if request.app.state.engine.config.flavor != "azure":
            return JSONResponse(envelope(f"Invalid URL ({request.method} {request.url.path})"), status_code=404)
        return await handler(request)

    return wrapped


def _versioned(handler: Handler) -> Handler:
    """The legacy API's api-version check, with Azure's own error shape ({code, message})."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        version = request.query_params.get("api-version")
        if not version:
            return JSONResponse({"error": {"code": "MissingApiVersionParameter", "message":
                                           "The api-version query parameter (?api-version=) is required for all requests."}},
                                status_code=400)
        if version not in API_VERSIONS:
            return JSONResponse({"error": {"code": "404", "message": "Resource not found"}}, status_code=404)
        return await handler(request)

    return wrapped


def azure_routes(v1_routes: list[Route]) -> list[Route]:
    """Azure twins of the `/v1/...` routes: every one under `/openai/v1`, files and batches
    also under the legacy `/openai` prefix."""
    out: list[Route] = []
    for route in v1_routes:
        if not route.path.startswith("/v1/"):
            continue
        rest = route.path[len("/v1"):]
        methods = sorted(route.methods or ())
        out.append(Route("/openai/v1" + rest, _azure_only(route.endpoint), methods=methods))
        if rest.startswith(_LEGACY_RESOURCES):
            out.append(Route("/openai" + rest, _azure_only(_versioned(route.endpoint)), methods=methods))
    return out
