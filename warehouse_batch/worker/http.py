"""The worker's HTTP side (starlette, served by uvicorn in a thread beside the loop).

    GET  /                  the status page (page.py)
    GET  /healthz           200 while the loop runs and its last step succeeded, else 503
    GET  /metrics           Prometheus text format (metrics.py)
    POST /webhooks/openai   OpenAI's batch events, verified with the official SDK
                            (`client.webhooks.unwrap`, secret from $OPENAI_WEBHOOK_SECRET)

A webhook whose signature does not verify (wrong secret, altered body, too old) is answered 401
and changes nothing; a verified one queues its batch for collection and wakes the loop. An event
id seen before (a replay inside the signature's 5-minute window) is acknowledged and ignored.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

from openai import InvalidWebhookSignatureError, OpenAI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from warehouse_batch.worker import metrics, page

if TYPE_CHECKING:
    from warehouse_batch.worker.service import Worker

WEBHOOK_SECRET_ENV = "OPENAI_WEBHOOK_SECRET"
BATCH_EVENTS = ("batch.completed", "batch.failed", "batch.expired", "batch.cancelled")
log = logging.getLogger("warehouse_batch.worker")


def create_app(worker: Worker, *, location: str, webhook_secret: str | None = None,
               loop_alive: object = None) -> Starlette:
    """The app; `webhook_secret` defaults to $OPENAI_WEBHOOK_SECRET (no secret: webhooks answer 503)."""
    secret = webhook_secret if webhook_secret is not None else os.environ.get(WEBHOOK_SECRET_ENV) or None
    # Verification only: this client never makes a request (the key is a placeholder).
    verifier = OpenAI(api_key="webhook-verification-only", base_url="http://127.0.0.1:9/v1")

    async def status_page(request: Request) -> Response:
        return HTMLResponse(page.render(worker.snapshot, worker.stats, location=location))

    async def healthz(request: Request) -> Response:
        stats = worker.stats
        alive = loop_alive() if callable(loop_alive) else True
        healthy = alive and stats.last_step_error is None and stats.last_step_at is not None
        return JSONResponse({
            "status": "ok" if healthy else "unhealthy", "loop_alive": alive, "last_step_at": stats.last_step_at,
            "last_step_error": stats.last_step_error, "last_successful_poll": stats.last_successful_poll,
            "uptime_seconds": round(time.time() - stats.started_at, 1),
        }, status_code=200 if healthy else 503)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(worker), media_type=metrics.CONTENT_TYPE)

    async def openai_webhook(request: Request) -> Response:
        if not secret:
            worker.stats.webhook("not_configured")
            return JSONResponse({"error": f"webhooks are not configured: set ${WEBHOOK_SECRET_ENV} and restart"},
                                status_code=503)
        body = await request.body()
        try:
            event = verifier.webhooks.unwrap(body, request.headers, secret=secret)
        except (InvalidWebhookSignatureError, ValueError) as exc:  # ValueError: a header is missing
            worker.stats.webhook("refused")
            log.warning("webhook refused: %s", exc)
            return JSONResponse({"error": "invalid webhook signature"}, status_code=401)
        kind = getattr(event, "type", "")
        if kind not in BATCH_EVENTS:
            worker.stats.webhook("ignored")
            return JSONResponse({"ignored": kind})
        fresh = worker.batch_ended(event.data.id, request.headers["webhook-id"])
        worker.stats.webhook("accepted" if fresh else "duplicate")
        return JSONResponse({"batch": event.data.id, "duplicate": not fresh})

    return Starlette(routes=[
        Route("/", status_page, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/webhooks/openai", openai_webhook, methods=["POST"]),
    ])
