"""structlog, configured once at start-up: JSON lines in production, console in a terminal.

Request context (``session_id``, ``command_id``, ``command``, ``transport``) is bound by
the transports with :func:`request_context` or :func:`bind_request_context`, so every line
logged while a request is handled carries it. It is one context variable holding a dict,
merged into a line only when a line is logged: binding costs one ``ContextVar.set`` per
request, where ``structlog.contextvars.bind_contextvars`` sets one variable per key (a
measurable share of a request's time on the event loop). Values bound with
``structlog.contextvars`` are merged as well. Context variables do not cross into
threads by themselves: code that hands work to an actor thread passes what it needs
explicitly.

Lines from the standard library's loggers (aiohttp, asyncio, pykka) go through the same
renderer, so the output is one format. JSON lines are encoded by msgspec (compact, UTF-8):
an access line cost 44 us to log with the standard library's encoder, 8.5 us of it in
``json.dumps``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO

import msgspec
import structlog

from eventlog.codec import MSGSPEC_ENCODE_ERRORS

__all__ = [
    "bind_request_context",
    "configure_logging",
    "merge_request_context",
    "request_context",
    "resolve_format",
]

_encoder = msgspec.json.Encoder(enc_hook=repr)


def _dumps(value: Any, **_: Any) -> str:
    """The JSON renderer's serializer: msgspec, with ``repr`` for what JSON cannot hold,
    and the standard library for what msgspec refuses (lone surrogates, odd keys)."""
    try:
        return _encoder.encode(value).decode()
    except MSGSPEC_ENCODE_ERRORS:
        return json.dumps(value, default=repr)


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_configured = False


def resolve_format(fmt: str, stream: TextIO | None = None) -> str:
    """``auto`` becomes ``console`` on a terminal and ``json`` otherwise."""
    if fmt != "auto":
        return fmt
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


def configure_logging(
    level: str = "info", fmt: str = "auto", stream: TextIO | None = None, *, force: bool = False
) -> None:
    """Configure structlog and the standard library's logging; a second call is a no-op.

    Args:
        level: ``debug``, ``info``, ``warning``, ``error`` or ``critical``.
        fmt: ``json``, ``console`` or ``auto`` (see :func:`resolve_format`).
        stream: where lines go (stderr by default).
        force: configure again even if already configured (tests).
    """
    global _configured
    if _configured and not force:
        return
    stream = stream or sys.stderr
    numeric = _LEVELS.get(level.lower(), logging.INFO)
    renderer: Any
    if resolve_format(fmt, stream) == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=_isatty(stream))
        exc = []
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
        exc = [structlog.processors.format_exc_info]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        merge_request_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            *exc,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )

    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *exc,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # aiohttp's access log is replaced by the transport's own request line.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    _configured = True


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


_request: ContextVar[Mapping[str, Any] | None] = ContextVar(
    "sessionhub_request_context", default=None
)


def merge_request_context(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the bound request context, under what the line itself says."""
    values = _request.get()
    if values:
        return {**values, **event_dict}
    return event_dict


@contextmanager
def request_context(**values: Any) -> Iterator[None]:
    """Bind ``values`` (``session_id``, ``command_id``, ``transport``...) to every log line
    of the enclosed code, then restore the previous context."""
    token = _request.set({**(_request.get() or {}), **values})
    try:
        yield
    finally:
        _request.reset(token)


def bind_request_context(values: Mapping[str, Any]) -> None:
    """Bind ``values`` to every log line of the current task, for the rest of the task.

    For code that runs in a task of its own per request, as aiohttp runs each request
    (it copies the context into a new task, so what is bound here ends with the
    request): no context manager to enter and leave and no reset, which a middleware
    would otherwise pay on every request. Elsewhere, use :func:`request_context`.
    """
    current = _request.get()
    _request.set({**current, **values} if current else values)
