"""Shared memory: key/value entries shared by one user's sessions.

Each user's memory is its own stream (``~memory.<user>``) in the event log, so
it is replayable like everything else. A projection, rebuilt from the log at
start and kept current by a subscription, answers reads. Writes to one user's
stream are serialised by a lock and guarded by the conditional append, so two
nodes can never interleave them.
"""

from __future__ import annotations

import fnmatch
import re
import threading
from collections.abc import Mapping
from typing import Any

from actors import validate as v
from actors.clock import Clock, iso, parse_iso
from actors.errors import InvalidRequest, NotFound
from eventlog import ConflictError, Event, EventLog, NewEvent

MEMORY_PREFIX = "~memory."
MEMORY_TYPES = ("state", "fact", "decision", "task", "context", "note", "config")
PATTERN_RE = re.compile(r"^[A-Za-z0-9_\-.:@*?\[\]!]{1,256}$")


def memory_stream(user_id: str) -> str:
    return f"{MEMORY_PREFIX}{user_id}"


def check_pattern(pattern: str) -> str:
    """A glob over keys: key characters plus ``* ? [ ] !``, brackets balanced."""
    if not PATTERN_RE.match(pattern):
        raise InvalidRequest(
            "pattern must be 1-256 characters of key characters and * ? [ ] !", field="pattern"
        )
    depth = 0
    for ch in pattern:
        if ch == "[":
            if depth:
                raise InvalidRequest("pattern has a nested [", field="pattern")
            depth = 1
        elif ch == "]":
            if not depth:
                raise InvalidRequest("pattern has a ] without [", field="pattern")
            depth = 0
    if depth:
        raise InvalidRequest("pattern has an unclosed [", field="pattern")
    return pattern


class SharedMemory:
    """Projection and writer of every user's shared memory."""

    def __init__(self, log: EventLog, clock: Clock) -> None:
        self.log = log
        self.clock = clock
        self._lock = threading.RLock()
        self._write_locks: dict[str, threading.Lock] = {}
        #: user -> key -> history of entries (oldest first); a deleted key keeps
        #: its history, with ``deleted`` set on the last entry.
        self._users: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._seq: dict[str, int] = {}

    # -- projection ---------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Fold one event of the log (events of other streams are ignored)."""
        with self._lock:
            self._apply(event)

    def rebuild(self, events: list[Event]) -> None:
        with self._lock:
            for event in events:
                self._apply(event)

    def _apply(self, event: Event) -> None:
        if not event.stream_id.startswith(MEMORY_PREFIX):
            return
        user = event.stream_id[len(MEMORY_PREFIX) :]
        if event.seq <= self._seq.get(event.stream_id, 0):
            return
        self._seq[event.stream_id] = event.seq
        keys = self._users.setdefault(user, {})
        data = event.data
        if event.type == "memory_set":
            entry = dict(data)
            entry["version"] = len(keys.get(data["key"], ())) + 1
            entry["created_at"] = event.created_at
            keys.setdefault(data["key"], []).append(entry)
        elif event.type == "memory_deleted" and data["key"] in keys:
            keys[data["key"]][-1] = {**keys[data["key"]][-1], "deleted": True}

    # -- writes ----------------------------------------------------------------------------

    def _append(self, user: str, type_: str, data: dict[str, Any]) -> Event:
        stream = memory_stream(user)
        with self._lock:
            lock = self._write_locks.setdefault(user, threading.Lock())
        with lock:
            for _ in range(5):
                expected = self._seq.get(stream, 0)
                event = NewEvent(type_, data, created_at=iso(self.clock.now()))
                try:
                    stored = self.log.append(stream, [event], expected)
                except ConflictError:
                    with self._lock:
                        self.rebuild(self.log.read(stream, after_seq=self._seq.get(stream, 0)))
                    continue
                with self._lock:
                    for e in stored:
                        self._apply(e)
                return stored[0]
        raise ConflictError(stream, self._seq.get(stream, 0), -1)

    def set(self, user: str, key: str, body: Mapping[str, Any], session_id: str) -> dict[str, Any]:
        if "value" not in body:
            raise InvalidRequest("value is required", field="value")
        type_ = v.enum(body, "type", MEMORY_TYPES, "note")
        tags = v.opt_str_list(body, "tags") or []
        ttl = v.opt_number(body, "ttl_seconds", minimum=0.001)
        now = self.clock.now()
        data = {
            "key": key,
            "value": body["value"],
            "type": type_,
            "tags": tags,
            "session_id": session_id,
            "expires_at": iso(now + ttl) if ttl else None,
        }
        self._append(user, "memory_set", data)
        return self.get(user, key)

    def delete(self, user: str, key: str) -> dict[str, Any]:
        self.get(user, key)
        self._append(user, "memory_deleted", {"key": key})
        return {"success": True}

    # -- reads -------------------------------------------------------------------------------

    def _live(self, entry: dict[str, Any], now: float) -> bool:
        if entry.get("deleted"):
            return False
        expires = entry.get("expires_at")
        return not expires or parse_iso(expires) > now

    def get(self, user: str, key: str) -> dict[str, Any]:
        with self._lock:
            history = self._users.get(user, {}).get(key)
            if history and self._live(history[-1], self.clock.now()):
                return _public(history[-1])
        raise NotFound(f"memory key {key!r} not found", details={"key": key})

    def history(self, user: str, key: str) -> dict[str, Any]:
        with self._lock:
            history = self._users.get(user, {}).get(key)
            if not history:
                raise NotFound(f"memory key {key!r} not found", details={"key": key})
            return {"key": key, "entries": [_public(e) for e in history]}

    def search(
        self,
        user: str,
        pattern: str | None = None,
        tags: list[str] | None = None,
        session_id: str | None = None,
        type_: str | None = None,
    ) -> dict[str, Any]:
        now = self.clock.now()
        out = []
        with self._lock:
            for key, history in sorted(self._users.get(user, {}).items()):
                entry = history[-1]
                if not self._live(entry, now):
                    continue
                if pattern is not None and not fnmatch.fnmatchcase(key, pattern):
                    continue
                if tags and not set(tags) <= set(entry["tags"]):
                    continue
                if session_id is not None and entry["session_id"] != session_id:
                    continue
                if type_ is not None and entry["type"] != type_:
                    continue
                out.append(_public(entry))
        return {"entries": out}

    def stats(self, user: str) -> dict[str, Any]:
        entries = self.search(user)["entries"]
        by_type: dict[str, int] = {}
        by_session: dict[str, int] = {}
        for e in entries:
            by_type[e["type"]] = by_type.get(e["type"], 0) + 1
            by_session[e["session_id"]] = by_session.get(e["session_id"], 0) + 1
        with self._lock:
            writes = sum(len(h) for h in self._users.get(user, {}).values())
        return {
            "entries": len(entries),
            "writes": writes,
            "by_type": by_type,
            "by_session": by_session,
        }


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": entry["key"],
        "value": entry["value"],
        "type": entry["type"],
        "tags": list(entry["tags"]),
        "session_id": entry["session_id"],
        "version": entry["version"],
        "created_at": entry["created_at"],
        "expires_at": entry["expires_at"],
    }
