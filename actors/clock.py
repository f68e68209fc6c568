"""Clocks: the real one, and a manual one that tests move by hand."""

from __future__ import annotations

import datetime as _dt
import threading
import time
from typing import Protocol


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


def iso(ts: float) -> str:
    """Epoch seconds as RFC 3339 UTC with a ``Z`` (millisecond precision)."""
    dt = _dt.datetime.fromtimestamp(ts, _dt.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> float:
    """RFC 3339 (as written by ``iso``) back to epoch seconds."""
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
