"""Typed keys of what hangs on the application and on each request."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from actors.hub import Caller, Hub
    from sessionhub.settings import Settings
    from transports.http.auth import Authenticator

HUB: web.AppKey[Hub] = web.AppKey("hub")
SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
AUTH: web.AppKey[Authenticator] = web.AppKey("auth")
#: Set when the server shuts down: open streams end.
SHUTDOWN: web.AppKey[asyncio.Event] = web.AppKey("shutdown")
#: Open WebSocket connections, closed on shutdown.
WEBSOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("websockets")
#: The OpenAPI document, built once.
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")

#: This node's NATS transport, when serving with --nats (None otherwise). In cluster
#: mode, commands are routed through it to the node that owns their session.
NATS: web.AppKey[Any] = web.AppKey("nats")

CALLER: web.RequestKey[Caller] = web.RequestKey("caller")
