"""HTTP routes: the OpenAI Files/Batches API under /v1, sync endpoints, admin under /_emulator."""
from __future__ import annotations

import asyncio
import codecs
import functools
import json
import logging
import secrets
from typing import Any, Awaitable, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import multipart
from .auth import AuthMiddleware
from .azure import azure_routes
from .config import EmulatorConfig
from .engine import Engine
from .errors import APIError, envelope
from .expiry import check_expires_after
from .faults import Fault
from .files import CHUNK, Spool, iter_chunks
from .flavors import canonical_endpoint, flavor
from .models import is_supported
from .responder import respond
from .validation import EMBEDDINGS, check_embedding_request

FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
Handler = Callable[[Request], Awaitable[Response]]


# ------------------------------------------------------------------ plumbing

class DropConnection(Exception):
    """Raised after the response started, so uvicorn closes the socket mid-answer."""


class _DropResponse(Response):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Announce a body that never comes; raising then makes uvicorn close the
        # transport, which the client sees as a broken connection (and retries).
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]})
        raise DropConnection()


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DropConnection))


def quiet_drop_logs() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in logger.filters):
        logger.addFilter(_QuietDrops())


class RequestIdMiddleware:
    """Adds `x-request-id` to every response, errors and admin calls included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", ("req_" + secrets.token_hex(16)).encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


def _engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def operation(name: str, key: str) -> Callable[[Handler], Handler]:
    """Count the call (and retries), then apply any fault injected for `name`."""

    def deco(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapped(request: Request) -> Response:
            engine = _engine(request)
            try:
                retry = int(request.headers.get("x-stainless-retry-count", "0"))
            except ValueError:
                retry = 0
            engine.counters.call(key, retry)
            fault = engine.faults.take(name)
            if fault is None:
                return await handler(request)
            engine.counters.add("faults_injected")
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.drop:
                return _DropResponse()
            if fault.delay or fault.truncate or fault.corrupt:
                response = await handler(request)
                if fault.truncate:
                    return _truncated(response)
                return _corrupted(response) if fault.corrupt else response
            headers = {}
            if fault.retry_after is not None:
                headers["retry-after"] = str(fault.retry_after)
            return JSONResponse(fault.error_body(), status_code=fault.status, headers=headers)

        return wrapped

    return deco


class _FileResponse(StreamingResponse):
    """A stored file streamed from disk (or memory) in chunks, with its length announced."""

    def __init__(self, handle: Any, size: int) -> None:
        self.handle = handle
        super().__init__(iter_chunks(handle), media_type="application/octet-stream",
                         headers={"content-length": str(size)})


def _body(response: Response) -> bytes:
    """The whole body (faults that damage a download need it: files are small in those tests)."""
    if isinstance(response, _FileResponse):
        with response.handle:
            return bytes(response.handle.read())
    return bytes(response.body)


def _truncated(response: Response) -> Response:
    body = _body(response)
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return Response(body[: len(body) // 2], status_code=response.status_code, headers=headers)


def _corrupted(response: Response) -> Response:
    """The same bytes, line count and final newline, with one line in the middle no longer JSON:
    only parsing the content can tell (a damaged disk or proxy, not a cut connection)."""
    lines = _body(response).split(b"\n")
    middle = (len(lines) - 1) // 2
    if lines[middle]:
        lines[middle] = b"#" + lines[middle][1:]
    return Response(b"\n".join(lines), status_code=response.status_code, headers=dict(response.headers))


async def _json(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError:
        raise APIError(400, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)")
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object.")
    return data


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise APIError(400, f"Invalid '{name}': expected an integer.", param=name, code="invalid_type")
    if not lo <= value <= hi:
        raise APIError(400, f"Invalid '{name}': integer must be between {lo} and {hi}.", param=name, code="invalid_value")
    return value


# ------------------------------------------------------------------ files

async def _receive_upload(request: Request, engine: Engine) -> tuple[str, str, Spool, int | None]:
    """Read the form as it arrives: the file part into a Spool (memory, then disk), never whole."""
    rules = flavor(engine.config.flavor)
    spool = engine.files.spool(limit=MAX_UPLOAD_BYTES)
    try:
        try:
            form = multipart.FormParser(request.headers.get("content-type", ""), lambda: spool)
            async for chunk in request.stream():
                form.feed(chunk)
            form.finish()
        except multipart.MultipartError as exc:
            raise APIError(400, f"Invalid multipart/form-data request: {exc}")
        spool.close()
        fields = form.fields
        purpose = fields.get("purpose")
        if not purpose:
            raise APIError(400, "Missing required parameter: 'purpose'.", param="purpose", code="missing_required_parameter")
        if purpose not in FILE_PURPOSES:
            raise APIError(400, f"Invalid value: '{purpose}'. Supported values are: {', '.join(repr(p) for p in FILE_PURPOSES)}.", param="purpose", code="invalid_value")
        if not form.has_file:
            raise APIError(400, "Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
        # The SDK flattens nested objects with brackets; Azure docs use dots: accept both.
        anchor = fields.get("expires_after[anchor]", fields.get("expires_after.anchor"))
        seconds = fields.get("expires_after[seconds]", fields.get("expires_after.seconds"))
        expires_after = None
        if anchor is not None or seconds is not None:
            expires_after = check_expires_after({"anchor": anchor, "seconds": seconds}, "expires_after", rules)
        if spool.over_limit:
            raise APIError(400, "File is too large: the maximum size is 512 MB.", param="file")
        if purpose == "batch" and not await run_in_threadpool(_looks_like_jsonl, spool):
            raise APIError(400, "Invalid file format for Batch API. Must be .jsonl", param="file", code="invalid_file_format")
        return form.filename or "upload", purpose, spool, expires_after
    except BaseException:
        spool.discard()
        raise


def _looks_like_jsonl(spool: Spool) -> bool:
    """Non-empty UTF-8 with at least one JSON-object line among the first few.

    Single bad lines are left to batch validation, which reports them with their
    line numbers (invalid_json_line); only files that are not JSONL at all are refused.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    found = False
    checked = 0
    pending = b""  # an unfinished line carried to the next chunk
    with spool.open() as handle:
        while True:
            chunk = handle.read(CHUNK)
            try:
                decoder.decode(chunk, final=not chunk)  # the whole file must be UTF-8
            except UnicodeDecodeError:
                return False
            if not chunk:
                break
            if found or checked >= 100:
                continue
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for line in lines:
                found, checked = _json_object_line(line, found, checked)
        if not found and checked < 100:
            found, checked = _json_object_line(pending, found, checked)
    return found


