"""``SessionActor``: one session's state, its commands serialised on one thread.

Pipelined appends: the actor decides a command, queues its events to the log
(``append_then``), applies them to its state at once and goes on to the next
command while the commit is in flight. The answer to the client is sent by the log's
writer thread once the events are durable, never before. So a session's commands
cost the actor thread no wait on the disk, and a group commit answers its whole
batch in one hop to the loop. The state the actor decides on is "durable plus in
flight", which is what the next append of this single writer builds on; what
leaves the actor without an append (a read, an answer that needs no event, a
snapshot) waits until everything in flight is durable.

If a queued append fails (the log is unavailable, or another node moved the stream
on), the actor's state is marked stale. Before its next command the actor waits for
its other appends in flight to be decided, then reloads the state from the log. A
conflicting command is sent to the actor again, up to three attempts in all; any
other failure is the command's answer.

Failure semantics: every request carries a reply callback and is answered
exactly once, with a result or an error, including when the actor stops or
crashes with requests still queued. A crash (an unexpected exception) stops the
actor; the supervisor starts a fresh one from the log on the next request. A new
actor of a session first waits for the appends its predecessor left in flight.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pykka
import structlog

from actors import metrics
from actors.clock import Clock
from actors.config import HubConfig
from actors.decide import DECIDERS, Ctx
from actors.errors import Conflict, HubError, Unavailable
from actors.reads import READERS
from actors.state import SessionState, evolve
from eventlog import (
    ConflictError,
    Event,
    EventLog,
    EventLogError,
    NewEvent,
    Snapshot,
    append_then,
)

log = structlog.get_logger("sessionhub.actor")


class ActorStopped(Unavailable):
    """The request was never handled: the actor stopped first. Safe to resend."""


#: ``reply(result, error)``: called once, from the actor thread.
ReplyFn = Callable[[Any, BaseException | None], None]


@dataclass
class Request:
    """A command or query for one session."""

    name: str
    args: dict[str, Any]
    reply: ReplyFn
    command_id: str = ""
    log_context: dict[str, Any] = field(default_factory=dict)
    #: Times this request was decided before (its append conflicted).
    attempt: int = 0


#: How many times a request is decided before a conflict is its answer.
MAX_ATTEMPTS = 3

#: ``_handle``'s result when the answer will come from the log's writer thread.
_ANSWERED_LATER = object()


def _purges(events: list[NewEvent]) -> bool:
    """Whether the events delete the session with ``purge``: its stream goes too."""
    return any(e.data.get("purge") for e in events)


class InFlight:
    """Appends queued to the log and not yet decided, per session; shared by the actors.

    A session may briefly have two actors (a passivated one finishing, a new one
    starting), so the count is per session rather than per actor.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._counts: dict[str, int] = {}

    def begin(self, session_id: str) -> None:
        with self._cond:
            self._counts[session_id] = self._counts.get(session_id, 0) + 1

    def end(self, session_id: str) -> None:
        with self._cond:
            n = self._counts[session_id] - 1
            if n:
                self._counts[session_id] = n
            else:
                del self._counts[session_id]
                self._cond.notify_all()

    def wait_idle(self, session_id: str) -> None:
        """Block until no append of the session is in flight."""
        with self._cond:
            while session_id in self._counts:
                self._cond.wait()


def load_state(log_: EventLog, session_id: str, upto: int | None = None) -> SessionState:
    """Recovery: the snapshot if one fits, then the events after it."""
    state = None
    snap = log_.load_snapshot(session_id)
    if snap is not None and (upto is None or snap.seq <= upto):
        try:
            state = SessionState.from_snapshot(snap.state)
        except (KeyError, TypeError, ValueError):
            state = None  # an unreadable snapshot is dropped: the log is the truth
        if state is not None and state.version != snap.seq:
            state = None
    if state is None:
        state = SessionState(session_id=session_id)
    after = state.version
    while True:
        batch = log_.read(session_id, after_seq=after, limit=10_000)
        if upto is not None:
            batch = [e for e in batch if e.seq <= upto]
        for event in batch:
            evolve(state, event)
        if len(batch) < 10_000:
            return state
        after = batch[-1].seq


