"""The async facade over the actor system: what transports and Python users call.

Pykka threads and the asyncio loop meet here, at one bridge: a request to an
actor carries a reply callback that completes an asyncio future with
``loop.call_soon_threadsafe``. Nothing here awaits a pykka future or calls a
blocking ``get()`` on the loop (pykka's ``Future.__await__`` would block it).
Blocking reads of the log run in the default executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any

import structlog

from actors import metrics
from actors import validate as v
from actors.agents import AgentRegistry, AgentSpec, InvalidAgentSpec, default_registry
from actors.bridge import Replies
from actors.bus import EventBus, Item, Subscriber
from actors.caller import OPERATOR, Caller
from actors.catalog import Catalog, ListQuery
from actors.clock import Clock, SystemClock
from actors.collab import CollaborationRunner
from actors.config import HubConfig
from actors.decide import event_to_api
from actors.errors import (
    Conflict,
    HubError,
    InvalidRequest,
    SessionNotFound,
    Unavailable,
)
from actors.history import HistoryCache
from actors.hub_collab import CollaborationMixin
from actors.memory import SharedMemory
from actors.messaging import Threads
from actors.session_actor import ActorStopped, Request, load_state
from actors.state import OPEN_STATUSES
from actors.supervisor import Supervisor
from actors.turns import Turn, TurnRunner, TurnStream
from eventlog import EventLog, EventLogError

__all__ = ["OPERATOR", "Caller", "EventStream", "Hub"]

log = structlog.get_logger("sessionhub.hub")

VERSION = "0.1.0"
ASK_TIMEOUT_S = 60.0
STATUSES = ("active", "working", "idle", "paused", "closed", "expired")
MULTITASK = ("reject", "enqueue", "interrupt")
ANONYMOUS = "anonymous"


class Hub(CollaborationMixin):
    """The session system of one node: catalog, supervisor, turns and event fan-out."""

    def __init__(
        self,
        log_: EventLog,
        config: HubConfig | None = None,
        clock: Clock | None = None,
        registry: AgentRegistry | None = None,
        monotonic: Any = time.monotonic,
    ) -> None:
        self.log = log_
        self.config = config or HubConfig()
        self.clock = clock or SystemClock()
        self.registry = registry or default_registry()
        for kind, target in self.config.agent_plugins.items():
            self.registry.load_entry_point(kind, target)
        self.memory = SharedMemory(log_, self.clock)
        self.threads = Threads()
        self.catalog = Catalog(sinks=[self.memory.apply, self.threads.apply])
        self.collabs = CollaborationRunner(self._ask, self.registry, self.config.agents, self.clock)
        self.supervisor = Supervisor(log_, self.config, self.clock, self.catalog, monotonic)
        self.bus = EventBus()
        #: Histories kept for reads; only where listeners run before appends return.
        self.history: HistoryCache | None = None
        if self.config.history_cache_events > 0 and log_.backend in ("sqlite", "memory"):
            self.history = HistoryCache(self.config.history_cache_events)
        self.runner: TurnRunner | None = None
        self.started_at = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscription: Any = None
        self._sweeper: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._catalog_saving: asyncio.Task[None] | None = None
        #: One catalog snapshot written at a time (start-up's, the sweeper's, stop's).
        self._catalog_lock = asyncio.Lock()
        #: The log position of the last catalog snapshot (saved or loaded).
        self._catalog_saved = 0
        self._replies: Replies | None = None
        self._create_lock: asyncio.Lock | None = None
        self._stopping = False
        self.nats_status: str | None = None
        #: Command ids: unique per process start, cheap to make.
        self._node = uuid.uuid4().hex[:12]
        #: session_id -> start_turn calls between the actor's answer and the runner.
        self._starting: dict[str, int] = {}
        self._counter = itertools.count(1)

    # -- life cycle ------------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, log_: EventLog, config: HubConfig | None = None, clock: Clock | None = None, **kw: Any
    ) -> AsyncIterator[Hub]:
        """``async with Hub.running(log) as hub:`` starts the system and stops it cleanly."""
        hub = cls(log_, config, clock, **kw)
        await hub.start()
        try:
            yield hub
        finally:
            await hub.stop()

    async def start(self, sweep: bool = True) -> None:
        self._loop = asyncio.get_running_loop()
        self._create_lock = asyncio.Lock()
        self._replies = Replies(
            self._loop, ASK_TIMEOUT_S, lambda: Unavailable("the session did not answer in time")
        )
        self._watchdog = self._loop.create_task(self._watch_asks())
        self.runner = TurnRunner(
            self._ask,
            self.bus,
            self.registry,
            self.config.agents,
            self.clock,
            self.config.chunk_buffer,
            self.supervisor.pin,
            self.supervisor.unpin,
        )
        loop = self._loop

        history = self.history

        def on_events(events: list[Any]) -> None:
            # A subscriber registers before it reads the log, so an event committed while
            # nobody listened is in what it reads: skipping the hop loses nothing.
            if history is None and not self.bus.has_listeners():
                return
            with contextlib.suppress(RuntimeError):  # loop closed at shutdown
                loop.call_soon_threadsafe(self._on_events, events)

        self._subscription = self.log.subscribe(on_events)
        await loop.run_in_executor(
            None, partial(self.catalog.attach, self.log, use_snapshot=self._catalog_snapshots)
        )
        self._catalog_saved = self.catalog.loaded_from
        log.info(
            "catalog_ready",
            sessions=len(self.catalog),
            from_snapshot_at=self.catalog.loaded_from,
            events_folded=self.catalog.folded,
        )
        # What start-up built (the catalog of every session, modules, the registry) lives
        # as long as the process: keep it out of the cyclic GC's scans. Otherwise every
        # full collection walks it all, a 20 ms pause at 100,000 events, landing on
        # whichever request allocates next.
        gc.freeze()
        if self.log.backend != "jetstream":
            # One node owns the whole log: a turn left open was this process's, and it
            # died. With a shared log another node may be running it: those are failed
            # lazily, by the session's owner, when the chat is next used (start_turn).
            await self._fail_dangling_turns()
        self.supervisor.refresh_gauges()
        if sweep and self.config.sweep_interval_s > 0:
            self._sweeper = loop.create_task(self._sweep_forever())
        if self._catalog_snapshots and self.catalog.folded >= self.config.catalog_snapshot_every:
            self._catalog_saving = loop.create_task(self._save_catalog())

    @property
    def _catalog_snapshots(self) -> bool:
        return self.config.catalog_snapshot_every > 0 and self.log.backend == "sqlite"

    async def _save_catalog(self) -> None:
        """Save the catalog snapshot (in the executor); never fails the caller."""
        async with self._catalog_lock:
            if self.catalog.position <= self._catalog_saved:
                return
            try:
                position = await asyncio.get_running_loop().run_in_executor(
                    None, self.catalog.save_snapshot, self.log
                )
            except EventLogError as exc:  # the next start folds more of the log, that's all
                log.warning("catalog_snapshot_failed", error=str(exc))
                return
            except Exception:
                log.exception("catalog_snapshot_failed")
                return
            self._catalog_saved = position
        log.info("catalog_snapshot_saved", position=position, sessions=len(self.catalog))

    async def _maybe_save_catalog(self) -> None:
        """From the sweeper: save once ``catalog_snapshot_every`` more events were folded."""
        due = self.catalog.position - self._catalog_saved >= self.config.catalog_snapshot_every
        if self._catalog_snapshots and due:
            await self._save_catalog()

    async def stop(self) -> None:
        """Cancel running turns (their ends are recorded), stop actors, close streams."""
        if self._stopping:
            return
        self._stopping = True
        for task in (self._sweeper, self._watchdog):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.collabs.stop()
        if self.runner is not None:
            await self.runner.stop()
        self.bus.close_all()
        if self._subscription is not None:
            self._subscription.close()
        await asyncio.get_running_loop().run_in_executor(None, self.supervisor.stop_all)
        self.catalog.detach()
        if self._catalog_saving is not None:
            await asyncio.gather(self._catalog_saving, return_exceptions=True)
        if self._catalog_snapshots:
            await self._save_catalog()

    async def _fail_dangling_turns(self) -> None:
        """Turns the log shows running but no runner has (the process died): fail them."""
        for sid in self.catalog.with_open_turns():
            turns = await self._ask(sid, "open_turns", {})
            for turn_id in turns:
                await self._fail_orphan(sid, turn_id)

    async def _fail_orphan(self, session_id: str, turn_id: str) -> None:
        """Record as failed a turn the log shows running that no runner here runs."""
        await self._ask(
            session_id,
            "complete_turn",
            {
                "turn_id": turn_id,
                "content": "",
                "status": "failed",
                "error": {"code": "interrupted", "message": "the server running it stopped"},
            },
        )

    def _on_events(self, events: list[Any]) -> None:
        """Committed events, on the loop: kept histories first, then subscribers."""
        if self.history is not None:
            self.history.apply(events)
        if self.bus.has_listeners():
            self.bus.publish_events(events)

    async def _watch_asks(self) -> None:
        """Fail requests an actor never answered (see ``actors.bridge``)."""
        replies = self._replies
        assert replies is not None
        while True:
            await asyncio.sleep(min(5.0, ASK_TIMEOUT_S))
            replies.expire_overdue()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval_s)
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep_failed")
            await self._maybe_save_catalog()

    async def sweep(self) -> dict[str, int]:
        """Expire sessions whose time is up and passivate idle actors (by the clocks)."""
        loop = asyncio.get_running_loop()
        due = await loop.run_in_executor(None, self.supervisor.due_expirations)
        expired = 0
        for sid, reason in due:
            try:
                changed = await self._ask(sid, "expire", {"reason": reason})
            except HubError:
                continue
            if changed:
                expired += 1
                metrics.EXPIRATIONS.labels(reason).inc()
        silent = await loop.run_in_executor(None, self.supervisor.missed_heartbeats)
        idled = 0
        for sid in silent:
            try:
                idled += await self._ask(sid, "mark_idle", {})
            except HubError:
                continue
        passivated = await loop.run_in_executor(None, self.supervisor.passivate_idle)
        self.supervisor.refresh_gauges()
        return {"expired": expired, "idled": idled, "passivated": passivated}

    # -- the bridge ------------------------------------------------------------------

    async def _ask(
        self, session_id: str, name: str, args: dict[str, Any], command_id: str | None = None
    ) -> Any:
        if self._stopping and name not in ("complete_turn", "record_tool", "collaboration_event"):
            raise Unavailable("the server is shutting down")
        command_id = command_id or f"{self._node}-{next(self._counter)}"
        for _ in range(3):
            try:
                return await self._ask_once(session_id, name, args, command_id)
            except ActorStopped:
                continue
        raise Unavailable(f"session {session_id!r} is restarting; retry")

    async def _ask_once(
        self, session_id: str, name: str, args: dict[str, Any], command_id: str
    ) -> Any:
        replies = self._replies
        if replies is None:
            raise Unavailable("the hub is not started")
        fut = replies.future()
        self.supervisor.tell(session_id, Request(name, args, partial(replies.put, fut), command_id))
        try:
            return await fut
        finally:
            replies.forget(fut)

    def _access(self, caller: Caller, session_id: Any) -> str:
        """404 for an unknown session and for another user's session alike."""
        if not isinstance(session_id, str) or not v.ID_RE.match(session_id):
            raise SessionNotFound(str(session_id))
        owner = self.catalog.owner(session_id)
        if owner is None or (caller.user_id is not None and owner != caller.user_id):
            raise SessionNotFound(session_id)
        return session_id

    async def _command(
        self, caller: Caller, session_id: Any, name: str, args: dict[str, Any] | None = None
    ) -> Any:
        sid = self._access(caller, session_id)
        return await self._ask(sid, name, args or {})

    async def _in_executor(self, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
        except EventLogError as exc:
            raise Unavailable(f"event log unavailable: {exc}") from exc

    # -- sessions --------------------------------------------------------------------

    def _user_for(self, caller: Caller, body: Mapping[str, Any]) -> str:
        requested = v.opt_str(body, "user_id", 256)
        if caller.user_id is not None:
            if requested is not None and requested != caller.user_id:
                raise InvalidRequest("user_id differs from the authenticated user", field="user_id")
            return caller.user_id
        return requested or ANONYMOUS

    def _agent(self, body: Mapping[str, Any], field: str = "agent") -> dict[str, Any] | None:
        raw = body.get(field)
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise InvalidRequest(f"{field} must be an object", field=field)
        try:
            spec = AgentSpec.from_dict(raw)
            self.registry.validate(spec, self.config.agents)
        except (InvalidAgentSpec, ValueError) as exc:
            raise InvalidRequest(str(exc), field=field) from None
        return spec.to_dict()

    async def create_session(
        self, caller: Caller, body: Any = None, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        body = v.body_object(body)
        user_id = self._user_for(caller, body)
        sid = body.get("session_id")
        sid = v.session_id(sid) if sid is not None else uuid.uuid4().hex
        args: dict[str, Any] = {
            "user_id": user_id,
            "name": v.opt_str(body, "name", 1000),
            "agent": self._agent(body)
            or {"kind": "echo", "model": None, "system_prompt": None, "params": {}},
            "metadata": v.opt_obj(body, "metadata") or {},
            "tags": v.opt_str_list(body, "tags") or [],
            "capabilities": v.opt_str_list(body, "capabilities") or [],
            "agent_name": v.opt_str(body, "agent_name", 256),
            "agent_type": v.opt_str(body, "agent_type", 256),
            "ttl_seconds": v.opt_number(body, "ttl_seconds", minimum=1),
        }
        if idempotency_key is not None:
            if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 256:
                raise InvalidRequest(
                    "Idempotency-Key must be 1-256 characters", field="Idempotency-Key"
                )
            args["idempotency_key"] = idempotency_key
        assert self._create_lock is not None
        async with self._create_lock:
            if idempotency_key is not None:
                existing = self.catalog.by_idempotency_key(user_id, idempotency_key)
                if existing is not None:
                    return await self._ask(existing, "get", {})
            if self.catalog.owner(sid) is not None:
                raise Conflict("already_exists", f"session {sid!r} already exists", session_id=sid)
            self.supervisor.check_create_limits(user_id)
            return await self._ask(sid, "create", args, command_id=f"create:{sid}")

    async def get_session(
        self, caller: Caller, session_id: str, at: int | None = None
    ) -> dict[str, Any]:
        if at is None:
            return await self._command(caller, session_id, "get")
        sid = self._access(caller, session_id)
        if isinstance(at, bool) or not isinstance(at, int) or at < 1:
            raise InvalidRequest("at must be a positive event seq", field="at")
        state = await self._in_executor(load_state, self.log, sid, at)
        if state.version < at:
            raise InvalidRequest(
                f"at={at} is after the session's last event ({state.version})", field="at"
            )
        return state.to_api()

    async def list_sessions(self, caller: Caller, query: Mapping[str, str]) -> dict[str, Any]:
        user_id = query.get("user_id") or None
        if caller.user_id is not None:
            if user_id is not None and user_id != caller.user_id:
                raise InvalidRequest("user_id differs from the authenticated user", field="user_id")
            user_id = caller.user_id
        status = query.get("status") or None
        if status is not None and status not in STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}", field="status")
        q = ListQuery(
            user_id=user_id,
            status=status,
            tag=query.get("tag") or None,
            capability=query.get("capability") or None,
            agent_type=query.get("agent_type") or None,
            limit=v.query_int(query, "limit", 100, minimum=1, maximum=1000) or 100,
            cursor=query.get("cursor") or None,
        )
        return self.catalog.list(q)

    async def update_session(
        self, caller: Caller, session_id: str, body: Any, if_match: int | None = None
    ) -> dict[str, Any]:
        body = v.body_object(body)
        args: dict[str, Any] = {}
        if "status" in body:
            args["status"] = v.enum(body, "status", ("active", "working", "idle"))
        if "current_task" in body:
            args["current_task"] = v.opt_str(body, "current_task", 10_000)
        if "metadata" in body:
            args["metadata"] = v.opt_obj(body, "metadata") or {}
        if "tags" in body:
            args["tags"] = v.opt_str_list(body, "tags") or []
        if "capabilities" in body:
            args["capabilities"] = v.opt_str_list(body, "capabilities") or []
        for key in ("agent_name", "agent_type"):
            if key in body:
                args[key] = v.opt_str(body, key, 256)
        unknown = set(body) - set(args) - {"session_id"}
        if unknown:
            field = sorted(unknown)[0]
            raise InvalidRequest(f"{field} cannot be changed with PATCH", field=field)
        if if_match is not None:
            args["if_match"] = if_match
        return await self._command(caller, session_id, "update", args)

    async def close_session(self, caller: Caller, session_id: str) -> dict[str, Any]:
        return await self._command(caller, session_id, "close")

    async def pause_session(self, caller: Caller, session_id: str) -> dict[str, Any]:
        return await self._command(caller, session_id, "pause")

    async def resume_session(self, caller: Caller, session_id: str) -> dict[str, Any]:
        return await self._command(caller, session_id, "resume")

    async def heartbeat(self, caller: Caller, session_id: str) -> dict[str, Any]:
        return await self._command(caller, session_id, "heartbeat")

    async def delete_session(
        self, caller: Caller, session_id: str, purge: bool = False
    ) -> dict[str, Any]:
        sid = self._access(caller, session_id)
        if self.runner is not None:
            for turn in self.runner.running(sid):
                await self.runner.cancel(turn)
        return await self._ask(sid, "delete", {"purge": bool(purge)})

    async def session_stats(self, caller: Caller, session_id: str) -> dict[str, Any]:
        return await self._command(caller, session_id, "stats")

    # -- context ---------------------------------------------------------------------

    async def context_set(
        self, caller: Caller, session_id: str, key: str, value: Any
    ) -> dict[str, Any]:
        return await self._command(
            caller, session_id, "context_set", {"key": v.key(key), "value": value}
        )

    async def context_get(self, caller: Caller, session_id: str, key: str) -> dict[str, Any]:
        return await self._command(caller, session_id, "context_get", {"key": v.key(key)})

    async def context_list(self, caller: Caller, session_id: str) -> dict[str, Any]:
        return await self._command(caller, session_id, "context_list")

    async def context_delete(self, caller: Caller, session_id: str, key: str) -> dict[str, Any]:
        return await self._command(caller, session_id, "context_delete", {"key": v.key(key)})

    # -- chats -------------------------------------------------------------------------

    async def chat_create(self, caller: Caller, session_id: str, body: Any) -> dict[str, Any]:
        body = v.body_object(body)
        chat_id = body.get("chat_id")
        args = {
            "chat_id": v.session_id(chat_id, "chat_id") if chat_id is not None else None,
            "name": v.opt_str(body, "name", 1000),
            "system_prompt": v.opt_str(body, "system_prompt"),
            "agent": self._agent(body),
            "max_messages": v.opt_int(body, "max_messages", minimum=2, maximum=1_000_000),
        }
        return await self._command(caller, session_id, "chat_create", args)

    async def chat_list(self, caller: Caller, session_id: str) -> dict[str, Any]:
        return await self._command(caller, session_id, "chat_list")

    async def chat_switch(self, caller: Caller, session_id: str, chat_id: str) -> dict[str, Any]:
        return await self._command(caller, session_id, "chat_switch", {"chat_id": chat_id})

    async def chat_delete(self, caller: Caller, session_id: str, chat_id: str) -> dict[str, Any]:
        return await self._command(caller, session_id, "chat_delete", {"chat_id": chat_id})

    async def messages(
        self, caller: Caller, session_id: str, query: Mapping[str, str]
    ) -> dict[str, Any]:
        args = {
            "chat_id": query.get("chat_id") or None,
            "limit": v.query_int(query, "limit", None, minimum=0, maximum=100_000),
            "before": query.get("before") or None,
        }
        return await self._command(caller, session_id, "messages", args)

    # -- runs --------------------------------------------------------------------------

    async def start_turn(self, caller: Caller, session_id: str, body: Any) -> TurnStream:
        """Start a turn; errors (404, 409, 400) are raised before anything streams."""
        body = v.body_object(body)
        message = v.req_str(body, "message", 10_000_000)
        chat_id = v.opt_str(body, "chat_id", 128)
        multitask = v.enum(body, "multitask", MULTITASK, "reject")
        sid = self._access(caller, session_id)
        assert self.runner is not None
        for _ in range(50):
            # A turn between its start event and the runner is nobody's orphan.
            self._starting[sid] = self._starting.get(sid, 0) + 1
            try:
                ctx = await self._ask(sid, "start_turn", {"message": message, "chat_id": chat_id})
            except Conflict as exc:
                self._unstart(sid)
                turn_id = exc.details.get("turn_id", "")
                running = self.runner.get(turn_id)
                if (
                    exc.code == "turn_in_progress"
                    and running is None
                    and turn_id
                    and not self._starting.get(sid)
                ):
                    # Open in the log, run by no one here: its node died (this session's
                    # commands come to its owner, so no other live node runs it).
                    await self._fail_orphan(sid, turn_id)
                    continue
                if exc.code != "turn_in_progress" or multitask == "reject" or running is None:
                    raise
                if multitask == "interrupt":
                    await self.runner.cancel(running)
                else:
                    await running.done.wait()
                continue
            except BaseException:
                self._unstart(sid)
                raise
            turn = self.runner.start(sid, ctx)
            self._unstart(sid)
            return TurnStream(turn)
        raise Conflict("turn_in_progress", "the chat stayed busy; retry later")

    def _unstart(self, sid: str) -> None:
        left = self._starting.get(sid, 1) - 1
        if left:
            self._starting[sid] = left
        else:
            self._starting.pop(sid, None)

    async def run(self, caller: Caller, session_id: str, body: Any) -> dict[str, Any]:
        """Run one turn and answer with the assistant's message once it is recorded."""
        stream = await self.start_turn(caller, session_id, body)
        turn = stream.turn
        await asyncio.shield(turn.done.wait())
        return _turn_reply(turn)

    async def cancel(self, caller: Caller, session_id: str, body: Any = None) -> dict[str, Any]:
        body = v.body_object(body)
        sid = self._access(caller, session_id)
        chat_id = v.opt_str(body, "chat_id", 128)
        turn_id = v.opt_str(body, "turn_id", 128)
        assert self.runner is not None
        turns = [
            t
            for t in self.runner.running(sid)
            if (chat_id is None or t.chat_id == chat_id)
            and (turn_id is None or t.turn_id == turn_id)
        ]
        if not turns:
            raise Conflict("no_turn_in_progress", "no turn is running", session_id=sid)
        for turn in turns:
            await self.runner.cancel(turn)
        return {"cancelled": [_turn_reply(t) for t in turns], "success": True}

    # -- events ------------------------------------------------------------------------

    async def read_events(
        self, caller: Caller, session_id: str, query: Mapping[str, str]
    ) -> dict[str, Any]:
        """A page of the session's events; the event dicts are shared, read-only."""
        sid = self._access(caller, session_id)
        after = v.query_int(query, "after", 0, minimum=0) or 0
        limit = v.query_int(query, "limit", 1000, minimum=1, maximum=10_000) or 1000
        tail = v.query_int(query, "tail", None, minimum=1, maximum=10_000)
        type_ = query.get("type") or None
        if self.history is not None:
            kept = self.history.get(sid)
            if kept is None:
                kept = await self._read_history(sid)
            if kept is not None:
                return _events_page(kept, after, limit, tail, type_)

        def read() -> dict[str, Any]:
            last = self.log.last_seq(sid)
            start = max(after, last - tail) if tail else after
            if type_ is None:
                events = self.log.read(sid, after_seq=start, limit=limit)
            else:
                events = [e for e in self.log.read(sid, after_seq=start) if e.type == type_]
                if tail:
                    events = events[-tail:]
                events = events[:limit]
            return {"events": [event_to_api(e) for e in events], "last_seq": last}

        return await self._in_executor(read)

    async def _read_history(self, session_id: str) -> list[dict[str, Any]] | None:
        """Read the whole history into the cache if it is short enough to keep."""
        history = self.history
        assert history is not None

        def read() -> list[Any] | None:
            if not history.wants(self.log.last_seq(session_id)):
                return None
            return self.log.read(session_id)

        history.begin_fill(session_id)
        try:
            events = await self._in_executor(read)
        except BaseException:
            history.cancel_fill(session_id)
            raise
        if events is None:
            history.cancel_fill(session_id)
            return None
        return history.end_fill(session_id, events)

    async def append_events(
        self, caller: Caller, session_id: str, body: Any, if_match: int | None = None
    ) -> dict[str, Any]:
        body = v.body_object(body)
        items = body.get("events")
        if not isinstance(items, list) or not items:
            raise InvalidRequest("events must be a non-empty list", field="events")
        if len(items) > 1000:
            raise InvalidRequest("at most 1000 events per call", field="events")
        events = []
        for i, item in enumerate(items):
            field = f"events[{i}]"
            if not isinstance(item, dict):
                raise InvalidRequest(f"{field} must be an object", field=field)
            type_ = item.get("type")
            if not isinstance(type_, str) or not v.CLIENT_TYPE_RE.match(type_):
                raise InvalidRequest(
                    f"{field}.type must be lower-case dotted, like app.step_done",
                    field=f"{field}.type",
                )
            delta = item.get("context_delta")
            if delta is not None:
                if not isinstance(delta, dict):
                    raise InvalidRequest(
                        f"{field}.context_delta must be an object", field=f"{field}.context_delta"
                    )
                for k in delta:
                    v.key(k, f"{field}.context_delta.{k}")
            events.append({"type": type_, "data": item.get("data"), "context_delta": delta})
        return await self._command(
            caller, session_id, "append_client", {"events": events, "if_match": if_match}
        )

    async def open_event_stream(
        self, caller: Caller, session_id: str, last_event_id: str | None = None
    ) -> EventStream:
        if self._stopping:
            raise Unavailable("the server is shutting down")
        sid = self._access(caller, session_id)
        seq, n = _parse_event_id(last_event_id)
        sub = self.bus.subscribe(sid)
        return EventStream(self, sid, sub, seq, n)

    # -- operations ---------------------------------------------------------------------

    def subscribe_all(self, listener: Any) -> None:
        """Call ``listener(item)`` on the loop for every event and chunk of every session."""
        self.bus.add_listener(listener)

    async def health(self) -> dict[str, Any]:
        counts = self.catalog.count_by_status()
        return {
            "status": "stopping" if self._stopping else "ok",
            "version": VERSION,
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "sessions": {
                "active": sum(counts.get(s, 0) for s in OPEN_STATUSES),
                "total": sum(counts.values()),
                "live_actors": self.supervisor.live_actors(),
            },
            "eventlog": {
                "backend": self.log.backend,
                "events": await self._in_executor(self.log.count),
            },
            "nats": self.nats_status,
        }


def _turn_reply(turn: Turn) -> dict[str, Any]:
    if turn.status == "failed":
        err = turn.error or {}
        raise HubError(
            f"the agent failed: {err.get('message', 'unknown error')}",
            code="agent_error",
            status=502,
            details={"turn_id": turn.turn_id, "agent_code": err.get("code")},
        )
    result = turn.result or {}
    message = dict(result.get("message") or {})
    return {"message": message, "turn_id": turn.turn_id, "status": turn.status}


def _parse_event_id(value: str | None) -> tuple[int, int | None]:
    if value is None or value == "":
        return 0, None
    head, _, tail = str(value).partition(".")
    try:
        seq = int(head)
        n = int(tail) if tail else None
    except ValueError:
        raise InvalidRequest("Last-Event-ID must be SEQ or SEQ.N", field="Last-Event-ID") from None
    if seq < 0 or (n is not None and n < 0):
        raise InvalidRequest("Last-Event-ID must not be negative", field="Last-Event-ID")
    return seq, n


class EventStream:
    """Every durable event after a position, then live events and chunks, with no gap.

    It subscribes first, then reads the log, then drains what arrived meanwhile,
    skipping what it already sent. A chunk's position is (anchor, n): the n-th
    chunk after durable event ``anchor``; resuming from ``SEQ.N`` (or plain ``SEQ``,
    which is ``SEQ.0``) replays durable events after SEQ merged in order with the
    buffered chunks after that position.
    """

    def __init__(
        self, hub: Hub, session_id: str, sub: Subscriber, after_seq: int, after_n: int | None
    ) -> None:
        self.hub = hub
        self.session_id = session_id
        self.sub = sub
        self.after_seq = after_seq
        self.after_n = after_n or 0
        self._closed = False

    def _buffered(self) -> list[tuple[int, int, dict[str, Any]]]:
        """Chunks of running turns after the resume position, in (anchor, n) order."""
        runner = self.hub.runner
        out = []
        for turn in runner.running(self.session_id) if runner else []:
            for anchor, n, payload in list(turn.chunks):
                if (anchor, n) > (self.after_seq, self.after_n):
                    out.append((anchor, n, payload))
        out.sort(key=lambda c: (c[0], c[1]))
        return out

    async def __aiter__(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        try:
            last_seq = self.after_seq
            sent: dict[int, int] = {}
            durable = []
            while True:
                batch = await self.hub._in_executor(
                    lambda a=last_seq: self.hub.log.read(self.session_id, after_seq=a, limit=1000)
                )
                durable.extend(batch)
                if batch:
                    last_seq = batch[-1].seq
                if len(batch) < 1000:
                    break
            chunks = self._buffered()
            i = 0
            for event in durable:
                while i < len(chunks) and chunks[i][0] < event.seq:
                    anchor, n, payload = chunks[i]
                    sent[anchor] = n
                    i += 1
                    yield f"{anchor}.{n}", payload
                yield str(event.seq), event_to_api(event)
            for anchor, n, payload in chunks[i:]:
                sent[anchor] = n
                yield f"{anchor}.{n}", payload
            while not self._closed:
                item: Item | None = await self.sub.queue.get()
                if item is None:
                    return
                if item.kind == "event":
                    if item.seq <= last_seq:
                        continue
                    last_seq = item.seq
                elif item.n <= sent.get(item.seq, 0):
                    continue
                else:
                    sent[item.seq] = item.n
                yield item.sse_id, item.payload
        finally:
            self.hub.bus.unsubscribe(self.sub)

    async def aclose(self) -> None:
        self._closed = True
        self.sub.close()
        self.hub.bus.unsubscribe(self.sub)


def _events_page(
    history: list[dict[str, Any]], after: int, limit: int, tail: int | None, type_: str | None
) -> dict[str, Any]:
    """``read_events``'s page from a whole history (index i holds seq i + 1)."""
    last = len(history)
    start = max(after, last - tail) if tail else after
    if type_ is None:
        events = history[start : start + limit]
    else:
        events = [e for e in history[start:] if e["type"] == type_]
        if tail:
            events = events[-tail:]
        events = events[:limit]
    return {"events": events, "last_seq": last}