def _json_object_line(line: bytes, found: bool, checked: int) -> tuple[bool, int]:
    """(found, checked) after looking at one more line (blank lines do not count)."""
    if found or checked >= 100 or not line.strip():
        return found, checked
    try:
        if isinstance(json.loads(line), dict):
            return True, checked
    except ValueError:
        pass
    return False, checked + 1


@operation("upload_file", "POST /v1/files")
async def upload_file(request: Request) -> Response:
    engine = _engine(request)
    filename, purpose, spool, expires_after = await _receive_upload(request, engine)
    obj = await run_in_threadpool(engine.upload, filename, purpose, spool, expires_after)
    return JSONResponse(obj)


@operation("list_files", "GET /v1/files")
async def list_files(request: Request) -> Response:
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise APIError(400, f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.", param="order", code="invalid_value")
    limit = _int_param(request, "limit", 10_000, 1, 10_000)
    page = _engine(request).list_files(request.query_params.get("purpose"), order, request.query_params.get("after"), limit)
    return JSONResponse(page)


@operation("retrieve_file", "GET /v1/files/{file_id}")
async def retrieve_file(request: Request) -> Response:
    return JSONResponse(_engine(request).get_file(request.path_params["file_id"]))


@operation("delete_file", "DELETE /v1/files/{file_id}")
async def delete_file(request: Request) -> Response:
    return JSONResponse(_engine(request).delete_file(request.path_params["file_id"]))


@operation("download_file", "GET /v1/files/{file_id}/content")
async def download_file(request: Request) -> Response:
    handle, size = await run_in_threadpool(_engine(request).open_file, request.path_params["file_id"])
    return _FileResponse(handle, size)


# ------------------------------------------------------------------ batches

def _check_metadata(metadata: Any) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise APIError(400, f"Invalid type for 'metadata': expected an object, but got {_json_type(metadata)} instead.", param="metadata", code="invalid_type")
    if len(metadata) > 16:
        raise APIError(400, f"Invalid 'metadata': too many properties. Expected an object with at most 16 properties, but got an object with {len(metadata)} properties instead.", param="metadata", code="object_above_max_properties")
    for key, value in metadata.items():
        if len(key) > 64:
            raise APIError(400, f"Invalid 'metadata': string too long. Expected a string with maximum length 64, but got a string with length {len(key)} instead.", param="metadata", code="string_above_max_length")
        if not isinstance(value, str):
            raise APIError(400, f"Invalid type for 'metadata.{key}': expected a string, but got {_json_type(value)} instead.", param=f"metadata.{key}", code="invalid_type")
        if len(value) > 512:
            raise APIError(400, f"Invalid 'metadata.{key}': string too long. Expected a string with maximum length 512, but got a string with length {len(value)} instead.", param=f"metadata.{key}", code="string_above_max_length")
    return metadata


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a string"


@operation("create_batch", "POST /v1/batches")
async def create_batch(request: Request) -> Response:
    body = await _json(request)
    for key in ("input_file_id", "endpoint", "completion_window"):
        if body.get(key) is None:
            raise APIError(400, f"Missing required parameter: '{key}'.", param=key, code="missing_required_parameter")
        if not isinstance(body[key], str):
            raise APIError(400, f"Invalid type for '{key}': expected a string, but got {_json_type(body[key])} instead.", param=key, code="invalid_type")
    endpoint = body["endpoint"]
    config = _engine(request).config
    allowed_endpoints = flavor(config.flavor).batch_endpoints
    if canonical_endpoint(endpoint, config.flavor) not in allowed_endpoints:
        allowed = ", ".join(f"'{e}'" for e in allowed_endpoints[:-1]) + f", and '{allowed_endpoints[-1]}'"
        raise APIError(400, f"Invalid value: '{endpoint}'. Supported values are: {allowed}.", param="endpoint", code="invalid_value")
    if body["completion_window"] != "24h":
        raise APIError(400, f"Invalid value: '{body['completion_window']}'. Supported values are: '24h'.", param="completion_window", code="invalid_value")
    metadata = _check_metadata(body.get("metadata"))
    output_ttl = None
    if body.get("output_expires_after") is not None:
        output_ttl = check_expires_after(body["output_expires_after"], "output_expires_after", flavor(config.flavor))
    obj = await run_in_threadpool(_engine(request).create_batch, body["input_file_id"], endpoint,
                                  body["completion_window"], metadata, output_ttl)
    return JSONResponse(obj)


@operation("retrieve_batch", "GET /v1/batches/{batch_id}")
async def retrieve_batch(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_engine(request).get_batch, request.path_params["batch_id"]))


