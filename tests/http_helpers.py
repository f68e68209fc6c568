"""A real sessionhub HTTP server on a loopback port, in-process, and a client for it.

    async with running_server(api_keys={"k1": "alice"}) as srv:
        status, body = await srv.call("POST", "/sessions", {"name": "x"}, key="k1")

The server is the real ``make_app`` behind aiohttp's ``AppRunner`` on ``127.0.0.1:0``,
over a real :class:`~actors.hub.Hub` and event log (``memory://`` unless told), and the
client is a real :class:`aiohttp.ClientSession`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import aiohttp
from aiohttp import web

from actors.config import HubConfig
from actors.hub import Hub
from eventlog import EventLog, open_eventlog
from sessionhub.settings import Settings
from transports.http import make_app

__all__ = [
    "SSEMessage",
    "Server",
    "free_port",
    "read_sse",
    "running_server",
]


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SSEMessage:
    """One SSE message as the wire carried it."""

    id: str | None
    data: Any
    lines: list[str] = field(default_factory=list)


async def read_sse(
    response: aiohttp.ClientResponse, *, comments: list[str] | None = None
) -> AsyncIterator[SSEMessage]:
    """Parse an SSE body into messages; comment lines go to ``comments`` when given."""
    lines: list[str] = []
    sse_id: str | None = None
    data: list[str] = []
    async for raw in response.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if line == "":
            if data or sse_id is not None:
                yield SSEMessage(sse_id, json.loads("\n".join(data)), lines)
            lines, sse_id, data = [], None, []
            continue
        if line.startswith(":"):
            if comments is not None:
                comments.append(line)
            continue
        lines.append(line)
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            sse_id = value
        elif name == "data":
            data.append(value)


@dataclass
class Server:
    """A running server and a client session bound to it."""

    url: str
    port: int
    hub: Hub
    app: web.Application
    client: aiohttp.ClientSession
    settings: Settings
    log: EventLog
    default_key: str | None = None

    def headers(self, key: str | None = None, extra: Mapping[str, str] | None = None) -> dict:
        headers = dict(extra or {})
        key = key or self.default_key
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        data: bytes | str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request; answers the status and the JSON body (or the text)."""
        kwargs: dict[str, Any] = {"headers": self.headers(key, headers)}
        if data is not None:
            kwargs["data"] = data
        elif body is not None:
            kwargs["json"] = body
        if params is not None:
            kwargs["params"] = params
        async with self.client.request(method, self.url + path, **kwargs) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def create(self, key: str | None = None, **body: Any) -> dict[str, Any]:
        """Create a session; fail loudly if the server refuses."""
        status, out = await self.call("POST", "/sessions", body, key=key)
        assert status == 201, (status, out)
        return out

    async def get(self, session_id: str, key: str | None = None) -> dict[str, Any]:
        status, out = await self.call("GET", f"/sessions/{session_id}", key=key)
        assert status == 200, (status, out)
        return out

    async def sse(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        limit: int | None = None,
        until: str | None = "stream_end",
    ) -> list[SSEMessage]:
        """Read an SSE response to its end (or ``limit`` messages, or a message whose
        ``type`` is ``until``)."""
        out: list[SSEMessage] = []
        kwargs: dict[str, Any] = {"headers": self.headers(key, headers)}
        if body is not None:
            kwargs["json"] = body
        async with self.client.request(method, self.url + path, **kwargs) as resp:
            assert resp.status == 200, (resp.status, await resp.text())
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            async for message in read_sse(resp):
                out.append(message)
                if limit is not None and len(out) >= limit:
                    break
                data = message.data
                if until and isinstance(data, dict) and data.get("type") in (until, "error"):
                    break
        return out


@contextlib.asynccontextmanager
async def running_server(
    *,
    eventlog: str = "memory://",
    log: EventLog | None = None,
    hub_config: HubConfig | None = None,
    default_key: str | None = None,
    **overrides: Any,
) -> AsyncIterator[Server]:
    """Serve ``make_app`` on a free loopback port for the duration of the block.

    Args:
        eventlog: URL of a log to open (and close at the end) when ``log`` is not given.
        log: an already open log (left open).
        hub_config: the hub's configuration (default: ``HubConfig()``).
        default_key: API key sent when a call names none.
        overrides: fields of :class:`Settings` (``api_keys`` may be a dict).
    """
    if "api_keys" in overrides:
        overrides["api_keys"] = MappingProxyType(dict(overrides["api_keys"]))
    settings = dataclasses.replace(
        Settings(host="127.0.0.1", port=0, eventlog=eventlog, shutdown_timeout_s=5.0),
        hub=hub_config or HubConfig(),
        **overrides,
    )
    own_log = log is None
    event_log = log if log is not None else open_eventlog(eventlog)
    try:
        async with Hub.running(event_log, settings.hub) as hub:
            app = make_app(settings, hub)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            url = f"http://127.0.0.1:{port}"
            timeout = aiohttp.ClientTimeout(total=60)
            try:
                async with aiohttp.ClientSession(timeout=timeout) as client:
                    yield Server(url, port, hub, app, client, settings, event_log, default_key)
            finally:
                await asyncio.wait_for(runner.cleanup(), 30)
    finally:
        if own_log:
            event_log.close()
