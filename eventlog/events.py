"""The event envelope: what every backend stores and every reader gets back."""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field
from typing import Any

import msgspec

SCHEMA_VERSION = 1


#: (epoch second, its "YYYY-MM-DDTHH:MM:SS." text): every event carries a timestamp, and
#: formatting a datetime costs several microseconds, most of it for the same second.
_second: tuple[int, str] = (-1, "")


def format_utc(ts: float) -> str:
    """Epoch seconds as RFC 3339 UTC with a ``Z``, millisecond precision (truncated)."""
    global _second
    sec, ms = divmod(int(ts * 1000), 1000)
    cached = _second
    if cached[0] != sec:
        cached = (sec, _time.strftime("%Y-%m-%dT%H:%M:%S.", _time.gmtime(sec)))
        _second = cached
    return f"{cached[1]}{ms:03d}Z"


def utc_now() -> str:
    """The current time as RFC 3339 UTC with a ``Z`` (millisecond precision)."""
    return format_utc(_time.time())


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: its seq and position are assigned by the log.

    ``created_at`` is set by the caller (the actor's clock), never by ``apply``,
    so a replay reproduces the same state.
    """

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    command_id: str | None = None
    created_at: str = field(default_factory=utc_now)
    version: int = SCHEMA_VERSION


class Event(msgspec.Struct, frozen=True):
    """A durable event of one stream.

    ``seq`` counts 1, 2, 3… per stream with no gaps; ``position`` orders every
    event of the log globally (backend-defined, strictly increasing). A frozen
    msgspec Struct rather than a dataclass: replay builds one per event, and a
    Struct is built about five times faster.
    """

    stream_id: str
    seq: int
    type: str
    data: dict[str, Any]
    created_at: str
    command_id: str | None = None
    version: int = SCHEMA_VERSION
    position: int = 0

    def to_api(self) -> dict[str, Any]:
        """The event object of the HTTP API (``GET /sessions/{id}/events``)."""
        return {
            "seq": self.seq,
            "type": self.type,
            "data": self.data,
            "created_at": self.created_at,
            "command_id": self.command_id,
        }


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A folded state of one stream as of ``seq``; always rebuildable from the log."""

    stream_id: str
    seq: int
    state: dict[str, Any]
    created_at: str = field(default_factory=utc_now)
