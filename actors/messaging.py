"""Hub messages between one user's sessions: direct, broadcast, replies in threads.

The record of every message is a ``message_sent`` event in the user's hub stream
(``~hub.<user>``); each delivery is a ``message_received`` event in the
recipient session's own log, so it shows on that session's SSE stream and NATS
subject live. Threads are a projection of the hub streams.
"""

from __future__ import annotations

import threading
from typing import Any

from eventlog import Event

HUB_PREFIX = "~hub."
MESSAGE_TYPES = (
    "ping",
    "request",
    "response",
    "broadcast",
    "notification",
    "task_offer",
    "task_accept",
    "sync",
    "handoff",
)


def hub_stream(user_id: str) -> str:
    return f"{HUB_PREFIX}{user_id}"


class Threads:
    """Projection: every message by id and every thread in order, per user."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._messages: dict[str, dict[str, Any]] = {}
        self._threads: dict[str, list[str]] = {}
        self._seq: dict[str, int] = {}

    def apply(self, event: Event) -> None:
        if not event.stream_id.startswith(HUB_PREFIX) or event.type != "message_sent":
            return
        with self._lock:
            if event.seq <= self._seq.get(event.stream_id, 0):
                return
            self._seq[event.stream_id] = event.seq
            message = dict(event.data)
            self._messages[message["message_id"]] = message
            self._threads.setdefault(message["thread_id"], []).append(message["message_id"])

    def last_seq(self, stream: str) -> int:
        with self._lock:
            return self._seq.get(stream, 0)

    def message(self, message_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._messages.get(message_id)
            return dict(found) if found else None

    def thread(self, thread_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(self._messages[m]) for m in self._threads.get(thread_id, [])]

    def count(self, user_id: str | None = None) -> int:
        with self._lock:
            if user_id is None:
                return len(self._messages)
            return sum(1 for m in self._messages.values() if m["user_id"] == user_id)