@operation("list_batches", "GET /v1/batches")
async def list_batches(request: Request) -> Response:
    limit = _int_param(request, "limit", 20, 1, 100)
    page = await run_in_threadpool(_engine(request).list_batches, request.query_params.get("after"), limit)
    return JSONResponse(page)


@operation("cancel_batch", "POST /v1/batches/{batch_id}/cancel")
async def cancel_batch(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_engine(request).cancel_batch, request.path_params["batch_id"]))


# ------------------------------------------------------------------ synchronous endpoints

def _sync_endpoint(path: str, op: str) -> Handler:
    @operation(op, f"POST {path}")
    async def handler(request: Request) -> Response:
        engine = _engine(request)
        body = await _json(request)
        engine.counters.add("sync_requests")
        config = engine.config
        model = body.get("model")
        if model is None and path != "/v1/moderations":
            raise APIError(400, "you must provide a model parameter", param="model", code="missing_required_parameter")
        if body.get("stream") is True:
            raise APIError(400, "Streaming is not supported by the emulator.", param="stream", code="unsupported_value")
        if model is not None and not is_supported(str(model), config.supported_models):
            raise APIError(404, f"The model `{model}` does not exist or you do not have access to it.", param="model", code="model_not_found")
        if path == EMBEDDINGS:
            check_embedding_request(body, config)
        status, answer = await run_in_threadpool(respond, path, body, "", config)
        return JSONResponse(answer, status_code=status)

    handler.__name__ = op
    return handler


# ------------------------------------------------------------------ admin

async def admin_counters(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_engine(request).counter_snapshot))


async def admin_config(request: Request) -> Response:
    engine = _engine(request)
    if request.method == "POST":
        try:
            fields = await _json(request)
            await run_in_threadpool(engine.configure, **fields)  # may wait for queued batch preparation
        except (TypeError, ValueError) as exc:
            raise APIError(400, str(exc))
    return JSONResponse(engine.config.to_dict())


