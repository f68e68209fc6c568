"""An in-memory event log, for tests and throwaway servers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from eventlog import codec
from eventlog.base import Listener
from eventlog.errors import ConflictError, UnavailableError
from eventlog.events import Event, NewEvent, Snapshot

_log = logging.getLogger(__name__)


class _Subscription:
    def __init__(self, log: MemoryEventLog, listener: Listener) -> None:
        self._log = log
        self.listener = listener

    def close(self) -> None:
        self._log._unsubscribe(self)


class MemoryEventLog:
    """Keeps every event in lists; the same semantics as the durable backends."""

    backend = "memory"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._streams: dict[str, list[Event]] = {}
        self._all: list[Event] = []
        self._snapshots: dict[str, Snapshot] = {}
        self._subs: list[_Subscription] = []
        self._position = 0
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise UnavailableError("event log is closed")

    def append(self, stream_id: str, events: Sequence[NewEvent], expected_seq: int) -> list[Event]:
        with self._lock:
            self._check_open()
            stream = self._streams.setdefault(stream_id, [])
            if events and events[0].command_id is not None:
                done = [e for e in stream if e.command_id == events[0].command_id]
                if done:
                    return done
            if len(stream) != expected_seq:
                raise ConflictError(stream_id, expected_seq, len(stream))
            for new in events:
                codec.encode(new.data)  # refuse what a durable backend could not store
            stored = []
            for i, new in enumerate(events):
                self._position += 1
                stored.append(
                    Event(
                        stream_id=stream_id,
                        seq=expected_seq + i + 1,
                        type=new.type,
                        data=new.data,
                        created_at=new.created_at,
                        command_id=new.command_id,
                        version=new.version,
                        position=self._position,
                    )
                )
            stream.extend(stored)
            self._all.extend(stored)
            for sub in list(self._subs):
                try:
                    sub.listener(list(stored))
                except Exception:  # the events are stored: the appender still succeeds
                    _log.exception("event log listener %r failed", sub.listener)
            return stored

    def read(self, stream_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        with self._lock:
            self._check_open()
            events = self._streams.get(stream_id, [])[max(after_seq, 0) :]
            return events[:limit] if limit is not None else list(events)

    def last_seq(self, stream_id: str) -> int:
        with self._lock:
            self._check_open()
            return len(self._streams.get(stream_id, ()))

    def read_all(self, after_position: int = 0, limit: int | None = None) -> list[Event]:
        with self._lock:
            self._check_open()
            out = [e for e in self._all if e.position > after_position]
            return out[:limit] if limit is not None else out

    def last_position(self) -> int:
        with self._lock:
            self._check_open()
            return self._position

    def subscribe(self, listener: Listener) -> _Subscription:
        with self._lock:
            self._check_open()
            sub = _Subscription(self, listener)
            self._subs.append(sub)
            return sub

    def _unsubscribe(self, sub: _Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def save_snapshot(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._check_open()
            codec.encode(snapshot.state)  # refuse what a durable backend could not store
            self._snapshots[snapshot.stream_id] = snapshot

    def load_snapshot(self, stream_id: str) -> Snapshot | None:
        with self._lock:
            self._check_open()
            return self._snapshots.get(stream_id)

    def delete_stream(self, stream_id: str) -> None:
        with self._lock:
            self._check_open()
            self._streams.pop(stream_id, None)
            self._snapshots.pop(stream_id, None)
            self._all = [e for e in self._all if e.stream_id != stream_id]

    def count(self) -> int:
        with self._lock:
            self._check_open()
            return len(self._all)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._subs.clear()
