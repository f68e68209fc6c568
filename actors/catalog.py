"""The catalog: a projection of every session's object, for listing and limits.

It is rebuilt from the log at start and then kept current by a log subscription, so it
also sees sessions written by other nodes. Each entry is a *light* session state: the
session object without context values or messages.

Rebuilding it folds every event of the log (about 8 to 11 us an event: 100 s for 10
million), so the hub can save it as a snapshot (``save_snapshot``: the light states, the
log position they are as of, and the system streams seen) in the log's snapshot store
under ``CATALOG_SNAPSHOT``; ``attach`` then starts from the snapshot and folds only the
events after it. A snapshot is only a cache of the fold. A session purged after it
(purging deletes a stream's events, so the log no longer shows its deletion) is caught
by the log's count of deleted events: when it moved, every session of the snapshot is
checked against the log. A snapshot that does not decode, has another format or is ahead
of the log is ignored (the whole log is folded, as without one).
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from actors.state import ENDED_STATUSES, SessionState, evolve
from eventlog import Event, EventLog, Snapshot, Subscription

_log = logging.getLogger(__name__)

#: Streams that are not sessions (shared memory, hub bookkeeping) start with this.
SYSTEM_STREAM_PREFIX = "~"
#: The snapshot id of the catalog itself (a snapshot with no stream of events).
CATALOG_SNAPSHOT = "~catalog"
_SNAPSHOT_FORMAT = 1
_encode_states = msgspec.json.Encoder().encode
_decode_states = msgspec.json.Decoder(list[SessionState]).decode


@dataclass(frozen=True)
class ListQuery:
    user_id: str | None = None
    status: str | None = None
    tag: str | None = None
    capability: str | None = None
    agent_type: str | None = None
    limit: int = 100
    cursor: str | None = None


class Catalog:
    """Thread-safe index of sessions by id and by user."""

    def __init__(self, sinks: list[Callable[[Event], None]] | None = None) -> None:
        #: Projections of the system streams (shared memory, hub messages).
        self.sinks = sinks or []
        self._lock = threading.RLock()
        self._sessions: dict[str, SessionState] = {}
        self._by_user: dict[str, dict[str, SessionState]] = {}
        self._idempotency: dict[tuple[str, str], str] = {}
        self._position = 0
        self._system_streams: set[str] = set()
        self._ready = False
        self._pending: list[Event] = []
        self._subscription: Subscription | None = None
        #: Where the last ``attach`` started (a snapshot's position, else 0) and how
        #: many events it folded.
        self.loaded_from = 0
        self.folded = 0

    @property
    def position(self) -> int:
        """The log position of the last event folded."""
        with self._lock:
            return self._position

    # -- building ----------------------------------------------------------------

    def attach(self, log: EventLog, page: int = 50_000, use_snapshot: bool = False) -> None:
        """Subscribe, then fold the log (after the catalog snapshot, with
        ``use_snapshot``), then the events that arrived meanwhile."""
        self._subscription = log.subscribe(self._on_events)
        # The fold allocates millions of objects that all live on: the cyclic GC's
        # scans of them would cost a third of the time (measured at 1 M events).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            after = self._load_snapshot(log) if use_snapshot else 0
            self.loaded_from, self.folded = after, 0
            while True:
                batch = log.read_all(after_position=after, limit=page)
                with self._lock:
                    for event in batch:
                        self._apply(event)
                self.folded += len(batch)
                if len(batch) < page:
                    break
                after = batch[-1].position
            with self._lock:
                for event in self._pending:
                    self._apply(event)
                self._pending.clear()
                self._ready = True
        finally:
            if gc_was_enabled:
                gc.enable()

    def save_snapshot(self, log: EventLog) -> int:
        """Save the catalog as of its position in ``log``'s snapshots; returns the position.

        The states are encoded under the catalog's lock (about 3 us a session), so that
        they are exactly the fold up to that position.
        """
        deleted = log.last_position() - log.count()  # before the states: see _load_snapshot
        with self._lock:
            position = self._position
            sessions = _encode_states(list(self._sessions.values()))
            system = sorted(self._system_streams)
        state = {
            "format": _SNAPSHOT_FORMAT,
            "position": position,
            "deleted": deleted,
            "system_streams": system,
            "sessions": sessions.decode(),
        }
        log.save_snapshot(Snapshot(CATALOG_SNAPSHOT, position, state))
        return position

    def _load_snapshot(self, log: EventLog) -> int:
        """Start from the catalog snapshot; returns its position (0: none usable)."""
        snapshot = log.load_snapshot(CATALOG_SNAPSHOT)
        if snapshot is None:
            return 0
        data = snapshot.state
        last = log.last_position()
        try:
            if data.get("format") != _SNAPSHOT_FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            position = int(data["position"])
            if position > last:
                raise ValueError(f"position {position} is ahead of the log ({last})")
            states = _decode_states(data["sessions"])
            system = [str(sid) for sid in data["system_streams"]]
            purged = last - log.count() != data["deleted"]
        except (AttributeError, KeyError, TypeError, ValueError, msgspec.DecodeError) as exc:
            _log.warning("catalog snapshot ignored (the whole log is folded): %s", exc)
            return 0
        if purged:  # streams were deleted since: keep the sessions the log still has
            states = [s for s in states if log.last_seq(s.session_id) >= s.version]
        # The system streams' projections: their events up to the snapshot, in log order
        # (the fold after it gives them the rest; they skip what they have seen).
        events = [e for sid in system for e in log.read(sid) if e.position <= position]
        events.sort(key=lambda e: e.position)
        with self._lock:
            for state in states:
                self._index(state)
            self._position = position
            self._system_streams.update(system)
            for event in events:
                for sink in self.sinks:
                    sink(event)
        return position

    def detach(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    def _on_events(self, events: list[Event]) -> None:
        with self._lock:
            if not self._ready:
                self._pending.extend(events)
                return
            for event in events:
                self._apply(event)

    def _apply(self, event: Event) -> None:
        if event.position and event.position <= self._position:
            return
        self._position = max(self._position, event.position)
        sid = event.stream_id
        if sid.startswith(SYSTEM_STREAM_PREFIX):
            self._system_streams.add(sid)
            for sink in self.sinks:
                sink(event)
            return
        state = self._sessions.get(sid)
        if event.seq == 1:
            if state is not None:
                self._forget(sid)
            state = SessionState(session_id=sid, full=False)
        elif state is None or event.seq != state.version + 1:
            return
        evolve(state, event)
        if event.seq == 1 and state.exists:
            self._index(state)
        if state.deleted:
            self._forget(sid)

    def _index(self, state: SessionState) -> None:
        sid = state.session_id
        self._sessions[sid] = state
        self._by_user.setdefault(state.user_id, {})[sid] = state
        if state.idempotency_key:
            self._idempotency[(state.user_id, state.idempotency_key)] = sid

    def _forget(self, sid: str) -> None:
        state = self._sessions.pop(sid, None)
        if state is None:
            return
        self._by_user.get(state.user_id, {}).pop(sid, None)
        if state.idempotency_key:
            self._idempotency.pop((state.user_id, state.idempotency_key), None)

    # -- reading -------------------------------------------------------------------

    def owner(self, session_id: str) -> str | None:
        """The user of a live (not deleted) session, or None if there is none."""
        with self._lock:
            state = self._sessions.get(session_id)
            return state.user_id if state is not None else None

    def by_idempotency_key(self, user_id: str, key: str) -> str | None:
        with self._lock:
            return self._idempotency.get((user_id, key))

    def count_open(self, user_id: str | None = None) -> int:
        with self._lock:
            pool = self._sessions if user_id is None else self._by_user.get(user_id, {})
            return sum(1 for s in pool.values() if s.status not in ENDED_STATUSES)

    def count_by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._lock:
            for state in self._sessions.values():
                counts[state.status] = counts.get(state.status, 0) + 1
        return counts

    def status(self, session_id: str | None) -> str | None:
        with self._lock:
            state = self._sessions.get(session_id or "")
            return state.status if state is not None else None

    def with_open_turns(self) -> list[str]:
        """Sessions whose log shows a turn started and not completed."""
        with self._lock:
            return [sid for sid, s in self._sessions.items() if s.open_turns]

    def list_states(self, user_id: str | None = None) -> list[SessionState]:
        with self._lock:
            pool = self._sessions if user_id is None else self._by_user.get(user_id, {})
            return list(pool.values())

    def open_sessions(self, user_id: str | None = None) -> list[dict[str, Any]]:
        """(id, created_at, last_activity_at, expires_at, status) of open sessions."""
        with self._lock:
            pool = self._sessions if user_id is None else self._by_user.get(user_id, {})
            return [
                {
                    "session_id": s.session_id,
                    "created_at": s.created_at,
                    "last_activity_at": s.last_activity_at,
                    "expires_at": s.expires_at,
                    "status": s.status,
                }
                for s in pool.values()
                if s.status not in ENDED_STATUSES
            ]

    def list(self, q: ListQuery) -> dict[str, Any]:
        with self._lock:
            pool: Iterator[SessionState]
            if q.user_id is not None:
                pool = iter(self._by_user.get(q.user_id, {}).values())
            else:
                pool = iter(self._sessions.values())
            matches = [s for s in pool if _matches(s, q)]
            start = 0
            if q.cursor:
                ids = [s.session_id for s in matches]
                start = ids.index(q.cursor) + 1 if q.cursor in ids else len(ids)
            page = matches[start : start + q.limit]
            more = start + q.limit < len(matches)
            return {
                "sessions": [s.to_api() for s in page],
                "next_cursor": page[-1].session_id if more and page else None,
                "total": len(matches),
            }

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)


def _matches(s: SessionState, q: ListQuery) -> bool:
    if q.status is not None:
        if s.status != q.status:
            return False
    elif s.status in ENDED_STATUSES:
        return False
    if q.tag is not None and q.tag not in s.tags:
        return False
    if q.capability is not None and q.capability not in s.capabilities:
        return False
    return q.agent_type is None or s.agent_type == q.agent_type
