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

Mostly invisible to the garbage collector: at most a quarter of the bound is kept as
dicts, the form reads hand out without copying (the histories read or written most
recently); the rest is kept as each event's JSON, one ``bytes`` object per event, which
the collector does not track. All as dicts, 100,000 events were half a million tracked
objects, and every full collection walked them: under a steady PUT load its pauses grew
from 8 ms to 120 ms within half a minute, and p99 latency with them. A read of a history
kept as JSON decodes it once (about 1.4 us an event) and keeps it as dicts.
The event dicts are shared by every read: callers must not change them (the HTTP and
NATS transports only encode them).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec

from actors.decide import event_to_api
from eventlog import Event
from eventlog.codec import MSGSPEC_ENCODE_ERRORS, fast_decode

__all__ = ["HistoryCache"]

_encode = msgspec.json.Encoder().encode


class _History:
    """One session's events from seq 1, as API dicts or (``raw``) as their JSON."""

    __slots__ = ("events", "raw")

    def __init__(self, events: list[Any], raw: bool = False) -> None:
        self.events = events
        self.raw = raw

    def __len__(self) -> int:
        return len(self.events)

    def append(self, api: dict[str, Any]) -> None:
        if self.raw:
            try:
                self.events.append(_encode(api))
                return
            except MSGSPEC_ENCODE_ERRORS:
                self.decode()  # msgspec cannot spell it: keep this history as dicts
        self.events.append(api)

    def decode(self) -> None:
        if self.raw:
            self.events = fast_decode(b"[" + b",".join(self.events) + b"]")
            self.raw = False

    def encode(self) -> bool:
        """Keep the events as JSON; False (and still dicts) if one cannot be encoded."""
        try:
            self.events = [_encode(e) for e in self.events]
        except MSGSPEC_ENCODE_ERRORS:
            return False
        self.raw = True
        return True


class HistoryCache:
    """Complete event histories (seq 1..n, as API dicts) of recently read sessions."""

    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        #: Events kept as dicts at most; the histories used least recently go to JSON.
        self.max_dict_events = max_events // 4
        self._entries: OrderedDict[str, _History] = OrderedDict()
        self._size = 0
        #: The histories kept as dicts, least recently used first, and their events.
        self._dicts: OrderedDict[str, None] = OrderedDict()
        self._dict_events = 0
        #: session id -> events applied while its history is read from the log.
        self._filling: dict[str, list[Event]] = {}

    def __len__(self) -> int:
        """Events held, over every session."""
        return self._size

    def get(self, session_id: str) -> list[dict[str, Any]] | None:
        """The session's whole history (index i holds seq i + 1), or None if not held."""
        entry = self._entries.get(session_id)
        if entry is None:
            return None
        self._entries.move_to_end(session_id)
        entry.decode()
        if session_id in self._dicts:
            self._dicts.move_to_end(session_id)
        else:
            self._dicts[session_id] = None
            self._dict_events += len(entry)
            self._shrink(keep=session_id)
        return entry.events  # type: ignore[no-any-return]

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
        self._entries[session_id] = _History(events)
        self._size += len(events)
        self._dicts[session_id] = None
        self._dict_events += len(events)
        self._evict()
        self._shrink(keep=session_id)
        return events

    def apply(self, events: list[Event]) -> None:
        """Extend the kept histories with newly committed events (on the loop)."""
        entries, filling, dicts = self._entries, self._filling, self._dicts
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
                    entries[sid] = _History([event_to_api(event)])
                    dicts[sid] = None
                    self._dict_events += 1
                    self._size += 1
                continue
            if event.seq == len(entry) + 1:
                entry.append(event_to_api(event))
                self._size += 1
                entries.move_to_end(sid)
                if not entry.raw:
                    if sid in dicts:
                        self._dict_events += 1
                        dicts.move_to_end(sid)
                    else:  # decoded just now (a value only dicts can hold)
                        dicts[sid] = None
                        self._dict_events += len(entry)
                if not self.wants(len(entry)):
                    self._drop(sid)
            elif event.seq > len(entry):  # a gap: the history is no longer whole
                self._drop(sid)
        self._evict()
        self._shrink()

    def _drop(self, session_id: str) -> None:
        entry = self._entries.pop(session_id, None)
        if entry is not None:
            self._forget(session_id, entry)

    def _forget(self, session_id: str, entry: _History) -> None:
        self._size -= len(entry)
        if session_id in self._dicts:
            del self._dicts[session_id]
            self._dict_events -= len(entry)

    def _evict(self) -> None:
        while self._size > self.max_events and self._entries:
            sid, entry = self._entries.popitem(last=False)
            self._forget(sid, entry)

    def _shrink(self, keep: str | None = None) -> None:
        """Keep the histories used least recently as JSON until the dicts fit the bound."""
        dicts, entries = self._dicts, self._entries
        while self._dict_events > self.max_dict_events and dicts:
            sid = next(iter(dicts))
            if sid == keep:
                if len(dicts) == 1:
                    return
                dicts.move_to_end(sid)
                continue
            del dicts[sid]
            entry = entries[sid]
            self._dict_events -= len(entry)
            entry.encode()  # one msgspec cannot encode stays dicts, off the books
