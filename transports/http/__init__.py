"""The HTTP transport: REST, SSE and WebSocket over aiohttp, speaking only to the Hub."""

from transports.http.app import make_app
from transports.http.routes import ROUTES, Route

__all__ = ["ROUTES", "Route", "make_app"]
