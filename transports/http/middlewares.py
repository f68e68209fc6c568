"""The one middleware: errors as the API's JSON body, request logging and metrics, CORS, auth.

:func:`api_middleware` builds it from the app's settings and authenticator. For each
request it binds the request context for log lines, answers a CORS preflight, resolves
the caller from the API key, runs the handler, turns every failure (including the
router's 404/405 and aiohttp's 413) into ``{"error": {...}}``, then sets ``X-Request-Id``,
counts the request and logs one line. These were three middlewares; each layer costs a
wrapper and a coroutine per request, so they are one. CORS headers are added to every
response, streams included, by :func:`add_cors_headers` on ``on_response_prepare``.
"""

from __future__ import annotations

import functools
import itertools
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from aiohttp import web

from actors.errors import HubError
from sessionhub.logging import bind_request_context
from transports.commands import error_body
from transports.http.keys import CALLER, SETTINGS
from transports.metrics import HTTP_REQUESTS_TOTAL

if TYPE_CHECKING:
    from sessionhub.settings import Settings
    from transports.http.auth import Authenticator

__all__ = [
    "CORS_REQUEST_HEADERS",
    "add_cors_headers",
    "api_middleware",
    "json_response",
]

log = structlog.get_logger("sessionhub.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

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


_encode = msgspec.json.Encoder().encode
_stdlib_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode_json(body: Any) -> bytes:
    """Compact UTF-8 JSON: msgspec (several times faster), else the standard library.

    The standard library decides what msgspec refuses (a dict with ``True`` or ``None``
    keys, say), so what could be encoded before still is, and what failed still fails.
    Numbers are spelled by msgspec (``1e16`` where ``json.dumps`` wrote ``1e+16``: the same
    JSON value); a NaN or an infinity would come out as ``null``, but none reaches an
    answer (the body parser refuses them and the event log will not store them).
    """
    try:
        return _encode(body)
    except (TypeError, ValueError, OverflowError, RecursionError):
        return _stdlib_encoder.encode(body).encode()


def json_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response, compact, UTF-8."""
    return web.Response(
        body=encode_json(body), status=status, content_type="application/json", headers=headers
    )


def _error_response(exc: HubError) -> web.Response:
    headers = None
    if exc.status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="sessionhub"'}
    return json_response(exc.to_body(), exc.status, headers)


def _from_http_exception(
    request: web.Request, exc: web.HTTPException, max_body_bytes: int
) -> web.Response:
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
        limit = max_body_bytes
        message = f"the body is larger than {limit} bytes"
        details = {"limit": "max_body_bytes", "max": limit}
    else:
        message = exc.reason or "request refused"
    return json_response(error_body(code, message, details), status, headers)


@functools.lru_cache(maxsize=4096)
def _request_counter(method: str, route: str, status: int) -> Any:
    return HTTP_REQUESTS_TOTAL.labels(method, route, str(status))


def _route_label(route: Any) -> str:
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else "unmatched"


def api_middleware(settings: Settings, auth: Authenticator) -> Middleware:
    """The API's middleware for ``settings`` and ``auth``: in order, per request,

    1. bind ``transport``, ``command_id`` (the request id), ``command`` (the route's name)
       and ``session_id`` to every log line of the request;
    2. answer a CORS preflight (``OPTIONS`` with ``Access-Control-Request-Method`` from an
       allowed origin to a known path) with 204, before auth;
    3. resolve the caller from the API key (``/health`` and ``/metrics`` are open; the
       stream routes also take ``?access_token=``), so a request without a valid key is
       401 even on an unknown path;
    4. run the handler, and answer every error in the API's shape;
    5. set ``X-Request-Id``, count the request by method, route template and status, and
       log one line (unless ``settings.access_log`` is off).
    """
    cors_origins = settings.cors_origins
    max_body_bytes = settings.max_body_bytes
    # At warning and above the line would be dropped: skip building its fields too.
    access_log = settings.access_log and settings.log_level in ("debug", "info")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        headers = request.headers
        request_id = headers.get("X-Request-Id") or _next_request_id()
        if len(request_id) > 128:
            request_id = request_id[:128]
        match_info = request.match_info
        route = match_info.route
        name = route.name
        context: dict[str, Any] = {"transport": "http", "command_id": request_id}
        if name:
            context["command"] = name
        session_id = match_info.get("session_id")
        if session_id is not None:
            context["session_id"] = session_id
        # aiohttp runs each request in a task of its own, with a copy of the context:
        # what is bound here ends with the request, without a reset.
        bind_request_context(context)
        try:
            if (
                cors_origins
                and request.method == "OPTIONS"
                and "Access-Control-Request-Method" in headers
                and _allowed_origin(headers.get("Origin"), cors_origins)
                and (preflight := _preflight(request, match_info)) is not None
            ):
                response: web.StreamResponse = preflight
            else:
                if request.path not in PUBLIC_PATHS:
                    token = request.query.get("access_token") if name in TOKEN_ROUTES else None
                    request[CALLER] = auth.caller_for_header(headers.get("Authorization"), token)
                response = await handler(request)
        except HubError as exc:
            response = _error_response(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _from_http_exception(request, exc, max_body_bytes)
        except ConnectionError as exc:
            transport = request.transport
            if transport is None or transport.is_closing():
                # The client is gone; nobody reads an answer.
                log.info("client_gone", method=request.method, path=request.path, error=str(exc))
                raise
            log.exception("request_failed", method=request.method, path=request.path)
            response = _internal_error()
        except Exception:
            log.exception("request_failed", method=request.method, path=request.path)
            response = _internal_error()
        if not response.prepared:
            response.headers.setdefault("X-Request-Id", request_id)
        status = response.status
        _request_counter(request.method, _route_label(route), status).inc()
        if access_log:
            log.info(
                "request",
                method=request.method,
                path=request.path,
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
        return response

    return middleware


def _internal_error() -> web.Response:
    return json_response(
        error_body("internal_error", "the server failed to handle the request"), 500
    )


def _preflight(request: web.Request, match_info: Any) -> web.Response | None:
    """The 204 answer to a preflight on a known path; ``None`` (then a 404) otherwise."""
    exc = match_info.http_exception
    if exc is not None and not isinstance(exc, web.HTTPMethodNotAllowed):
        return None
    allowed = sorted(exc.allowed_methods) if exc is not None else [request.method]
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": ", ".join(allowed),
            "Access-Control-Allow-Headers": CORS_REQUEST_HEADERS,
            "Access-Control-Max-Age": "600",
        },
    )


def _allowed_origin(origin: str | None, origins: Collection[str]) -> str | None:
    """``origin`` if CORS allows it (``*`` allows every origin), else ``None``."""
    if not origin:
        return None
    if "*" in origins or origin in origins:
        return origin
    return None


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: CORS headers on every response to an allowed origin."""
    if not request.app[SETTINGS].cors_origins:
        return
    origin = _allowed_origin(request.headers.get("Origin"), request.app[SETTINGS].cors_origins)
    vary = response.headers.get("Vary")
    response.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
    if origin is None:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
