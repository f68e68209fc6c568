"""``GET /sessions/{id}/ws``: run turns and follow the session's events over one WebSocket.

Client -> server (JSON text frames):

* ``{"type": "run", "message", "request_id", "chat_id"?, "multitask"?}`` runs a turn;
* ``{"type": "cancel", "request_id", "chat_id"?, "turn_id"?}`` cancels the running turn;
* ``{"type": "ping", "request_id"}`` answers ``{"type": "pong", ...}``.

Server -> client:

* a turn's chunks, ``{"turn_id", "chunk_type", "content", "timestamp", "final",
  "request_id"}``, ``chunk_type`` being ``metadata`` (the turn started), ``text`` (a piece
  of the answer), ``data`` (anything else the turn reports), ``error`` (it failed; also
  any refused message, with the API error as ``error``) or ``done`` (its complete text;
  ``final`` is true on ``done`` and ``error``);
* the session's durable events as the event objects of ``GET /sessions/{id}/events``
  (they carry ``seq`` and ``type``), from ``?after=SEQ`` or else from now on.

A closed socket never stops a turn: it runs on and is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from actors.errors import HubError, InvalidRequest
from eventlog import utc_now
from transports.commands import execute, observe
from transports.http.bodies import parse_json
from transports.http.keys import CALLER, HUB, SETTINGS, WEBSOCKETS
from transports.metrics import WS_SUBSCRIBERS

__all__ = ["chunk_frame", "websocket"]

log = structlog.get_logger("sessionhub.http")

_CHUNK_TYPES = {"stream_start": "metadata", "stream_chunk": "text", "stream_end": "done"}


def chunk_frame(turn_id: str | None, payload: dict[str, Any], request_id: Any) -> dict[str, Any]:
    """A run_stream message as a WebSocket chunk."""
    kind = payload.get("type")
    data = payload.get("data") or {}
    chunk_type = "error" if kind == "error" else _CHUNK_TYPES.get(kind, "data")
    if chunk_type == "text":
        content: Any = data.get("content", "")
    elif chunk_type == "done":
        content = data.get("complete_text", "")
    elif chunk_type == "error":
        content = data.get("message", "")
    else:
        content = {"type": kind, **data} if kind != "stream_start" else data
    frame: dict[str, Any] = {
        "turn_id": turn_id,
        "chunk_type": chunk_type,
        "content": content,
        "timestamp": payload.get("created_at") or utc_now(),
        "final": chunk_type in ("done", "error"),
        "request_id": request_id,
    }
    if chunk_type == "text" and "sequence" in data:
        frame["sequence"] = data["sequence"]
    if chunk_type == "error":
        frame["error"] = {"code": data.get("code"), "message": content, "details": {}}
    if chunk_type == "done":
        for key in ("status", "message_id"):
            if key in data:
                frame[key] = data[key]
    return frame


def error_frame(exc: HubError, request_id: Any, turn_id: str | None = None) -> dict[str, Any]:
    """A refused message, as an ``error`` chunk carrying the API error body."""
    return {
        "turn_id": turn_id,
        "chunk_type": "error",
        "content": exc.message,
        "timestamp": utc_now(),
        "final": True,
        "request_id": request_id,
        "error": exc.to_body()["error"],
    }


class _Connection:
    """One socket: a send lock, the event forwarder and the turns it started."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self.hub = request.app[HUB]
        self.caller = request[CALLER]
        self.session_id = request.match_info["session_id"]
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()

    async def send(self, obj: dict[str, Any]) -> bool:
        if self.ws.closed:
            return False
        data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
        try:
            async with self.lock:
                await self.ws.send_str(data)
        except (ConnectionError, RuntimeError):
            return False
        return True

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def forward(self, events: Any) -> None:
        """Durable events of the session (chunks of other clients' turns are skipped)."""
        async for sse_id, payload in events:
            if sse_id is None or "." in sse_id:
                continue
            if not await self.send(payload):
                return

    async def handle(self, raw: str) -> None:
        request_id = None
        try:
            message = parse_json(raw.encode("utf-8", "surrogatepass"))
            if not isinstance(message, dict):
                raise InvalidRequest("a message must be a JSON object", field="body")
            request_id = message.get("request_id")
            kind = message.get("type")
            body = {k: v for k, v in message.items() if k not in ("type", "request_id")}
            if kind == "run":
                self.spawn(self.run(body, request_id))
            elif kind == "cancel":
                status, result = await execute(
                    "cancel",
                    self.hub,
                    self.caller,
                    {**body, "session_id": self.session_id},
                    transport="ws",
                )
                if status >= 400:
                    err = result["error"]
                    raise HubError(
                        err["message"], code=err["code"], status=status, details=err["details"]
                    )
                await self.send({"type": "cancelled", "request_id": request_id, **result})
            elif kind == "ping":
                await self.send({"type": "pong", "request_id": request_id, "timestamp": utc_now()})
            else:
                raise InvalidRequest("type must be run, cancel or ping", field="type")
        except HubError as exc:
            await self.send(error_frame(exc, request_id))

    async def run(self, body: dict[str, Any], request_id: Any) -> None:
        started = time.perf_counter()
        try:
            stream = await self.hub.start_turn(self.caller, self.session_id, body)
        except HubError as exc:
            observe("run", "ws", exc.code, time.perf_counter() - started)
            await self.send(error_frame(exc, request_id))
            return
        observe("run", "ws", "ok", time.perf_counter() - started)
        async for _sse_id, payload in stream:
            if not await self.send(chunk_frame(stream.turn_id, payload, request_id)):
                return  # the socket is gone; the turn runs on

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def websocket(request: web.Request) -> web.StreamResponse:
    """Errors (404 unknown session, 400 no upgrade) are JSON answers before the upgrade."""
    hub = request.app[HUB]
    caller = request[CALLER]
    session_id = request.match_info["session_id"]
    after = request.query.get("after")
    if after:
        if not after.isdigit():
            raise InvalidRequest("after must be an event seq", field="after")
        resume = after
    else:
        session = await hub.get_session(caller, session_id)
        resume = str(session["version"])
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=request.app[SETTINGS].max_body_bytes)
    if not ws.can_prepare(request).ok:
        raise InvalidRequest("this route needs a WebSocket upgrade", field="Upgrade")
    events = await hub.open_event_stream(caller, session_id, resume)
    await ws.prepare(request)

    conn = _Connection(ws, request)
    sockets = request.app[WEBSOCKETS]
    sockets.add(ws)
    WS_SUBSCRIBERS.inc()
    forwarder = asyncio.ensure_future(conn.forward(events))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await conn.handle(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await conn.send(
                    error_frame(InvalidRequest("send JSON text frames", field="body"), None)
                )
            elif msg.type == WSMsgType.ERROR:
                log.info("ws_error", error=str(ws.exception()))
                break
    finally:
        WS_SUBSCRIBERS.dec()
        sockets.discard(ws)
        forwarder.cancel()
        with contextlib.suppress(BaseException):
            await forwarder
        with contextlib.suppress(Exception):
            await events.aclose()
        await conn.close()
        if not ws.closed:
            await ws.close()
    return ws
