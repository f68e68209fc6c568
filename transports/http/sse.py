"""Server-sent events: ``id:`` and ``data:`` lines only, a comment as keepalive.

:func:`send_stream` writes an async iterable of ``(sse_id, payload)`` pairs as SSE. It
never writes an ``event:`` line, so a browser's ``EventSource.onmessage`` sees every
message. It ends when the source ends, when the client goes away (detected on the next
write or keepalive) or when the server shuts down. Leaving never cancels the work
behind the source: a turn whose client is gone runs on and is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterable
from typing import Any

import structlog
from aiohttp import web

from actors.errors import HubError
from eventlog import utc_now
from transports.http.keys import SETTINGS, SHUTDOWN
from transports.metrics import SSE_SUBSCRIBERS

__all__ = ["KEEPALIVE", "format_message", "send_stream"]

log = structlog.get_logger("sessionhub.http")

KEEPALIVE = b": keepalive\n\n"
SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def format_message(sse_id: str | None, payload: dict[str, Any]) -> bytes:
    """One SSE message: an optional ``id:`` line, one ``data:`` line, a blank line."""
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    if sse_id is None:
        return f"data: {data}\n\n".encode()
    return f"id: {sse_id}\ndata: {data}\n\n".encode()


def _error_payload(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "created_at": utc_now(), "data": {"code": code, "message": message}}


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def send_stream(
    request: web.Request,
    source: AsyncIterable[tuple[str | None, dict[str, Any]]],
    *,
    kind: str,
) -> web.StreamResponse:
    """Stream ``source`` to the client as SSE; return the (finished) response.

    Args:
        request: the request being answered.
        source: pairs of SSE id (or None) and JSON payload.
        kind: a label for the subscribers gauge (``run_stream``, ``events``).
    """
    app = request.app
    keepalive_s = app[SETTINGS].sse_keepalive_s
    shutdown = app[SHUTDOWN]
    response = web.StreamResponse(status=200, headers=SSE_HEADERS)
    response.enable_chunked_encoding()
    await response.prepare(request)

    gauge = SSE_SUBSCRIBERS.labels(kind)
    gauge.inc()
    iterator = source.__aiter__()
    pending: asyncio.Future[Any] | None = None
    stop_wait = asyncio.ensure_future(shutdown.wait())
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait(
                {pending, stop_wait}, timeout=keepalive_s, return_when=asyncio.FIRST_COMPLETED
            )
            if pending in done:
                fut, pending = pending, None
                try:
                    sse_id, payload = fut.result()
                except StopAsyncIteration:
                    break
                except HubError as exc:
                    await response.write(
                        format_message(None, _error_payload(exc.code, exc.message))
                    )
                    break
                except Exception:
                    log.exception("sse_source_failed", kind=kind)
                    await response.write(
                        format_message(None, _error_payload("internal_error", "the stream failed"))
                    )
                    break
                await response.write(format_message(sse_id, payload))
            elif stop_wait in done:
                break
            else:
                if _client_gone(request):
                    break
                await response.write(KEEPALIVE)
    except (ConnectionError, asyncio.CancelledError) as exc:
        # The client went away (or the server is stopping): the work behind the source
        # goes on; only this reader stops.
        log.debug("sse_client_gone", kind=kind, reason=type(exc).__name__)
        if isinstance(exc, asyncio.CancelledError):
            raise
    finally:
        gauge.dec()
        stop_wait.cancel()
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            with contextlib.suppress(BaseException):
                await closer()
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response