class SessionActor(pykka.ThreadingActor):
    """Holds one session; appends, then evolves, then replies."""

    @staticmethod
    def _create_actor_inbox() -> Any:
        # queue.SimpleQueue (C) instead of pykka's queue.Queue (Python, a Condition per
        # put): telling an actor is on the event loop's hot path (measured: 10% of the
        # loop's time under HTTP load went to Queue.put).
        return queue.SimpleQueue()

    def __init__(
        self,
        session_id: str,
        log_: EventLog,
        config: HubConfig,
        clock: Clock,
        on_stopped: Callable[[str, pykka.ActorRef], None] | None = None,
        in_flight: InFlight | None = None,
    ) -> None:
        super().__init__()
        self.session_id = session_id
        self.log = log_
        self.config = config
        self.clock = clock
        self.on_stopped = on_stopped
        self.in_flight = in_flight or InFlight()
        self.state = SessionState(session_id=session_id)
        self.load_error: BaseException | None = None
        self.snapshot_seq = 0
        #: Set (from the writer thread) when a queued append failed: reload first.
        self.stale = False

    def on_start(self) -> None:
        self.in_flight.wait_idle(self.session_id)
        try:
            self.state = load_state(self.log, self.session_id)
            snap = self.log.load_snapshot(self.session_id)
            self.snapshot_seq = snap.seq if snap else 0
        except EventLogError as exc:
            self.load_error = exc
            log.error("rehydrate_failed", session_id=self.session_id, error=str(exc))
        metrics.LIVE_ACTORS.inc()

    def on_receive(self, message: Any) -> None:
        if not isinstance(message, Request):
            return
        if self.load_error is not None:
            message.reply(None, Unavailable(f"session log unreadable: {self.load_error}"))
            return
        try:
            if self.stale:
                self._settle()
            result = self._handle(message)
        except HubError as exc:
            message.reply(None, exc)
        except EventLogError as exc:
            message.reply(None, Unavailable(f"event log unavailable: {exc}"))
        except Exception as exc:
            # Leave the supervisor's table before answering, so the caller's next
            # request starts a fresh actor from the log instead of queueing here.
            if self.on_stopped is not None:
                self.on_stopped(self.session_id, self.actor_ref)
            message.reply(None, Unavailable(f"session actor failed: {exc}"))
            raise
        else:
            if result is not _ANSWERED_LATER:
                message.reply(result, None)

    def _settle(self) -> bool:
        """Wait until this session's queued appends are decided; reload if one failed.

        Returns whether the state was reloaded.
        """
        self.in_flight.wait_idle(self.session_id)
        if not self.stale:
            return False
        self.state = load_state(self.log, self.session_id)
        self.stale = False
        return True

    def _handle(self, req: Request) -> Any:
        reader = READERS.get(req.name)
        if reader is not None:
            self._settle()
            return reader(self.state, req.args)
        ctx = Ctx(self.clock.now(), req.command_id, self.config.limits)
        decider = DECIDERS[req.name]

        def decide() -> Any:
            return decider(self.state, dict(req.args), ctx)

        try:
            events, reply = decide()
        except HubError:
            # Refused on a state that may hold appends in flight: refuse only on a
            # durable one (decide again if the state had to be reloaded).
            if not self._settle():
                raise
            events, reply = decide()
        if not events or _purges(events):
            if self._settle():
                events, reply = decide()
            if not events:
                return reply(self.state, [])
            if _purges(events):
                return self._purge(events, reply)
        expected = self.state.version
        sid = self.session_id
        applied = [
            Event(sid, expected + i, e.type, e.data, e.created_at, e.command_id, e.version)
            for i, e in enumerate(events, 1)
        ]
        for event in applied:
            evolve(self.state, event)
        result = reply(self.state, applied)
        self.in_flight.begin(sid)
        append_then(self.log, sid, events, expected, partial(self._appended, req, applied, result))
        if self.state.version - self.snapshot_seq >= self.config.snapshot_every:
            try:
                self._snapshot()
            except EventLogError as exc:  # the log stays the truth; try again later
                log.warning("snapshot_failed", session_id=sid, error=str(exc))
        return _ANSWERED_LATER

    def _appended(
        self,
        req: Request,
        applied: list[Event],
        result: Any,
        stored: list[Event] | None,
        error: BaseException | None,
    ) -> None:
        """The outcome of a queued append (on the log's writer thread): answer or retry."""
        try:
            if error is None:
                assert stored is not None
                if [(e.seq, e.created_at) for e in stored] != [
                    (e.seq, e.created_at) for e in applied
                ]:
                    # The log returned an earlier append of the same command: the state
                    # applied a twin of it; reload it from the log.
                    self.stale = True
                req.reply(result, None)
                return
            self.stale = True
            if isinstance(error, ConflictError) and req.attempt + 1 < MAX_ATTEMPTS:
                # Another writer (a node that held this session before) moved the
                # stream on: decide again once the state is reloaded.
                req.attempt += 1
                try:
                    self.actor_ref.tell(req)
                except pykka.ActorDeadError:
                    req.reply(None, ActorStopped("session actor stopped; retry"))
            elif isinstance(error, ConflictError):
                req.reply(None, Conflict("version_conflict", "the session changed concurrently"))
            elif isinstance(error, HubError):
                req.reply(None, error)
            else:
                req.reply(None, Unavailable(f"event log unavailable: {error}"))
        finally:
            self.in_flight.end(self.session_id)

    def _snapshot(self) -> None:
        """Save a snapshot of the durable state (waits for the appends in flight)."""
        self._settle()
        self.log.save_snapshot(
            Snapshot(self.session_id, self.state.version, self.state.to_snapshot())
        )
        self.snapshot_seq = self.state.version

    def _purge(self, events: list[NewEvent], reply: Any) -> Any:
        """Delete with purge (on a settled state): append the deletion, remove the stream."""
        try:
            stored = self.log.append(self.session_id, events, self.state.version)
        except ConflictError:
            self.stale = True
            raise Conflict("version_conflict", "the session changed concurrently") from None
        for event in stored:
            evolve(self.state, event)
        self.log.delete_stream(self.session_id)
        return reply(self.state, stored)

    def _fail_queued(self) -> None:
        while True:
            try:
                envelope = self.actor_inbox.get_nowait()
            except queue.Empty:
                return
            message = getattr(envelope, "message", None)
            if isinstance(message, Request):
                message.reply(None, ActorStopped("session actor stopped before handling this"))

    def on_stop(self) -> None:
        metrics.LIVE_ACTORS.dec()
        self._fail_queued()
        if self.on_stopped is not None:
            self.on_stopped(self.session_id, self.actor_ref)

    def on_failure(self, exc_type: Any, exc_value: Any, tb: Any) -> None:
        metrics.LIVE_ACTORS.dec()
        metrics.ACTOR_RESTARTS.inc()
        self._fail_queued()
        if self.on_stopped is not None:
            self.on_stopped(self.session_id, self.actor_ref)
