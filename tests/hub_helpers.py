"""Helpers for tests that drive the Hub facade directly."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from actors.config import HubConfig
from actors.hub import Caller
from eventlog import Event, EventLog, NewEvent
from eventlog.backends.memory import MemoryEventLog

OPERATOR = Caller()
ALICE = Caller("alice")
BOB = Caller("bob")


def config(**kw) -> HubConfig:
    """A config with the background sweeper off: tests sweep by hand."""
    kw.setdefault("sweep_interval_s", 0)
    return HubConfig(**kw)


class GatedLog(MemoryEventLog):
    """A memory log whose appends to one stream wait until the gate opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gated_stream: str | None = None
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def append(self, stream_id: str, events: Sequence[NewEvent], expected_seq: int) -> list[Event]:
        if stream_id == self.gated_stream:
            self.waiting.set()
            self.gate.wait(10)
        return super().append(stream_id, events, expected_seq)


def fresh_log() -> EventLog:
    return MemoryEventLog()
