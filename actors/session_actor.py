"""``SessionActor``: one session's state, its commands serialised on one thread.

Failure semantics: every request carries a reply callback and is answered
exactly once, with a result or an error, including when the actor stops or
crashes with requests still queued. A crash (an unexpected exception) stops the
actor; the supervisor starts a fresh one from the log on the next request.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass, field
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
from eventlog import ConflictError, Event, EventLog, EventLogError, NewEvent, Snapshot

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
    ) -> None:
        super().__init__()
        self.session_id = session_id
        self.log = log_
        self.config = config
        self.clock = clock
        self.on_stopped = on_stopped
        self.state = SessionState(session_id=session_id)
        self.load_error: BaseException | None = None
        self.snapshot_seq = 0

    def on_start(self) -> None:
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
            message.reply(result, None)

    def _handle(self, req: Request) -> Any:
        reader = READERS.get(req.name)
        if reader is not None:
            return reader(self.state, req.args)
        decider = DECIDERS[req.name]
        for attempt in range(3):
            ctx = Ctx(self.clock.now(), req.command_id, self.config.limits)
            events, reply = decider(self.state, dict(req.args), ctx)
            if not events:
                return reply(self.state, [])
            try:
                stored = self._append(events)
            except ConflictError:
                # Another writer (a node that held this session before) moved the
                # stream on: catch up from the log and decide again.
                self.state = load_state(self.log, self.session_id)
                if attempt == 2:
                    raise Conflict(
                        "version_conflict", "the session changed concurrently; retry"
                    ) from None
                continue
            return reply(self.state, stored)
        raise AssertionError("unreachable")

    def _append(self, events: list[NewEvent]) -> list[Event]:
        stored = self.log.append(self.session_id, events, self.state.version)
        for event in stored:
            if event.seq > self.state.version:
                evolve(self.state, event)
        if self.state.deleted and any(e.data.get("purge") for e in stored):
            self.log.delete_stream(self.session_id)
        elif self.state.version - self.snapshot_seq >= self.config.snapshot_every:
            self.log.save_snapshot(
                Snapshot(self.session_id, self.state.version, self.state.to_snapshot())
            )
            self.snapshot_seq = self.state.version
        return stored

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
