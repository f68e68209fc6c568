"""Fan-out of a session's events to asyncio subscribers (SSE, WebSocket, NATS).

Lives on the event loop. Durable events arrive from the log's listener through
``call_soon_threadsafe``, once per committed batch; stream chunks are published
by the turn runner on the loop itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actors.decide import event_to_api
from actors.ids import new_id
from eventlog import Event


def stream_message(type_: str, created_at: str, data: dict[str, Any]) -> dict[str, Any]:
    """A message of a session's stream that is not a log event (a turn's start, chunks,
    end or error; a collaboration's progress): the same shape, with an id of its own."""
    return {"type": type_, "id": new_id("evt-"), "created_at": created_at, "data": data}


@dataclass(frozen=True, slots=True)
class Item:
    """One message of a session's stream.

    ``kind`` is "event" (durable: ``seq`` set) or "chunk" (``seq`` is the turn's
    start event, ``n`` the chunk's number); ``sse_id`` is what SSE sends as ``id:``.
    """

    kind: str
    session_id: str
    type: str
    sse_id: str
    payload: dict[str, Any]
    seq: int
    n: int = 0


class Subscriber:
    """A bounded queue; a subscriber that falls too far behind is cut off."""

    def __init__(self, session_id: str, maxsize: int) -> None:
        self.session_id = session_id
        self.queue: asyncio.Queue[Item | None] = asyncio.Queue()
        self.maxsize = maxsize
        self.lagged = False

    def put(self, item: Item) -> None:
        if self.lagged:
            return
        if self.queue.qsize() >= self.maxsize:
            self.lagged = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(item)

    def close(self) -> None:
        self.queue.put_nowait(None)


GlobalListener = Callable[[Item], None]


class EventBus:
    def __init__(self, max_queue: int = 10_000) -> None:
        self._subs: dict[str, set[Subscriber]] = {}
        self._global: list[GlobalListener] = []
        self.max_queue = max_queue

    def subscribe(self, session_id: str) -> Subscriber:
        sub = Subscriber(session_id, self.max_queue)
        self._subs.setdefault(session_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._subs.get(sub.session_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.session_id]

    def add_listener(self, listener: GlobalListener) -> None:
        self._global.append(listener)

    def remove_listener(self, listener: GlobalListener) -> None:
        if listener in self._global:
            self._global.remove(listener)

    def has_listeners(self) -> bool:
        """Whether anyone listens (read from other threads: a stale True costs a no-op)."""
        return bool(self._global or self._subs)

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def publish_events(self, events: list[Event]) -> None:
        if not self._global and not self._subs:
            return  # nobody listens: skip building the API form of each event
        for event in events:
            if not self._global and event.stream_id not in self._subs:
                continue
            item = Item(
                "event",
                event.stream_id,
                event.type,
                str(event.seq),
                event_to_api(event),
                event.seq,
            )
            self._publish(item)

    def publish(self, item: Item) -> None:
        self._publish(item)

    def _publish(self, item: Item) -> None:
        for sub in self._subs.get(item.session_id, ()):
            sub.put(item)
        for listener in self._global:
            listener(item)

    def close_all(self) -> None:
        for subs in list(self._subs.values()):
            for sub in subs:
                sub.close()
