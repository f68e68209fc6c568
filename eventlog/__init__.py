"""Append-only event log: envelope, codec, protocol and backends."""

from __future__ import annotations

from urllib.parse import urlparse

from eventlog.base import AppendDone, EventLog, Listener, Subscription, append_then
from eventlog.errors import (
    ConflictError,
    CorruptRecordError,
    EventLogError,
    InvalidEventError,
    UnavailableError,
)
from eventlog.events import Event, NewEvent, Snapshot, utc_now

__all__ = [
    "AppendDone",
    "ConflictError",
    "CorruptRecordError",
    "Event",
    "EventLog",
    "EventLogError",
    "InvalidEventError",
    "Listener",
    "NewEvent",
    "Snapshot",
    "Subscription",
    "UnavailableError",
    "append_then",
    "open_eventlog",
    "utc_now",
]


def _open_memory(url: str) -> EventLog:
    from eventlog.backends.memory import MemoryEventLog

    return MemoryEventLog()


def _open_sqlite(url: str) -> EventLog:
    from eventlog.backends.sqlite import SQLiteEventLog

    return SQLiteEventLog.from_url(url)


def _open_jetstream(url: str) -> EventLog:
    from eventlog.backends.jetstream import JetStreamEventLog

    return JetStreamEventLog.from_url(url)


_BACKENDS = {"memory": _open_memory, "sqlite": _open_sqlite, "jetstream": _open_jetstream}


def open_eventlog(url: str) -> EventLog:
    """Open the backend named by the URL's scheme.

    ``memory://``, ``sqlite:///path/events.db``, ``jetstream://host:4222?replicas=3``.
    """
    scheme = urlparse(url).scheme
    opener = _BACKENDS.get(scheme)
    if opener is None:
        known = ", ".join(f"{s}://" for s in _BACKENDS)
        raise ValueError(f"unknown event log URL {url!r}: expected one of {known}")
    return opener(url)
