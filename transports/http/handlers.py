"""Request handlers: one generic handler for every command route, and the special ones.

A command route's handler builds the command payload from the request (the JSON body,
the path's ids, the declared query parameters and headers) and runs it through
:func:`transports.commands.execute`, the same code the NATS transport calls.
Handlers never touch storage: they speak only to the :class:`~actors.hub.Hub`.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from actors.errors import HubError, InvalidRequest, Unavailable
from transports.commands import execute, observe
from transports.http.bodies import NO_BODY, read_json
from transports.http.cluster import relayed_turn
from transports.http.keys import CALLER, HUB, NATS, OPENAPI
from transports.http.middlewares import json_response
from transports.http.routes import Route
from transports.http.sse import send_stream
from transports.http.ws import websocket

__all__ = ["SPECIAL_HANDLERS", "command_handler"]

log = structlog.get_logger("sessionhub.http")


async def _payload(request: web.Request, route: Route) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    if route.body == "object":
        body = await read_json(request)
        if body is NO_BODY:
            if route.body_required:
                raise InvalidRequest("a JSON object body is required", field="body")
            body = {}
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object", field="body")
        payload.update(body)
    elif route.body == "value":
        body = await read_json(request)
        if body is NO_BODY:
            raise InvalidRequest("the body must be a JSON value", field="body")
        payload["value"] = body
    for param in route.params:
        name = param.payload
        if name is None:
            continue
        source = request.query if param.where == "query" else request.headers
        value = source.get(param.name)
        if value is not None:
            payload[name] = value
    payload.update(request.match_info)
    return payload


def command_handler(route: Route) -> Any:
    """The handler of a command route: payload -> :func:`execute` -> JSON response."""

    async def handler(request: web.Request) -> web.StreamResponse:
        payload = await _payload(request, route)
        nats = request.app[NATS]
        if nats is not None and nats.cluster:
            # Several nodes: run it where its session lives (here, or relayed there).
            status, body = await nats.dispatch(
                route.name, payload, request.headers.get("Authorization")
            )
            if status == 200:  # a relayed success carries no status of its own
                status = route.status
        else:
            status, body = await execute(
                route.name, request.app[HUB], request[CALLER], payload, transport="http"
            )
        headers = None
        if route.etag and status < 300 and isinstance(body.get("version"), int):
            headers = {"ETag": f'"{body["version"]}"'}
        return json_response(body, status, headers)

    handler.__name__ = f"handle_{route.name.replace('.', '_')}"
    return handler


# --- special routes ------------------------------------------------------------------------


async def health(request: web.Request) -> web.StreamResponse:
    """200 while the hub is ok; 503 while it stops or when it cannot answer (log down)."""
    try:
        body = await request.app[HUB].health()
    except HubError:
        raise
    except Exception as exc:
        log.warning("health_failed", error=str(exc))
        raise Unavailable(f"the server cannot check its health: {exc}") from None
    return json_response(body, 200 if body.get("status") == "ok" else 503)


async def metrics(request: web.Request) -> web.StreamResponse:
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def openapi(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[OPENAPI])


async def run_stream(request: web.Request) -> web.StreamResponse:
    """``POST /sessions/{id}/run_stream``: errors as JSON before the stream, then SSE."""
    body = await read_json(request)
    if body is NO_BODY or not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object with a message", field="body")
    for reserved in ("session_id", "stream"):
        body.pop(reserved, None)
    started = time.perf_counter()
    nats = request.app[NATS]
    try:
        if nats is not None and nats.cluster:
            stream = await relayed_turn(
                request.app[HUB],
                nats,
                request[CALLER],
                request.match_info["session_id"],
                body,
                request.headers.get("Authorization"),
            )
        else:
            stream = await request.app[HUB].start_turn(
                request[CALLER], request.match_info["session_id"], body
            )
    except HubError as exc:
        observe("run_stream", "http", exc.code, time.perf_counter() - started)
        raise
    observe("run_stream", "http", "ok", time.perf_counter() - started)
    return await send_stream(request, stream, kind="run_stream")


def _resume_point(request: web.Request) -> str | None:
    header = request.headers.get("Last-Event-ID")
    if header:
        return header.strip()
    after = request.query.get("after")
    if after is None or after == "":
        return None
    head, _, tail = after.partition(".")
    if not head.isdigit() or (tail and not tail.isdigit()):
        raise InvalidRequest("after must be an event seq (or SEQ.N)", field="after")
    return after


async def events_stream(request: web.Request) -> web.StreamResponse:
    """``GET /sessions/{id}/events/stream``: every event after the resume point, then live."""
    started = time.perf_counter()
    try:
        stream = await request.app[HUB].open_event_stream(
            request[CALLER], request.match_info["session_id"], _resume_point(request)
        )
    except HubError as exc:
        observe("events.stream", "http", exc.code, time.perf_counter() - started)
        raise
    observe("events.stream", "http", "ok", time.perf_counter() - started)
    return await send_stream(request, stream, kind="events")


async def collaboration_stream(request: web.Request) -> web.StreamResponse:
    """``POST /collaborations/stream``: errors as JSON before the stream, then SSE.

    Every message is a ``data:`` line only (no ``id:``: a collaboration's stream is not
    resumable; its steps are durable events of the session's log). A client that leaves
    does not stop the collaboration: it runs on and is recorded.
    """
    body = await read_json(request)
    if body is NO_BODY or not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object with a session_id", field="body")
    started = time.perf_counter()
    try:
        stream = await request.app[HUB].collaboration_stream(request[CALLER], body)
    except HubError as exc:
        observe("collaboration.stream", "http", exc.code, time.perf_counter() - started)
        raise
    observe("collaboration.stream", "http", "ok", time.perf_counter() - started)
    return await send_stream(request, stream, kind="collaboration")


SPECIAL_HANDLERS = {
    "health": health,
    "metrics": metrics,
    "openapi": openapi,
    "run_stream": run_stream,
    "events.stream": events_stream,
    "collaboration.stream": collaboration_stream,
    "ws": websocket,
}
