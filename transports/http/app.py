"""The aiohttp application: routes from the one table, one middleware, shutdown.

``make_app(settings, hub)`` builds it; whoever runs it owns the hub and the event log
(``sessionhub serve`` opens the log, starts the hub, serves, then stops both). On
shutdown the app stops the hub, which cancels running turns and records their ends,
then closes the SSE streams and WebSockets still open; the log is closed last by its
owner.
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib import metadata
from typing import Any

from aiohttp import WSCloseCode, web

from actors.hub import Hub
from sessionhub.settings import Settings
from transports.http.auth import Authenticator
from transports.http.dispatch import RouteTable
from transports.http.handlers import SPECIAL_HANDLERS, command_handler
from transports.http.keys import AUTH, HUB, NATS, OPENAPI, SETTINGS, SHUTDOWN, WEBSOCKETS
from transports.http.middlewares import add_cors_headers, api_middleware
from transports.http.openapi import build_openapi
from transports.http.routes import ROUTES

__all__ = ["make_app", "server_version"]


def server_version() -> str:
    try:
        return metadata.version("sessionhub")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "0.0.0"


def make_app(settings: Settings, hub: Hub, nats: Any = None) -> web.Application:
    """The HTTP API of ``hub`` as configured by ``settings`` (every route of ROUTES).

    The routes sit in one :class:`~transports.http.dispatch.RouteTable` (dispatch by path
    segments rather than a regular expression per route) behind one middleware. With
    ``nats`` (this node's NATS transport) in cluster mode, commands and streamed runs go
    to the node that owns their session.
    """
    auth = Authenticator(settings.api_keys)
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[api_middleware(settings, auth)],
    )
    app[HUB] = hub
    app[NATS] = nats
    app[SETTINGS] = settings
    app[AUTH] = auth
    app[SHUTDOWN] = asyncio.Event()
    app[WEBSOCKETS] = set()
    app[OPENAPI] = build_openapi(ROUTES, version=server_version())
    table = RouteTable()
    for route in ROUTES:
        handler = (
            command_handler(route) if route.kind == "command" else SPECIAL_HANDLERS[route.name]
        )
        table.add_route(route.method, route.path, handler, name=route.name)
    app.router.register_resource(table)
    if settings.cors_origins:
        # Off by default: then no response pays for the hook.
        app.on_response_prepare.append(add_cors_headers)
    app.on_shutdown.append(_on_shutdown)
    return app


async def _on_shutdown(app: web.Application) -> None:
    """Stop the hub, then end what is still open.

    Stopping the hub cancels running turns and records their ends, so a run_stream or
    WebSocket client still gets its turn's final message; it also ends the event streams.
    Then every SSE stream and WebSocket still open is closed.
    """
    try:
        await app[HUB].stop()
    finally:
        app[SHUTDOWN].set()
        for ws in list(app[WEBSOCKETS]):
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
