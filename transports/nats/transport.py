"""The NATS transport: the API's commands as request/reply, the sessions' events as subjects.

- Commands: ``<prefix>.cmd.<command>`` (``session.create``, ``run``, …: the names of
  :data:`transports.commands.COMMANDS`), taken by the queue group ``sessionhub`` so that
  several nodes share them. The payload is the HTTP body plus the path's ids; the reply is
  the HTTP response body, or the error body with the header ``Sessionhub-Status: <status>``.
  Auth is the ``Authorization: Bearer <key>`` header, checked by the same
  :class:`~transports.http.auth.Authenticator` as on HTTP.
- Events: every durable event and stream chunk of every session is published on
  ``<prefix>.events.<session_id>.<type>`` with the JSON of its SSE ``data:`` line, and its
  SSE id in the header ``Sessionhub-Event-Id``. A run started over NATS with ``"stream":
  true`` is framed like ``run_stream``: ``stream_start`` before its first chunk,
  ``stream_end`` (or ``error``) after its last. A session id is used verbatim, so an id
  with dots spans several tokens: subscribe to ``<prefix>.events.<session_id>.>``.

Several nodes (``cluster=True``): each node also takes ``<prefix>.node.<node_id>.cmd.>``
(this node as the entry point) and ``<prefix>.node.<node_id>.fwd.>`` (commands relayed by
another node). A command on a session is run by the session's owner node
(:mod:`transports.nats.cluster`): any other node relays it there over NATS and relays the
reply back untouched; if the owner does not answer, the client gets 503 ``unavailable``
until the owner's lease expires and a node takes the session over, replaying its log.
Each durable event and chunk is published once, by the node that produced it, and each
node feeds other nodes' chunks to its own bus, so an SSE stream on any node sees them.
:meth:`NatsTransport.dispatch` lets another transport of the node (HTTP) route a command
the same way. :func:`start_nats_transport` turns cluster mode on by itself when the hub's
event log is JetStream.

Failure semantics: commands only arrive while connected, so a disconnection shows to
clients as request timeouts / no responders, from their own client; the hub itself goes on
(HTTP keeps working). Events produced while disconnected are dropped, counted in
``sessionhub_nats_events_dropped_total``: they are notifications, the log keeps them and
``events.read`` returns them. nats-py reconnects forever; reconnects are counted in
``sessionhub_nats_reconnects_total`` and ``hub.nats_status`` says ``connected`` or
``disconnected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any

import nats
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from prometheus_client import Counter, Gauge

from actors.bus import Item
from actors.errors import HubError, InvalidRequest
from actors.hub import Hub
from actors.validate import ID_RE
from sessionhub.logging import request_context
from transports.commands import error_body, execute, observe
from transports.http.auth import Authenticator
from transports.nats.cluster import Leases, new_node_id

__all__ = [
    "DEFAULT_PREFIX",
    "EVENTS_DROPPED",
    "QUEUE_GROUP",
    "RECONNECTS",
    "STATUS_HEADER",
    "NatsTransport",
    "start_nats_transport",
]

log = structlog.get_logger("sessionhub.nats")

DEFAULT_PREFIX = "sessionhub"
QUEUE_GROUP = "sessionhub"
STATUS_HEADER = "Sessionhub-Status"
EVENT_ID_HEADER = "Sessionhub-Event-Id"
NODE_HEADER = "Sessionhub-Node"

RECONNECTS = Counter(
    "sessionhub_nats_reconnects",
    "Reconnections of the NATS transport to the NATS server.",
)
EVENTS_DROPPED = Counter(
    "sessionhub_nats_events_dropped",
    "Session events not published on NATS (disconnected, or the publish queue was full).",
)

CONNECTED = Gauge(
    "sessionhub_nats_connected",
    "1 while the NATS transport is connected to a NATS server, 0 while it is not.",
)

FORWARDED = Counter(
    "sessionhub_nats_forwarded_commands",
    "Commands relayed to the node that owns their session.",
)

#: Commands routed to their session's owner node (with ``cluster=True``).
_ROUTED = ("session.", "context.", "chat.", "messages.", "events.", "run", "cancel")
_UNROUTED = ("session.create", "session.list")
_CHUNK_SUFFIX = ".stream_chunk"

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dumps(body: Any) -> bytes:
    return _JSON.encode(body).encode()


class NatsTransport:
    """Serves one hub over NATS. ``await start()``, then ``await stop()``.

    Args:
        hub: the started hub.
        servers: NATS URLs (``nats://host:4222``; a comma-separated string is split).
        prefix: the subject prefix (default ``sessionhub``).
        auth: an :class:`Authenticator`, or the API keys (``{key: user}``), or None (open).
        max_inflight: commands handled at once; more are answered 503 ``unavailable``.
        max_body_bytes: a larger payload is answered 413 ``payload_too_large``.
        queue: the queue group taking the commands.
    """

    def __init__(
        self,
        hub: Hub,
        servers: str | list[str],
        prefix: str = DEFAULT_PREFIX,
        auth: Authenticator | Mapping[str, str] | None = None,
        *,
        max_inflight: int = 10_000,
        max_body_bytes: int = 1024 * 1024,
        queue: str = QUEUE_GROUP,
        max_event_backlog: int = 100_000,
        cluster: bool = False,
        node_id: str | None = None,
        lease_ttl_s: float = 10.0,
        replicas: int = 1,
        forward_timeout_s: float = 90.0,
    ) -> None:
        self.hub = hub
        self.servers = [s for s in servers.split(",") if s] if isinstance(servers, str) else servers
        self.prefix = prefix.rstrip(".")
        if isinstance(auth, Authenticator):
            self.auth = auth
        else:
            self.auth = Authenticator(dict(auth or {}), transport="nats")
        self.queue = queue
        self.max_inflight = max_inflight
        self.max_body_bytes = max_body_bytes
        self.nc: NATS | None = None
        self._subs: list[Any] = []
        self.cluster = cluster
        self.node_id = node_id or new_node_id()
        self.lease_ttl_s = lease_ttl_s
        self.replicas = replicas
        self.forward_timeout_s = forward_timeout_s
        self.leases: Leases | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._events: asyncio.Queue[Item | None] = asyncio.Queue(max_event_backlog)
        self._publisher: asyncio.Task[None] | None = None
        self._stopping = False

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, take the commands, publish the events."""
        self.nc = await nats.connect(
            servers=self.servers,
            name="sessionhub",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            error_cb=self._on_error,
            closed_cb=self._on_closed,
        )
        if self.cluster:
            self.leases = Leases(
                self.nc.jetstream(), self.prefix, self.node_id, self.lease_ttl_s, self.replicas
            )
            await self.leases.start()
            self.leases.on_takeover.append(self._drop_stale_actor)
            node = f"{self.prefix}.node.{self.node_id}"
            self._subs.append(await self.nc.subscribe(f"{node}.cmd.>", cb=self._entry(node)))
            self._subs.append(
                await self.nc.subscribe(f"{node}.fwd.>", cb=self._entry(node, forwarded=True))
            )
            self._subs.append(
                await self.nc.subscribe(f"{self.prefix}.events.>", cb=self._on_remote_event)
            )
        self._subs.append(
            await self.nc.subscribe(
                f"{self.prefix}.cmd.>", queue=self.queue, cb=self._entry(self.prefix)
            )
        )
        self._publisher = asyncio.get_running_loop().create_task(self._publish_events())
        self.hub.subscribe_all(self._on_item)
        self._set_status("connected")
        log.info("nats_started", servers=self.servers, prefix=self.prefix, queue=self.queue)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop taking commands, answer those in flight, flush events and disconnect."""
        if self._stopping:
            return
        self._stopping = True
        self.hub.bus.remove_listener(self._on_item)
        nc = self.nc
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
        if self.leases is not None:
            await self.leases.stop(release=True)
        with contextlib.suppress(asyncio.QueueFull):
            self._events.put_nowait(None)
        if self._publisher is not None:
            try:
                await asyncio.wait_for(self._publisher, timeout)
            except (TimeoutError, asyncio.CancelledError):
                self._publisher.cancel()
        if nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), timeout)
        self._set_status(None)
        log.info("nats_stopped")

    async def _on_disconnected(self) -> None:
        if not self._stopping:
            self._set_status("disconnected")
            log.warning("nats_disconnected")

    async def _on_reconnected(self) -> None:
        RECONNECTS.inc()
        self._set_status("connected")
        log.info("nats_reconnected", server=str(self.nc.connected_url) if self.nc else None)

    async def _on_error(self, exc: Exception) -> None:
        log.warning("nats_error", error=str(exc))

    async def _on_closed(self) -> None:
        if not self._stopping:
            self._set_status("disconnected")

    def _set_status(self, status: str | None) -> None:
        """What /health says of NATS, and the connected gauge."""
        self.hub.nats_status = status
        CONNECTED.set(1 if status == "connected" else 0)

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    # -- commands -------------------------------------------------------------------------

    def _entry(self, subject_prefix: str, forwarded: bool = False) -> Any:
        """The callback of one command subscription (``<subject_prefix>.cmd|fwd.<name>``)."""
        skip = len(subject_prefix) + 5  # ".cmd." or ".fwd."

        async def on_command(msg: Msg) -> None:
            # nats-py calls this for one message at a time: hand each command to a task
            if not msg.reply:
                return  # a command nobody waits for cannot be answered
            name = msg.subject[skip:]
            if len(self._tasks) >= self.max_inflight:
                observe(name, "nats", "unavailable", 0.0)
                await self._reply(msg, 503, error_body("unavailable", "the server is overloaded"))
                return
            task = asyncio.get_running_loop().create_task(self._handle(msg, name, forwarded))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return on_command

    async def _handle(self, msg: Msg, name: str, forwarded: bool = False) -> None:
        try:
            if self.leases is not None and not forwarded:
                owner = await self._owner_for(name, msg.data)
                if owner is not None and owner != self.node_id:
                    await self._forward(owner, name, msg)
                    return
            status, body = await self._execute(name, msg)
            await self._created(name, status, body)
        except Exception:
            log.exception("nats_command_failed", command=name)
            status = 500
            body = error_body("internal_error", "the server failed to handle the command")
        await self._reply(msg, status, body)

    # -- several nodes ------------------------------------------------------------------

    async def _owner_for(self, name: str, data: bytes) -> str | None:
        """The node that must run this command, or None when any node may.

        A create with a client-chosen ``session_id`` goes to that id's owner too: two
        nodes creating one id at once would otherwise both be answered with the one
        session the log kept (the hub's create command id is derived from the id).
        """
        assert self.leases is not None
        creating = name == "session.create"
        if not creating and (name in _UNROUTED or not name.startswith(_ROUTED)):
            return None
        try:
            payload = json.loads(data) if data.strip() else {}
        except ValueError:
            return None  # the local node answers the 400
        sid = payload.get("session_id") if isinstance(payload, dict) else None
        if not isinstance(sid, str) or not ID_RE.match(sid):
            return None  # the local node answers (a new id, or the 400)
        if not creating and self.hub.catalog.owner(sid) is None:
            return None  # unknown here: the local node answers (404), nobody takes a lease
        return await self.leases.owner(sid)

    async def _forward(self, owner: str, name: str, msg: Msg) -> None:
        """Relay a command to its session's owner and its reply back, bytes untouched."""
        reply = await self._relay(owner, name, msg.data, msg.headers)
        if reply is None:
            observe(name, "nats", "unavailable", 0.0)
            await self._reply(msg, 503, self._owner_gone(owner))
            return
        nc = self.nc
        if nc is not None and nc.is_connected:
            with contextlib.suppress(Exception):
                await nc.publish(msg.reply, reply.data, headers=reply.headers)

    async def _relay(
        self, owner: str, name: str, data: bytes, headers: dict[str, str] | None
    ) -> Msg | None:
        """The owner's reply, or None when it is gone (no responders, or its lease expired
        while the command was in flight)."""
        assert self.nc is not None and self.leases is not None
        request = asyncio.ensure_future(
            self.nc.request(
                f"{self.prefix}.node.{owner}.fwd.{name}",
                data,
                timeout=self.forward_timeout_s,
                headers=headers,
            )
        )
        try:
            while True:
                done, _ = await asyncio.wait({request}, timeout=self.lease_ttl_s / 2)
                if done:
                    reply = request.result()
                    FORWARDED.inc()
                    return reply
                if not await self.leases.node_alive(owner):
                    return None  # the owner died with the command
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return None
        finally:
            request.cancel()

    def _owner_gone(self, owner: str) -> dict[str, Any]:
        return error_body(
            "unavailable",
            "the node serving this session is not reachable; retry shortly",
            {"owner": owner, "retry_after_s": self.lease_ttl_s},
        )

    async def _on_remote_event(self, msg: Msg) -> None:
        """Another node's stream chunk: hand it to this node's bus, so that an SSE stream
        of the session opened here sees the chunks of a turn running there."""
        if not msg.subject.endswith(_CHUNK_SUFFIX):
            return
        headers = msg.headers or {}
        if headers.get(NODE_HEADER) == self.node_id:
            return
        session_id = msg.subject[len(self.prefix) + 8 : -len(_CHUNK_SUFFIX)]
        sse_id = headers.get(EVENT_ID_HEADER, "")
        seq, _, n = sse_id.partition(".")
        if not (seq.isdigit() and n.isdigit()):
            return
        try:
            payload = json.loads(msg.data)
        except ValueError:
            return
        self.hub.bus.publish(
            Item("chunk", session_id, "stream_chunk", sse_id, payload, int(seq), int(n))
        )

    async def dispatch(
        self, name: str, payload: dict[str, Any], authorization: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Run a command the way a NATS request runs it: here, or relayed to the node that
        owns its session. For another transport (HTTP) of this node in cluster mode.

        A relayed success answers 200 whatever the command's own success status (NATS
        carries no status on success); the caller maps it to its route's status.
        """
        data = _dumps(payload)
        if self.leases is not None:
            owner = await self._owner_for(name, data)
            if owner is not None and owner != self.node_id:
                headers = {"Authorization": authorization} if authorization else None
                reply = await self._relay(owner, name, data, headers)
                if reply is None:
                    return 503, self._owner_gone(owner)
                status = int((reply.headers or {}).get(STATUS_HEADER, "200"))
                return status, json.loads(reply.data)
        try:
            caller = self.auth.caller_for_header(authorization)
        except HubError as exc:
            return exc.status, exc.to_body()
        status, body = await execute(name, self.hub, caller, payload, transport="nats")
        await self._created(name, status, body)
        return status, body

    async def _created(self, name: str, status: int, body: dict[str, Any]) -> None:
        """The node that creates a session owns it."""
        if self.leases is not None and name == "session.create" and status < 300:
            await self.leases.owner(body["session_id"])

    def _drop_stale_actor(self, session_id: str) -> None:
        """After a takeover, an actor left from an earlier ownership must reload the log.

        Uses the supervisor's private ``_passivate`` under its lock (there is no public
        way to stop one session's actor yet).
        """
        supervisor = self.hub.supervisor
        if supervisor.is_live(session_id):
            with supervisor._lock:
                supervisor._passivate(session_id, "takeover")

    async def _execute(self, name: str, msg: Msg) -> tuple[int, dict[str, Any]]:
        headers = msg.headers or {}
        try:
            if len(msg.data) > self.max_body_bytes:
                raise HubError(
                    f"the payload is larger than {self.max_body_bytes} bytes",
                    code="payload_too_large",
                    status=413,
                    details={"limit": self.max_body_bytes},
                )
            caller = self.auth.caller_for_header(_header(headers, "Authorization"))
            payload = _decode(msg.data)
        except HubError as exc:
            observe(name, "nats", exc.code, 0.0)
            return exc.status, exc.to_body()
        with request_context(transport="nats", command=name):
            status, body = await execute(name, self.hub, caller, payload, transport="nats")
        if name == "run" and status < 300 and set(body) == {"turn_id"}:
            self._follow_turn(body["turn_id"])
        return status, body

    def _follow_turn(self, turn_id: str) -> None:
        """Frame a streamed run's chunks as run_stream does: stream_start before the first
        chunk (the turn's task has not run yet), stream_end (or error) after the last."""
        runner = self.hub.runner
        turn = runner.get(turn_id) if runner is not None else None
        if turn is None:
            return
        self._on_item(
            Item("chunk", turn.session_id, "stream_start", str(turn.start_seq),
                 turn.start_payload, turn.start_seq)
        )  # fmt: skip
        queue = turn.listen()

        async def follow() -> None:
            while (got := await queue.get()) is not None:
                _, payload = got
                if payload.get("type") != "stream_chunk":  # chunks come through the bus
                    self._on_item(
                        Item("chunk", turn.session_id, payload["type"], "", payload,
                             turn.start_seq)
                    )  # fmt: skip

        task = asyncio.get_running_loop().create_task(follow())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply(self, msg: Msg, status: int, body: dict[str, Any]) -> None:
        nc = self.nc
        if nc is None or not nc.is_connected:
            return  # the requester times out; nothing else to do
        headers = {STATUS_HEADER: str(status)} if status >= 400 else None
        try:
            await nc.publish(msg.reply, _dumps(body), headers=headers)
        except Exception as exc:
            log.warning("nats_reply_failed", error=str(exc))

    # -- events ---------------------------------------------------------------------------

    def _on_item(self, item: Item) -> None:
        """Called on the loop by the hub's bus for every event and chunk: queue it, in order.

        With several nodes every node's bus sees every durable event (through the log's
        subscription) and every chunk (relayed from the events subjects, for SSE on any
        node); only the node with the session's live actor, the one that appended the event
        or runs the turn, publishes it, so a subscriber gets each once.
        """
        if self.cluster and not self.hub.supervisor.is_live(item.session_id):
            return
        if not self.connected:
            EVENTS_DROPPED.inc()
            return
        try:
            self._events.put_nowait(item)
        except asyncio.QueueFull:
            EVENTS_DROPPED.inc()

    def event_subject(self, session_id: str, type_: str) -> str:
        return f"{self.prefix}.events.{session_id}.{type_}"

    async def _publish_events(self) -> None:
        """One task publishes every item, so the subjects see them in the bus's order."""
        while True:
            item = await self._events.get()
            if item is None:
                return
            nc = self.nc
            if nc is None or not nc.is_connected:
                EVENTS_DROPPED.inc()
                continue
            try:
                headers = {NODE_HEADER: self.node_id}
                if item.sse_id:
                    headers[EVENT_ID_HEADER] = item.sse_id
                await nc.publish(
                    self.event_subject(item.session_id, item.type),
                    _dumps(item.payload),
                    headers=headers,
                )
            except Exception as exc:
                EVENTS_DROPPED.inc()
                log.warning("nats_event_publish_failed", error=str(exc))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lower = name.lower()
    for key, val in headers.items():
        if key.lower() == lower:
            return val
    return None


def _decode(data: bytes) -> Any:
    """The JSON payload; an empty payload is an empty object (commands without a body)."""
    if not data.strip():
        return {}
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the payload is not valid JSON: {exc}", field="body") from None


async def start_nats_transport(
    hub: Hub,
    url: str | list[str],
    prefix: str = DEFAULT_PREFIX,
    auth: Authenticator | Mapping[str, str] | None = None,
    **options: Any,
) -> NatsTransport:
    """Serve ``hub`` over NATS at ``url``; ``await handle.stop()`` before the hub stops.

    Args:
        hub: a started hub.
        url: the NATS server(s), ``nats://host:4222`` (comma-separated for several).
        prefix: the subject prefix.
        auth: an :class:`Authenticator`, the API keys (``{key: user}``), or None (open).
        options: keyword options of :class:`NatsTransport`. Unless given, ``cluster`` is
            on when the hub's event log is JetStream (the several-nodes set-up: sessions
            get owners, each event is published once) and the lease buckets take the log's
            ``replicas``.
    """
    log_config = getattr(hub.log, "config", None)
    if hub.log.backend == "jetstream":
        options.setdefault("cluster", True)
        options.setdefault("replicas", getattr(log_config, "replicas", 1))
    transport = NatsTransport(hub, url, prefix, auth, **options)
    await transport.start()
    return transport