async def admin_advance(request: Request) -> Response:
    body = await _json(request)
    try:
        now = await run_in_threadpool(_engine(request).advance, float(body.get("seconds", 0)))
    except (TypeError, ValueError) as exc:
        raise APIError(400, str(exc), param="seconds")
    return JSONResponse({"now": now})


async def admin_faults(request: Request) -> Response:
    engine = _engine(request)
    if request.method == "POST":
        body = await _json(request)
        try:
            engine.faults.add(Fault(**body))
        except (TypeError, ValueError) as exc:
            raise APIError(400, str(exc))
    return JSONResponse({"pending": engine.faults.pending()})


async def admin_reset(request: Request) -> Response:
    await run_in_threadpool(_engine(request).reset)
    return JSONResponse({"reset": True})


async def admin_webhooks(request: Request) -> Response:
    """GET: the deliveries so far. POST {"batch_id", "status"?, "forge"?}: send one now;
    POST {"replay": index}: send an earlier delivery again, unchanged."""
    sender = _engine(request).webhooks
    if request.method == "POST":
        body = await _json(request)
        try:
            if "replay" in body:
                delivery = await run_in_threadpool(sender.replay, int(body["replay"]))
            else:
                delivery = await run_in_threadpool(lambda: sender.send(str(body["batch_id"]), body.get("status"),
                                                                       forge=bool(body.get("forge"))))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise APIError(400, f"cannot send the webhook: {exc}")
        return JSONResponse(delivery.to_dict())
    return JSONResponse({"deliveries": [d.to_dict() for d in sender.deliveries]})


async def admin_health(request: Request) -> Response:
    return JSONResponse({"ok": True, "now": _engine(request).clock.now()})


# ------------------------------------------------------------------ errors

async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
    else:
        message = str(exc.detail)
    return JSONResponse(envelope(message), status_code=exc.status_code)


async def _server_error(request: Request, exc: Exception) -> Response:
    return JSONResponse(envelope(f"The emulator failed: {type(exc).__name__}: {exc}", type="server_error"), status_code=500)


def create_app(config: EmulatorConfig | None = None) -> Starlette:
    config = config or EmulatorConfig()
    routes = [
        Route("/v1/files", upload_file, methods=["POST"]),
        Route("/v1/files", list_files, methods=["GET"]),
        Route("/v1/files/{file_id}", retrieve_file, methods=["GET"]),
        Route("/v1/files/{file_id}", delete_file, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", download_file, methods=["GET"]),
        Route("/v1/batches", create_batch, methods=["POST"]),
        Route("/v1/batches", list_batches, methods=["GET"]),
        Route("/v1/batches/{batch_id}", retrieve_batch, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
        Route("/v1/chat/completions", _sync_endpoint("/v1/chat/completions", "chat_completions"), methods=["POST"]),
        Route("/v1/responses", _sync_endpoint("/v1/responses", "responses"), methods=["POST"]),
        Route("/v1/embeddings", _sync_endpoint("/v1/embeddings", "embeddings"), methods=["POST"]),
        Route("/v1/moderations", _sync_endpoint("/v1/moderations", "moderations"), methods=["POST"]),
        Route("/v1/completions", _sync_endpoint("/v1/completions", "completions"), methods=["POST"]),
    ]
    routes += azure_routes(routes)
    routes += [
        Route("/_emulator/counters", admin_counters, methods=["GET"]),
        Route("/_emulator/config", admin_config, methods=["GET", "POST"]),
        Route("/_emulator/advance", admin_advance, methods=["POST"]),
        Route("/_emulator/faults", admin_faults, methods=["GET", "POST"]),
        Route("/_emulator/reset", admin_reset, methods=["POST"]),
        Route("/_emulator/health", admin_health, methods=["GET"]),
        Route("/_emulator/webhooks", admin_webhooks, methods=["GET", "POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={APIError: _api_error, HTTPException: _http_error, Exception: _server_error},
    )
    app.add_middleware(AuthMiddleware)
    app.add_middleware(RequestIdMiddleware)  # added last = outermost: 401s get an x-request-id too
    app.state.engine = Engine(config)
    quiet_drop_logs()
    return app
