"""Event histories of recently read sessions, kept on the loop for the next reads.

Reading a session's events (``GET /sessions/{id}/events``, ``Hub.read_events``) from
the log costs a thread hop and a query, about a millisecond for 200 events. Agents and
UIs read the same histories again and again, so a history once read is kept here, as
the API shows its events, and every later read of it is served from memory. A
session created while the server runs is kept from its first event on, so the
sessions being written are the ones whose reads are already warm.

What keeps it current: the hub hands every committed batch of events to ``apply`` on
the loop. The log calls its listeners before it acknowledges an append, and the loop
runs ``apply`` before the append's answer, so a history here never lags an
acknowledged write. Only logs that behave that way (SQLite and memory) get a cache; a
JetStream listener runs after the acknowledgement.

Filling without a gap: ``begin_fill`` is called before the history is read from the
log, and the events applied while the read runs are kept. ``end_fill`` joins both by seq,
so an event committed during the read is neither lost nor doubled.

Bounded: at most ``max_events`` events in all. The sessions read or written least
recently are dropped first, and a history longer than a quarter of the bound is not
kept.
The event dicts are shared by every read: callers must not change them (the HTTP and
NATS transports only encode them).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from actors.decide import event_to_api
from eventlog import Event

__all__ = ["HistoryCache"]


class HistoryCache:
    """Complete event histories (seq 1..n, as API dicts) of recently read sessions."""

    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        self._entries: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._size = 0
        #: session id -> events applied while its history is read from the log.
        self._filling: dict[str, list[Event]] = {}

    def __len__(self) -> int:
        """Events held, over every session."""
        return self._size

    def get(self, session_id: str) -> list[dict[str, Any]] | None:
        """The session's whole history (index i holds seq i + 1), or None if not held."""
        entry = self._entries.get(session_id)
        if entry is not None:
            self._entries.move_to_end(session_id)
        return entry

    def wants(self, length: int) -> bool:
        """Whether a history of ``length`` events is worth reading in full to keep."""
        return self.max_events > 0 and length <= self.max_events // 4

    def begin_fill(self, session_id: str) -> None:
        """Start keeping the session's applied events; its history is being read."""
        self._filling.setdefault(session_id, [])

    def cancel_fill(self, session_id: str) -> None:
        """The read for ``begin_fill`` failed or was not worth it: stop keeping events."""
        self._filling.pop(session_id, None)

    def end_fill(self, session_id: str, history: list[Event]) -> list[dict[str, Any]] | None:
        """Keep ``history`` (read from seq 1) joined with the events applied meanwhile.

        Returns the history kept, or None when it could not be made whole (a gap, or a
        purge meanwhile), in which case nothing is kept.
        """
        applied = self._filling.pop(session_id, None)
        if applied is None:
            return None  # purged while being read
        events = [event_to_api(e) for e in history]
        for event in applied:
            if event.seq == len(events) + 1:
                events.append(event_to_api(event))
        if any(e["seq"] != i for i, e in enumerate(events, 1)):
            return None
        self._drop(session_id)
        if not self.wants(len(events)):
            return None
        self._entries[session_id] = events
        self._size += len(events)
        self._evict()
        return events

    def apply(self, events: list[Event]) -> None:
        """Extend the kept histories with newly committed events (on the loop)."""
        entries, filling = self._entries, self._filling
        for event in events:
            sid = event.stream_id
            pending = filling.get(sid)
            if pending is not None:
                pending.append(event)
            if event.type == "session_deleted" and event.data.get("purge"):
                self._drop(sid)
                filling.pop(sid, None)
                continue
            entry = entries.get(sid)
            if entry is None:
                if event.seq == 1 and self.max_events > 0:
                    # A session born here: its whole history passes through apply.
                    entries[sid] = [event_to_api(event)]
                    self._size += 1
                continue
            if event.seq == len(entry) + 1:
                entry.append(event_to_api(event))
                self._size += 1
                entries.move_to_end(sid)
                if not self.wants(len(entry)):
                    self._drop(sid)
            elif event.seq > len(entry):  # a gap: the history is no longer whole
                self._drop(sid)
        self._evict()

    def _drop(self, session_id: str) -> None:
        entry = self._entries.pop(session_id, None)
        if entry is not None:
            self._size -= len(entry)

    def _evict(self) -> None:
        while self._size > self.max_events and self._entries:
            _, entry = self._entries.popitem(last=False)
            self._size -= len(entry)
