"""The supervisor: finds, starts, passivates and expires session actors.

Messages flow one way: the supervisor (and the hub through it) tells actors;
actors only tell back that they stopped. The supervisor is a plain thread-safe
object rather than an actor, so looking up an actor never waits on a queue.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from typing import Any

import pykka
import structlog

from actors import metrics
from actors.catalog import Catalog
from actors.clock import Clock, parse_iso
from actors.config import HubConfig
from actors.errors import LimitExceeded, Unavailable
from actors.session_actor import InFlight, Request, SessionActor
from eventlog import EventLog

log = structlog.get_logger("sessionhub.supervisor")


class Supervisor:
    """Owns the live session actors of this node."""

    def __init__(
        self,
        log_: EventLog,
        config: HubConfig,
        clock: Clock,
        catalog: Catalog,
        monotonic: Any = time.monotonic,
    ) -> None:
        self.log = log_
        self.config = config
        self.clock = clock
        self.catalog = catalog
        self.monotonic = monotonic
        self._lock = threading.RLock()
        #: session_id -> (ref, last used, monotonic); least recently used first.
        self._actors: OrderedDict[str, pykka.ActorRef] = OrderedDict()
        self._last_used: dict[str, float] = {}
        #: Sessions that must not be passivated (a turn is running): id -> count.
        self._pinned: dict[str, int] = {}
        self.create_lock = threading.Lock()
        #: Appends queued by this node's actors and not yet decided, per session.
        self.in_flight = InFlight()

    # -- actors --------------------------------------------------------------------

    def actor(self, session_id: str) -> pykka.ActorRef:
        """The live actor of a session, started (and rehydrated) if needed."""
        with self._lock:
            ref = self._actors.get(session_id)
            if ref is not None and ref.is_alive():
                self._actors.move_to_end(session_id)
                self._last_used[session_id] = self.monotonic()
                return ref
            ref = SessionActor.start(
                session_id,
                self.log,
                self.config,
                self.clock,
                self._actor_stopped,
                self.in_flight,
            )
            self._actors[session_id] = ref
            self._last_used[session_id] = self.monotonic()
            self._enforce_cap()
            return ref

    def tell(self, session_id: str, request: Request) -> None:
        """Deliver a request, restarting the actor once if it died meanwhile."""
        for _ in range(3):
            ref = self.actor(session_id)
            try:
                ref.tell(request)
                return
            except pykka.ActorDeadError:
                self._drop(session_id, ref)
        request.reply(None, Unavailable(f"could not start an actor for {session_id!r}"))

    def _actor_stopped(self, session_id: str, ref: pykka.ActorRef) -> None:
        self._drop(session_id, ref)

    def _drop(self, session_id: str, ref: pykka.ActorRef) -> None:
        with self._lock:
            if self._actors.get(session_id) is ref:
                del self._actors[session_id]
                self._last_used.pop(session_id, None)

    def pin(self, session_id: str) -> None:
        with self._lock:
            self._pinned[session_id] = self._pinned.get(session_id, 0) + 1

    def unpin(self, session_id: str) -> None:
        with self._lock:
            n = self._pinned.get(session_id, 0) - 1
            if n > 0:
                self._pinned[session_id] = n
            else:
                self._pinned.pop(session_id, None)

    def live_actors(self) -> int:
        with self._lock:
            return len(self._actors)

    def is_live(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._actors

    def _passivate(self, session_id: str, reason: str) -> None:
        ref = self._actors.pop(session_id, None)
        self._last_used.pop(session_id, None)
        if ref is not None:
            ref.stop(block=False)
            metrics.PASSIVATIONS.labels(reason).inc()

    def _enforce_cap(self) -> None:
        excess = len(self._actors) - self.config.max_live_actors
        if excess <= 0:
            return
        for sid in list(self._actors):
            if excess <= 0:
                break
            if sid in self._pinned:
                continue
            self._passivate(sid, "cap")
            excess -= 1

    def passivate_idle(self) -> int:
        """Stop actors unused for ``passivate_after_s``; returns how many."""
        limit = self.config.passivate_after_s
        if limit <= 0:
            return 0
        now = self.monotonic()
        with self._lock:
            idle = [
                sid
                for sid, used in self._last_used.items()
                if now - used >= limit and sid not in self._pinned
            ]
            for sid in idle:
                self._passivate(sid, "idle")
        return len(idle)

    def stop_all(self) -> None:
        with self._lock:
            refs = list(self._actors.values())
            self._actors.clear()
            self._last_used.clear()
        for ref in refs:
            ref.stop(block=False)
        for ref in refs:
            with contextlib.suppress(AttributeError):
                ref.actor_stopped.wait(5)

    # -- limits and expiry -----------------------------------------------------------

    def check_create_limits(self, user_id: str) -> None:
        limits = self.config.limits
        if self.catalog.count_open(user_id) >= limits.max_sessions_per_user:
            raise LimitExceeded(
                "max_sessions_per_user",
                limits.max_sessions_per_user,
                f"user {user_id!r} has {limits.max_sessions_per_user} open sessions, the maximum",
            )
        if self.catalog.count_open() >= limits.max_sessions_total:
            raise LimitExceeded(
                "max_sessions_total",
                limits.max_sessions_total,
                f"the server holds {limits.max_sessions_total} open sessions, the maximum",
            )

    def due_expirations(self) -> list[tuple[str, str]]:
        """(session_id, reason) of open sessions whose time is up, by the clock."""
        now = self.clock.now()
        cfg = self.config
        due = []
        for s in self.catalog.open_sessions():
            if s["expires_at"] and parse_iso(s["expires_at"]) <= now:
                due.append((s["session_id"], "expires_at"))
            elif cfg.max_lifetime_s and parse_iso(s["created_at"]) + cfg.max_lifetime_s <= now:
                due.append((s["session_id"], "lifetime"))
            elif (
                cfg.idle_timeout_s and parse_iso(s["last_activity_at"]) + cfg.idle_timeout_s <= now
            ):
                due.append((s["session_id"], "idle"))
        return due

    def missed_heartbeats(self) -> list[str]:
        """Active or working sessions silent for ``heartbeat_timeout_s``."""
        limit = self.config.heartbeat_timeout_s
        if limit <= 0:
            return []
        now = self.clock.now()
        return [
            s["session_id"]
            for s in self.catalog.open_sessions()
            if s["status"] in ("active", "working")
            and parse_iso(s["last_activity_at"]) + limit <= now
        ]

    def refresh_gauges(self) -> None:
        counts = self.catalog.count_by_status()
        for status in ("active", "working", "idle", "paused", "closed", "expired"):
            metrics.SESSIONS_BY_STATUS.labels(status).set(counts.get(status, 0))
