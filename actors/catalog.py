"""The catalog: a projection of every session's object, for listing and limits.

It is rebuilt from the whole log at start and then kept current by a log
subscription, so it also sees sessions written by other nodes. Each entry is a
*light* session state: the session object without context values or messages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from actors.state import ENDED_STATUSES, SessionState, evolve
from eventlog import Event, EventLog, Subscription

#: Streams that are not sessions (shared memory, hub bookkeeping) start with this.
SYSTEM_STREAM_PREFIX = "~"


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
        self._ready = False
        self._pending: list[Event] = []
        self._subscription: Subscription | None = None

    # -- building ----------------------------------------------------------------

    def attach(self, log: EventLog, page: int = 50_000) -> None:
        """Subscribe, then fold the whole log, then the events that arrived meanwhile."""
        self._subscription = log.subscribe(self._on_events)
        after = 0
        while True:
            batch = log.read_all(after_position=after, limit=page)
            with self._lock:
                for event in batch:
                    self._apply(event)
            if len(batch) < page:
                break
            after = batch[-1].position
        with self._lock:
            for event in self._pending:
                self._apply(event)
            self._pending.clear()
            self._ready = True

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
            self._sessions[sid] = state
            self._by_user.setdefault(state.user_id, {})[sid] = state
            if state.idempotency_key:
                self._idempotency[(state.user_id, state.idempotency_key)] = sid
        if state.deleted:
            self._forget(sid)

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
