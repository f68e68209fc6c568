"""Clocks: the real one, and a manual one that tests move by hand."""

from __future__ import annotations

import datetime as _dt
import threading
import time
from typing import Protocol

from eventlog.events import format_utc


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to; thread-safe."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


#: Epoch seconds as RFC 3339 UTC with a ``Z`` (millisecond precision).
iso = format_utc


def parse_iso(text: str) -> float:
    """RFC 3339 (as written by ``iso``) back to epoch seconds."""
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
