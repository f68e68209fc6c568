"""Middlewares: errors as the API's JSON body, request logging and metrics, CORS, auth.

Order (outermost first): :func:`error_middleware` turns every failure, including the
router's 404/405 and aiohttp's 413, into ``{"error": {...}}`` and logs one line per
request; :func:`cors_middleware` answers preflights; :func:`auth_middleware` resolves the
caller. CORS headers are added to every response, streams included, by
:func:`add_cors_headers` on ``on_response_prepare``.
"""

from __future__ import annotations

import functools
import itertools
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from actors.errors import HubError
from transports.commands import error_body
from transports.http.keys import AUTH, CALLER, SETTINGS
from transports.metrics import HTTP_REQUESTS_TOTAL

__all__ = [
    "CORS_REQUEST_HEADERS",
    "add_cors_headers",
    "auth_middleware",
    "cors_middleware",
    "error_middleware",
    "json_response",
]

log = structlog.get_logger("sessionhub.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CORS_REQUEST_HEADERS = "Authorization, Content-Type, Idempotency-Key, If-Match, Last-Event-ID"
CORS_EXPOSE_HEADERS = "ETag, X-Request-Id"
PUBLIC_PATHS = frozenset({"/health", "/metrics"})
#: Routes a browser opens with EventSource or WebSocket, which cannot send headers: they
#: also take the key as ``?access_token=``.
TOKEN_ROUTES = frozenset({"events.stream", "ws"})

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "limit_exceeded",
    503: "unavailable",
}


_ID_PREFIX = secrets.token_hex(4)
_ID_COUNTER = itertools.count(1)


def _next_request_id() -> str:
    """A request id unique to this process run: a random prefix and a counter."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"


def json_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response, compact, UTF-8."""
    return web.Response(
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _error_response(exc: HubError) -> web.Response:
    headers = None
    if exc.status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="sessionhub"'}
    return json_response(exc.to_body(), exc.status, headers)


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    status = exc.status
    code = _HTTP_CODES.get(status, "invalid_request" if status < 500 else "internal_error")
    headers: dict[str, str] = {}
    details: dict[str, Any] = {}
    if status == 404:
        message = f"no route for {request.path}"
        details = {"path": request.path}
    elif status == 405 and isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = sorted(exc.allowed_methods)
        message = f"{request.method} is not allowed on {request.path}"
        details = {"method": request.method, "allowed": allowed}
        headers["Allow"] = ", ".join(allowed)
    elif status == 413:
        limit = request.app[SETTINGS].max_body_bytes
        message = f"the body is larger than {limit} bytes"
        details = {"limit": "max_body_bytes", "max": limit}
    else:
        message = exc.reason or "request refused"
    return json_response(error_body(code, message, details), status, headers)


@functools.lru_cache(maxsize=4096)
def _request_counter(method: str, route: str, status: int) -> Any:
    return HTTP_REQUESTS_TOTAL.labels(method, route, str(status))


def _route_label(request: web.Request) -> str:
    route = request.match_info.route
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error in the API's shape; one log line and one metric per request."""
    started = time.perf_counter()
    request_id = request.headers.get("X-Request-Id") or _next_request_id()
    if len(request_id) > 128:
        request_id = request_id[:128]
    context: dict[str, Any] = {"transport": "http", "command_id": request_id}
    name = request.match_info.route.name
    if name:
        context["command"] = name
    session_id = request.match_info.get("session_id")
    if session_id is not None:
        context["session_id"] = session_id
    with structlog.contextvars.bound_contextvars(**context):
        try:
            response = await handler(request)
        except HubError as exc:
            response = _error_response(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _from_http_exception(request, exc)
        except ConnectionError as exc:
            transport = request.transport
            if transport is None or transport.is_closing():
                # The client is gone; nobody reads an answer.
                log.info("client_gone", method=request.method, path=request.path, error=str(exc))
                raise
            log.exception("request_failed", method=request.method, path=request.path)
            response = json_response(
                error_body("internal_error", "the server failed to handle the request"), 500
            )
        except Exception:
            log.exception("request_failed", method=request.method, path=request.path)
            response = json_response(
                error_body("internal_error", "the server failed to handle the request"), 500
            )
        if not response.prepared:
            response.headers.setdefault("X-Request-Id", request_id)
        elapsed = time.perf_counter() - started
        status = response.status
        _request_counter(request.method, _route_label(request), status).inc()
        log.info(
            "request",
            method=request.method,
            path=request.path,
            status=status,
            duration_ms=round(elapsed * 1000, 3),
        )
        return response


def _origin_allowed(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    if not origin:
        return None
    origins = request.app[SETTINGS].cors_origins
    if "*" in origins or origin in origins:
        return origin
    return None


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer CORS preflights (``OPTIONS`` with ``Access-Control-Request-Method``)."""
    if (
        request.method == "OPTIONS"
        and request.app[SETTINGS].cors_origins
        and "Access-Control-Request-Method" in request.headers
        and _origin_allowed(request)
    ):
        exc = request.match_info.http_exception
        if exc is None or isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = sorted(exc.allowed_methods) if exc is not None else [request.method]
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Methods": ", ".join(allowed),
                    "Access-Control-Allow-Headers": CORS_REQUEST_HEADERS,
                    "Access-Control-Max-Age": "600",
                },
            )
    return await handler(request)


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: CORS headers on every response to an allowed origin."""
    if not request.app[SETTINGS].cors_origins:
        return
    origin = _origin_allowed(request)
    vary = response.headers.get("Vary")
    response.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
    if origin is None:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the caller from the API key; ``/health`` and ``/metrics`` are open."""
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    auth = request.app[AUTH]
    token = None
    if request.match_info.route.name in TOKEN_ROUTES:
        token = request.query.get("access_token")
    request[CALLER] = auth.caller_for_header(request.headers.get("Authorization"), token)
    return await handler(request)
