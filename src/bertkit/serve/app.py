"""The HTTP layer (FastAPI on Starlette): auth, limits, body reading, errors, metrics.

Every POST endpoint reads its body under ``--payload-limit`` (413), parses it by hand (422
naming the field, see :mod:`.validate`) and runs the :class:`~.service.Service` method in a
thread, so the event loop never waits on the model. Those threads come from a pool as large as
``--max-concurrent-requests`` (not anyio's shared 40): a method's thread waits while the batch
queue runs its inputs, so every admitted request must have one to reach the queue and share a
batch with the others. More than ``--max-concurrent-requests`` POSTs
at once get 429 with ``Retry-After`` at once; with ``--api-key`` every path but ``/health`` needs
``Authorization: Bearer KEY`` (401). Errors are TEI's shape: ``{"error", "error_type"}``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from bertkit.inference.batcher import NonFiniteOutputError
from bertkit.serve.queue import QueueClosedError
from bertkit.serve.service import ENDPOINTS, Service, as_json
from bertkit.serve.validate import RequestError, parse_json

logger = logging.getLogger(__name__)

__all__ = ["create_app"]

DRAIN_LIMIT = 64 * 1024 * 1024  # bytes of an oversized body read and dropped before closing


def error(status: int, message: str, kind: str = "Validation",
          headers: dict[str, str] | None = None) -> JSONResponse:
    """TEI's error body."""
    return JSONResponse({"error": message, "error_type": kind}, status, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 naming ``--payload-limit`` (an oversized body is drained, not kept)."""
    declared = request.headers.get("content-length")
    too_big = RequestError(413, f"body: more than the server's --payload-limit of {limit} bytes",
                           "Overloaded")
    if declared is not None and declared.isdigit() and int(declared) > DRAIN_LIMIT:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > DRAIN_LIMIT:
            break
    if size > limit:
        raise too_big
    return b"".join(chunks)


def _authorized(request: Request, api_key: str | None) -> bool:
    if api_key is None or request.url.path == "/health":
        return True
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(),
                                                              api_key.encode())


def create_app(service: Service, api_key: str | None = None) -> FastAPI:
    """The FastAPI app serving ``service``; closing the app (lifespan end) closes its queue."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.handler_threads = anyio.CapacityLimiter(
            service.limits.max_concurrent_requests)
        yield
        await run_in_threadpool(service.close)

    app = FastAPI(title="bertkit serve", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    metrics = service.metrics
    state = {"in_flight": 0}

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                    ) -> Response:
        start = time.monotonic()
        path = request.url.path
        endpoint = path if path in ENDPOINTS or path in ("/health", "/info", "/metrics") \
            else "other"
        counted = False
        if not _authorized(request, api_key):
            response: Response = error(401, "authorization: missing or wrong API key; send "
                                            "'Authorization: Bearer KEY'", "Unauthorized")
        elif request.method == "POST" and state["in_flight"] >= \
                service.limits.max_concurrent_requests:
            response = error(429, f"server busy: --max-concurrent-requests "
                                  f"{service.limits.max_concurrent_requests} requests in "
                                  "flight; retry later", "Overloaded", {"Retry-After": "1"})
        else:
            counted = request.method == "POST"
            state["in_flight"] += counted
            metrics.in_flight = state["in_flight"]
            try:
                response = await call_next(request)
            finally:
                state["in_flight"] -= counted
                metrics.in_flight = state["in_flight"]
        metrics.request(endpoint, response.status_code, time.monotonic() - start)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error(404, f"{request.method} {request.url.path}: no such endpoint; this "
                              f"server has {', '.join(['/health', '/info', '/metrics', *service.endpoints()])}",
                         "NotFound")
        if exc.status_code == 405:
            return error(405, f"{request.url.path}: method {request.method} not allowed",
                         "Validation")
        return error(exc.status_code, str(exc.detail), "Validation")

    def post(path: str) -> None:
        async def endpoint(request: Request) -> Response:
            return await _answer(service, request, path)

        app.add_api_route(path, endpoint, methods=["POST"], name=path)

    for path in ENDPOINTS:
        post(path)

    @app.get("/health")
    async def health() -> JSONResponse:
        if service.queue.closed:
            return error(503, "shutting down", "Unhealthy")
        return JSONResponse({"status": "ok"})

    @app.get("/info")
    async def info() -> JSONResponse:
        return JSONResponse(service.info())

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        metrics.set_queue_depth(service.queue.depth)
        return PlainTextResponse(metrics.render(),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


async def _answer(service: Service, request: Request, path: str) -> Response:
    """Read, parse and serve one POST; every failure becomes a JSON error with its status."""
    try:
        handler = service.handler(path)
        body = parse_json(await read_body(request, service.limits.payload_limit))
        result: Any = await anyio.to_thread.run_sync(handler, body,
                                                     limiter=request.app.state.handler_threads)
        return JSONResponse(await asyncio.to_thread(as_json, result))
    except RequestError as e:
        return error(e.status, e.message, e.kind)
    except NonFiniteOutputError as e:
        return error(424, f"model: {e}", "Backend")
    except ClientDisconnect:
        return error(400, "body: the client went away before sending it all")
    except QueueClosedError as e:
        return error(503, str(e), "Unhealthy")
    except (ValueError, TypeError) as e:
        return error(422, " ".join(str(e).split()), "Validation")
    except Exception:  # noqa: BLE001 - one failed request must not take the server down
        logger.exception("%s failed", path)
        return error(500, f"{path}: internal error (see the server log)", "Backend")
