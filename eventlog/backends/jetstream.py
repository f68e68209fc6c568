"""The NATS JetStream event log: the scale-out backend, several nodes on one NATS cluster.

Layout (``prefix`` defaults to ``sessionhub``):

- one stream ``<PREFIX>_LOG`` over the subjects ``<prefix>.log.>``, one subject per
  event stream: ``<prefix>.log.<token>``, where :func:`stream_token` maps any stream id
  (letters, digits, ``._:-``, and the system streams starting with ``~``) reversibly to
  one valid subject token;
- one KV bucket ``<PREFIX>_SNAPSHOTS`` holding the latest snapshot of each stream.

**One message per append.** An append of N events is published as ONE JetStream message
holding all N (the payload is ``{"stream_id", "events": [...]}``), so a multi-event append
is atomic by construction, with no batch protocol. The message's stream sequence orders the
log globally; an event's ``position`` is ``stream_seq * POSITION_STRIDE + index`` within its
message, so positions strictly increase and never repeat, even after a purge. The price: one
append is bounded by the server's ``max_payload`` (1 MiB by default) and by
``POSITION_STRIDE`` events; a bigger one is refused with ``InvalidEventError``.

**Conditional append.** ``Nats-Expected-Last-Subject-Sequence`` is a *stream* sequence, not
an event seq, so the backend keeps a small per-stream index (stream sequence and first
event seq of every message of the subject, and the command ids they hold), loaded from the
server on first use and refreshed whenever the server says it is stale (JetStream errors
10071 and, from a clustered stream, 10164: wrong last sequence). The append publishes with
the last message's stream sequence as expected; a conflict found in the index is confirmed
against the server before it is raised, so an index made stale by another node never
refuses a valid append.

**Idempotency.** The contract wants a retry with an already-stored first ``command_id`` to
return the stored events whatever ``expected_seq`` says, long after JetStream's duplicate
window has passed, so the index is checked explicitly. ``Nats-Msg-Id`` (a hash of stream
id and command id) is set as well, so a publish retried after a lost acknowledgement is
deduplicated by the server too.

**Subscriptions.** Every event appended through this instance is handed to the listeners
before ``append`` returns (as with sqlite: a reader of a projection sees its own writes);
events appended by other nodes arrive through one ordered push consumer. Both paths go
through one ordered delivery step that keeps global order by stream sequence (a gap left by
a concurrent append is filled from the stream first) and delivers each message once.

**Threads.** The EventLog protocol is synchronous and thread-safe; nats-py is asyncio. The
client runs on a private event loop in a thread of its own, and every call is handed to
it with ``run_coroutine_threadsafe`` and waited for with a timeout. Listeners run on that
thread and must not call back into the log synchronously.

**Reads** use JetStream direct get (``allow_direct``) with ``next_by_subj`` batches, one
request per page. In a cluster a direct get may be answered by a replica that lags the
leader by a few milliseconds; appends are unaffected (the leader checks the expected
sequence), and a stale read only misses the newest events of another node.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlparse

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api

from eventlog import codec
from eventlog.base import Listener
from eventlog.errors import (
    ConflictError,
    CorruptRecordError,
    EventLogError,
    InvalidEventError,
    UnavailableError,
)
from eventlog.events import Event, NewEvent, Snapshot

__all__ = [
    "POSITION_STRIDE",
    "JetStreamConfig",
    "JetStreamEventLog",
    "provision",
    "stream_token",
    "token_stream_id",
]

_log = logging.getLogger(__name__)
T = TypeVar("T")

#: Positions per message: ``position = stream_seq * POSITION_STRIDE + index``.
POSITION_STRIDE = 1 << 16

# JetStream API error codes (``err_code``) this backend acts on.
ERR_WRONG_LAST_SEQUENCE = 10071
#: The same refusal from a clustered stream whose leader still has proposals in flight
#: ("wrong last sequence", without the number).
ERR_WRONG_LAST_SEQUENCE_CONSTANT = 10164
_WRONG_LAST = (ERR_WRONG_LAST_SEQUENCE, ERR_WRONG_LAST_SEQUENCE_CONSTANT)
#: A publish with the same ``Nats-Msg-Id`` is being stored (clustered stream) right now.
ERR_DUPLICATE_IN_PROCESS = 10158
ERR_STREAM_NOT_FOUND = 10059

# Headers.
H_EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
H_MSG_ID = "Nats-Msg-Id"
H_FIRST_SEQ = "Sessionhub-Seq"
H_COUNT = "Sessionhub-Count"

#: Messages asked for per direct-get batch.
PAGE = 256
#: Stream indexes kept in memory (least recently used ones are dropped, then reloaded).
MAX_INDEXES = 4096

_TOKEN_PLAIN = re.compile(r"[A-Za-z0-9-]")
_ESCAPES = {"_": "__", ".": "_d", ":": "_c", "~": "_t"}
_UNESCAPES = {v[1]: k for k, v in _ESCAPES.items()}


def stream_token(stream_id: str) -> str:
    """Map a stream id to one subject token (and KV key), reversibly.

    Letters, digits and ``-`` stay; ``_`` becomes ``__``, ``.`` ``_d``, ``:`` ``_c``,
    ``~`` ``_t``, any other character ``_u`` and six hex digits; the empty id is ``_e``.
    """
    if not stream_id:
        return "_e"
    out = []
    for ch in stream_id:
        if _TOKEN_PLAIN.match(ch):
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        else:
            out.append(f"_u{ord(ch):06x}")
    return "".join(out)


def token_stream_id(token: str) -> str:
    """The inverse of :func:`stream_token`."""
    if token == "_e":
        return ""
    out = []
    i = 0
    while i < len(token):
        ch = token[i]
        if ch != "_":
            out.append(ch)
            i += 1
            continue
        kind = token[i + 1]
        if kind == "u":
            out.append(chr(int(token[i + 2 : i + 8], 16)))
            i += 8
        else:
            out.append(_UNESCAPES[kind])
            i += 2
    return "".join(out)


# --- configuration and provisioning -------------------------------------------------------


@dataclass(frozen=True)
class JetStreamConfig:
    """Where the log lives and how it is replicated.

    ``jetstream://127.0.0.1:4222?replicas=3&prefix=sessionhub&timeout=5`` (several servers:
    ``jetstream://h1:4222,h2:4222``).
    """

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    prefix: str = "sessionhub"
    replicas: int = 1
    timeout_s: float = 5.0
    provision: bool = True

    @classmethod
    def from_url(cls, url: str) -> JetStreamConfig:
        parsed = urlparse(url)
        if parsed.scheme != "jetstream":
            raise ValueError(f"not a jetstream:// URL: {url!r}")
        hosts = [h for h in (parsed.netloc or "127.0.0.1:4222").split(",") if h]
        servers = tuple(f"nats://{h}" if ":" in h else f"nats://{h}:4222" for h in hosts)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        unknown = set(query) - {"replicas", "prefix", "timeout", "provision"}
        if unknown:
            raise ValueError(f"unknown jetstream:// option(s): {', '.join(sorted(unknown))}")
        try:
            replicas = int(query.get("replicas", "1"))
            timeout_s = float(query.get("timeout", "5"))
        except ValueError as exc:
            raise ValueError(f"bad jetstream:// option in {url!r}: {exc}") from None
        if not 1 <= replicas <= 5:
            raise ValueError("replicas must be between 1 and 5")
        prefix = query.get("prefix", "sessionhub")
        if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", prefix):
            raise ValueError(f"bad subject prefix {prefix!r}")
        provision_ = query.get("provision", "true").lower() not in ("0", "false", "no")
        return cls(servers, prefix, replicas, timeout_s, provision_)

    @property
    def _name(self) -> str:
        return re.sub(r"[^A-Za-z0-9]", "_", self.prefix).upper()

    @property
    def stream_name(self) -> str:
        return f"{self._name}_LOG"

    @property
    def snapshot_bucket(self) -> str:
        return f"{self._name}_SNAPSHOTS"

    @property
    def all_subjects(self) -> str:
        return f"{self.prefix}.log.>"

    def subject(self, stream_id: str) -> str:
        return f"{self.prefix}.log.{stream_token(stream_id)}"


async def provision(js: Any, config: JetStreamConfig) -> None:
    """Create the log stream and the snapshot bucket if absent; align their replicas.

    Kept apart from the data path: an operator may run it once (or provision with the
    ``nats`` CLI) and open the log with ``provision=false``.
    """
    wanted = api.StreamConfig(
        name=config.stream_name,
        subjects=[config.all_subjects],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        num_replicas=config.replicas,
        allow_direct=True,
        duplicate_window=120.0,
        description="sessionhub event log: one subject per session",
    )
    try:
        info = await js.stream_info(config.stream_name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(wanted)
    else:
        if info.config.num_replicas != config.replicas or not info.config.allow_direct:
            await js.update_stream(
                info.config.evolve(num_replicas=config.replicas, allow_direct=True)
            )
    try:
        await js.key_value(config.snapshot_bucket)
    except nats.js.errors.BucketNotFoundError:
        await js.create_key_value(
            bucket=config.snapshot_bucket,
            history=1,
            replicas=config.replicas,
            description="sessionhub snapshots: the latest per stream",
        )


# --- the per-stream index -----------------------------------------------------------------


@dataclass
class _Index:
    """What the backend knows of one stream's messages; refreshed from the server."""

    loaded: bool = False
    last_seq: int = 0  # seq of the stream's last event
    last_msg: int = 0  # stream sequence of the subject's last message, 0: none
    firsts: list[int] = field(default_factory=list)  # first event seq of each message
    msgs: list[int] = field(default_factory=list)  # stream sequence of each message
    commands: dict[str, list[int]] = field(default_factory=dict)  # command id -> msgs
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def reset(self) -> None:
        self.loaded = False
        self.last_seq = self.last_msg = 0
        self.firsts.clear()
        self.msgs.clear()
        self.commands.clear()

    def add(self, stream_seq: int, events: list[Event]) -> None:
        if stream_seq <= self.last_msg or not events:
            return
        self.firsts.append(events[0].seq)
        self.msgs.append(stream_seq)
        self.last_msg = stream_seq
        self.last_seq = events[-1].seq
        for cid in {e.command_id for e in events if e.command_id is not None}:
            self.commands.setdefault(cid, []).append(stream_seq)

    def start_for(self, after_seq: int) -> int:
        """The stream sequence to read from to see every event with seq > ``after_seq``."""
        i = bisect.bisect_right(self.firsts, after_seq + 1) - 1
        return self.msgs[i] if i >= 0 else 1


@dataclass
class _Sub:
    listener: Listener
    after: int  # stream sequence: deliver only messages after it
    closed: bool = False


class _Subscription:
    def __init__(self, log: JetStreamEventLog, sub: _Sub) -> None:
        self._log = log
        self._sub = sub

    def close(self) -> None:
        self._log._unsubscribe(self._sub)


# --- the backend --------------------------------------------------------------------------


class JetStreamEventLog:
    """The EventLog protocol over NATS JetStream (see the module docstring)."""

    backend = "jetstream"

    def __init__(self, config: JetStreamConfig | None = None, **kw: Any) -> None:
        self.config = config or JetStreamConfig(**kw)
        self._closed = False
        self._state_lock = threading.Lock()
        self._inflight: set[concurrent.futures.Future[Any]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"jetstream-log:{self.config.prefix}", daemon=True
        )
        self._thread.start()
        self._nc: NATS | None = None
        self._js: Any = None
        self._kv: Any = None
        self._indexes: OrderedDict[str, _Index] = OrderedDict()
        # delivery to subscribers: one ordered step for local appends and the consumer
        self._subs: tuple[_Sub, ...] = ()
        self._dispatch_lock = threading.RLock()
        self._deliver_lock: asyncio.Lock | None = None
        self._delivered = 0
        self._consumer: Any = None
        # count(): events and messages counted up to a stream sequence
        self._counted = (0, 0, 0)  # (events, messages, up to stream seq)
        # direct-get reply multiplexing
        self._mux_prefix = ""
        self._mux: dict[str, asyncio.Queue[Msg]] = {}
        self._mux_n = 0
        try:
            self._run(self._connect(), timeout=self.config.timeout_s * 3)
        except BaseException:
            self._closed = True
            self._stop_loop()
            raise

    @classmethod
    def from_url(cls, url: str) -> JetStreamEventLog:
        """Open ``jetstream://host:port?replicas=N&prefix=P`` (see :class:`JetStreamConfig`)."""
        return cls(JetStreamConfig.from_url(url))

    # -- the bridge to the private loop ----------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("the JetStream log was called from its own thread (a listener?)")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout if timeout is not None else self.config.timeout_s * 2)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise UnavailableError("the JetStream log did not answer in time") from None
        except concurrent.futures.CancelledError:
            raise UnavailableError("the JetStream log is closed") from None

    def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        with self._state_lock:
            if self._closed:
                raise UnavailableError("event log is closed")
            coro = self._guarded(fn, *args)
            fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
            self._inflight.add(fut)
        try:
            return fut.result(self.config.timeout_s * 2)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise UnavailableError("the JetStream log did not answer in time") from None
        except concurrent.futures.CancelledError:
            raise UnavailableError("the JetStream log is closed") from None
        finally:
            with self._state_lock:
                self._inflight.discard(fut)

    async def _guarded(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run on the loop; translate driver errors into the log's errors."""
        if self._nc is None or not self._nc.is_connected:
            raise UnavailableError("not connected to NATS")
        try:
            return await fn(*args)
        except EventLogError:
            raise
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise UnavailableError(f"NATS timed out: {exc}") from exc
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            raise UnavailableError(f"NATS error: {exc}") from exc

    async def _connect(self) -> None:
        async def on_error(exc: Exception) -> None:
            _log.warning("jetstream log connection error: %s", exc)

        try:
            self._nc = await nats.connect(
                servers=list(self.config.servers),
                connect_timeout=self.config.timeout_s,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.25,
                error_cb=on_error,
                reconnected_cb=self._on_reconnected,
                name=f"sessionhub-eventlog:{self.config.prefix}",
            )
        except Exception as exc:
            raise UnavailableError(f"cannot connect to NATS {self.config.servers}: {exc}") from exc
        self._js = self._nc.jetstream(timeout=self.config.timeout_s)
        self._deliver_lock = asyncio.Lock()
        if self.config.provision:
            await provision(self._js, self.config)
        self._kv = await self._js.key_value(self.config.snapshot_bucket)
        self._mux_prefix = self._nc.new_inbox()
        await self._nc.subscribe(self._mux_prefix + ".*", cb=self._on_mux)

    # -- direct gets -----------------------------------------------------------------------

    async def _on_mux(self, msg: Msg) -> None:
        queue = self._mux.get(msg.subject[len(self._mux_prefix) + 1 :])
        if queue is not None:
            queue.put_nowait(msg)

    async def _direct_batch(self, request: dict[str, Any]) -> tuple[list[Msg], int]:
        """One direct get: the messages and how many more match (``num_pending``).

        A request with ``batch`` is answered by the messages and an end-of-batch status
        (204); one without it by one message or a 404.
        """
        single = "batch" not in request
        assert self._nc is not None
        self._mux_n += 1
        token = str(self._mux_n)
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._mux[token] = queue
        try:
            await self._nc.publish(
                f"$JS.API.DIRECT.GET.{self.config.stream_name}",
                json.dumps(request).encode(),
                reply=f"{self._mux_prefix}.{token}",
            )
            msgs: list[Msg] = []
            while True:
                msg = await asyncio.wait_for(queue.get(), self.config.timeout_s)
                status = msg.headers.get("Status") if msg.headers else None
                if status is None:
                    msgs.append(msg)
                    if single:
                        return msgs, 0
                    continue
                if status == "204":
                    return msgs, int(msg.headers.get("Nats-Num-Pending", "0") or 0)
                if status == "404":
                    return msgs, 0
                raise UnavailableError(f"direct get failed: {status} {msg.headers}")
        finally:
            del self._mux[token]

    async def _scan(
        self, subject: str, start: int, *, upto: int | None = None, max_events: int | None = None
    ) -> list[tuple[int, Msg]]:
        """Messages of ``subject`` from stream sequence ``start`` on, in order."""
        out: list[tuple[int, Msg]] = []
        events = 0
        while True:
            msgs, pending = await self._direct_batch(
                {"seq": max(start, 1), "next_by_subj": subject, "batch": PAGE}
            )
            for msg in msgs:
                seq = int(msg.headers["Nats-Sequence"])  # type: ignore[index]
                if upto is not None and seq > upto:
                    return out
                out.append((seq, msg))
                events += int(msg.headers.get(H_COUNT, "1"))  # type: ignore[union-attr]
                start = seq + 1
            if not msgs or pending == 0:
                return out
            if max_events is not None and events >= max_events:
                return out

    async def _last_of(self, subject: str) -> Msg | None:
        assert self._nc is not None
        msg = await self._nc.request(
            f"$JS.API.DIRECT.GET.{self.config.stream_name}.{subject}",
            b"",
            timeout=self.config.timeout_s,
        )
        status = msg.headers.get("Status") if msg.headers else None
        if status == "404":
            return None
        if status is not None:
            raise UnavailableError(f"direct get failed: {status} {msg.headers}")
        return msg

    async def _get_seq(self, seq: int) -> Msg | None:
        msgs, _ = await self._direct_batch({"seq": seq})
        return msgs[0] if msgs else None

    # -- decoding --------------------------------------------------------------------------

    @staticmethod
    def _decode(stream_seq: int, data: bytes) -> list[Event]:
        body = codec.decode(data, f"<message {stream_seq}>", 0)
        try:
            stream_id = body["stream_id"]
            base = stream_seq * POSITION_STRIDE
            return [
                Event(
                    stream_id=stream_id,
                    seq=e["seq"],
                    type=e["type"],
                    data=e["data"],
                    created_at=e["created_at"],
                    command_id=e.get("command_id"),
                    version=e.get("version", 1),
                    position=base + i,
                )
                for i, e in enumerate(body["events"])
            ]
        except (KeyError, TypeError) as exc:
            raise CorruptRecordError(str(body.get("stream_id", "?")), 0, repr(exc)) from exc

    # -- the index -------------------------------------------------------------------------

    def _index(self, stream_id: str) -> _Index:
        idx = self._indexes.get(stream_id)
        if idx is None:
            idx = self._indexes[stream_id] = _Index()
            while len(self._indexes) > MAX_INDEXES:
                old_id, old = next(iter(self._indexes.items()))
                if old.lock.locked():
                    break
                del self._indexes[old_id]
        else:
            self._indexes.move_to_end(stream_id)
        return idx

    async def _refresh(self, stream_id: str, idx: _Index) -> None:
        """Bring the index up to the server: new messages, or a full reload after a purge."""
        subject = self.config.subject(stream_id)
        if idx.loaded:
            last = await self._last_of(subject)
            last_msg = int(last.headers["Nats-Sequence"]) if last is not None else 0  # type: ignore[index]
            if last_msg == idx.last_msg:
                return
            if last_msg < idx.last_msg or (idx.msgs and await self._purged(idx)):
                idx.reset()
        for seq, msg in await self._scan(subject, idx.last_msg + 1):
            idx.add(seq, self._decode(seq, msg.data))
        idx.loaded = True

    async def _purged(self, idx: _Index) -> bool:
        """Whether the index's first message is gone (the subject was purged and rewritten)."""
        msg = await self._get_seq(idx.msgs[0])
        return msg is None

    # -- appends ---------------------------------------------------------------------------

    def append(self, stream_id: str, events: Sequence[NewEvent], expected_seq: int) -> list[Event]:
        """Append ``events`` as one message if the stream's last seq is ``expected_seq``.

        Raises:
            ConflictError: the stream moved on.
            InvalidEventError: an event is not JSON, or the append is too large.
            UnavailableError: NATS cannot be reached, or the log is closed.
        """
        if len(events) >= POSITION_STRIDE:
            raise InvalidEventError(f"at most {POSITION_STRIDE - 1} events per append")
        body = codec.encode(
            {
                "stream_id": stream_id,
                "events": [
                    {
                        "seq": expected_seq + i + 1,
                        "type": e.type,
                        "data": e.data,
                        "created_at": e.created_at,
                        "command_id": e.command_id,
                        "version": e.version,
                    }
                    for i, e in enumerate(events)
                ],
            }
        ).encode()
        return self._call(self._append, stream_id, list(events), expected_seq, body)

    async def _append(
        self, stream_id: str, events: list[NewEvent], expected_seq: int, body: bytes
    ) -> list[Event]:
        assert self._nc is not None
        if len(body) > self._nc.max_payload:
            raise InvalidEventError(
                f"append of {len(body)} bytes exceeds the NATS max_payload "
                f"({self._nc.max_payload} bytes)"
            )
        cid = events[0].command_id if events else None
        idx = self._index(stream_id)
        async with idx.lock:
            if not idx.loaded:
                await self._refresh(stream_id, idx)
            fresh = False
            salt = ""
            for attempt in range(8):
                if cid is not None and cid in idx.commands:
                    return await self._stored(idx, cid)
                if idx.last_seq != expected_seq:
                    if not fresh:
                        await self._refresh(stream_id, idx)
                        fresh = True
                        continue
                    raise ConflictError(stream_id, expected_seq, idx.last_seq)
                if not events:
                    return []
                headers = {
                    H_EXPECTED_LAST_SUBJECT_SEQ: str(idx.last_msg),
                    H_FIRST_SEQ: str(expected_seq + 1),
                    H_COUNT: str(len(events)),
                }
                if cid is not None:
                    key = f"{stream_id}\n{cid}{salt}".encode()
                    headers[H_MSG_ID] = hashlib.sha256(key).hexdigest()
                try:
                    ack = await self._js.publish(
                        self.config.subject(stream_id), body, headers=headers
                    )
                except nats.js.errors.APIError as exc:
                    if exc.err_code == ERR_DUPLICATE_IN_PROCESS:
                        # the same command is being stored by another writer right now
                        await asyncio.sleep(0.01 * (attempt + 1))
                    elif exc.err_code not in _WRONG_LAST:
                        raise
                    await self._refresh(stream_id, idx)  # someone else appended
                    fresh = True
                    continue
                except nats.errors.TimeoutError:
                    if not self._nc.is_connected:
                        raise
                    await self._refresh(stream_id, idx)  # the outcome is unknown: look
                    fresh = True
                    continue
                if ack.duplicate:
                    # stored before (a lost ack, another node); if it was purged since,
                    # publish anew under another message id
                    await self._refresh(stream_id, idx)
                    fresh = True
                    if cid is not None and cid not in idx.commands:
                        salt = f"\n{ack.seq}"
                    continue
                base = ack.seq * POSITION_STRIDE
                stored = [
                    Event(stream_id, expected_seq + i + 1, e.type, e.data, e.created_at,
                          e.command_id, e.version, base + i)
                    for i, e in enumerate(events)
                ]  # fmt: skip
                idx.add(ack.seq, stored)
                await self._deliver(ack.seq, stored)
                return stored
            raise UnavailableError(f"append to {stream_id!r} kept failing; try again")

    async def _stored(self, idx: _Index, cid: str) -> list[Event]:
        """The stored events of command ``cid`` (a retry's answer)."""
        out: list[Event] = []
        for seq in idx.commands[cid]:
            msg = await self._get_seq(seq)
            if msg is not None:
                out += [e for e in self._decode(seq, msg.data) if e.command_id == cid]
        return out

    # -- reads -----------------------------------------------------------------------------

    def read(self, stream_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        return self._call(self._read, stream_id, after_seq, limit)

    async def _read(self, stream_id: str, after_seq: int, limit: int | None) -> list[Event]:
        if limit is not None and limit <= 0:
            return []
        idx = self._indexes.get(stream_id)
        start = idx.start_for(after_seq) if idx is not None and idx.loaded else 1
        want = None if limit is None else limit + after_seq  # events counted from the start
        out: list[Event] = []
        for seq, msg in await self._scan(self.config.subject(stream_id), start, max_events=want):
            out += [e for e in self._decode(seq, msg.data) if e.seq > after_seq]
            if limit is not None and len(out) >= limit:
                break
        return out[:limit] if limit is not None else out

    def last_seq(self, stream_id: str) -> int:
        return self._call(self._last_seq, stream_id)

    async def _last_seq(self, stream_id: str) -> int:
        msg = await self._last_of(self.config.subject(stream_id))
        if msg is None:
            return 0
        headers = msg.headers or {}
        first, count = headers.get(H_FIRST_SEQ), headers.get(H_COUNT)
        if first is not None and count is not None:
            return int(first) + int(count) - 1
        return self._decode(int(headers["Nats-Sequence"]), msg.data)[-1].seq

    def read_all(self, after_position: int = 0, limit: int | None = None) -> list[Event]:
        return self._call(self._read_all, after_position, limit)

    async def _read_all(self, after_position: int, limit: int | None) -> list[Event]:
        if limit is not None and limit <= 0:
            return []
        start = max(after_position // POSITION_STRIDE, 1)
        out: list[Event] = []
        while True:
            scanned = await self._scan(
                self.config.all_subjects, start, max_events=None if limit is None else limit + 1
            )
            for seq, msg in scanned:
                out += [e for e in self._decode(seq, msg.data) if e.position > after_position]
                start = seq + 1
            if not scanned or limit is None or len(out) >= limit:
                break
        return out[:limit] if limit is not None else out

    def last_position(self) -> int:
        return self._call(self._last_position)

    async def _last_position(self) -> int:
        info = await self._js.stream_info(self.config.stream_name)
        last = info.state.last_seq
        if last == 0:
            return 0
        msg = await self._get_seq(last)
        if msg is None:  # the newest message was purged: its positions stay used up
            return last * POSITION_STRIDE + POSITION_STRIDE - 1
        return last * POSITION_STRIDE + int((msg.headers or {}).get(H_COUNT, "1")) - 1

    def count(self) -> int:
        return self._call(self._count)

    async def _count(self) -> int:
        """Events in the log: counted incrementally, recounted when a purge is detected."""
        for _ in range(3):
            info = await self._js.stream_info(self.config.stream_name)
            last, messages = info.state.last_seq, info.state.messages
            events, msgs, upto = self._counted
            if upto > last:
                events, msgs, upto = 0, 0, 0
            new = await self._scan(self.config.all_subjects, upto + 1, upto=last)
            events += sum(int((m.headers or {}).get(H_COUNT, "1")) for _, m in new)
            msgs += len(new)
            if msgs == messages:
                self._counted = (events, msgs, last)
                return events
            self._counted = (0, 0, 0)  # something was purged: count everything again
        return events

    # -- subscriptions ---------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> _Subscription:
        """Deliver every event appended from now on (by any node), once, in global order."""
        return _Subscription(self, self._call(self._subscribe, listener))

    async def _subscribe(self, listener: Listener) -> _Sub:
        assert self._deliver_lock is not None
        async with self._deliver_lock:
            if self._consumer is None:
                info = await self._js.stream_info(self.config.stream_name)
                self._delivered = info.state.last_seq
                await self._start_consumer()
            sub = _Sub(listener, after=self._delivered)
            with self._dispatch_lock:
                self._subs = (*self._subs, sub)
            return sub

    async def _start_consumer(self) -> None:
        """An ordered push consumer of every log subject, from the first undelivered seq."""
        self._consumer = await self._js.subscribe(
            self.config.all_subjects,
            stream=self.config.stream_name,
            ordered_consumer=True,
            cb=self._on_consumer_msg,
            config=api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self._delivered + 1,
            ),
        )

    async def _on_reconnected(self) -> None:
        """The server may have restarted and lost the (in-memory) consumer: start anew from
        the first undelivered seq, so the subscribers miss nothing appended meanwhile."""
        if self._consumer is None or self._deliver_lock is None or self._closed:
            return
        async with self._deliver_lock:
            old, self._consumer = self._consumer, None
            with contextlib.suppress(Exception):
                await old.unsubscribe()
            for attempt in range(20):
                try:
                    await self._start_consumer()
                    return
                except Exception as exc:  # JetStream may still be recovering its streams
                    _log.warning("event log consumer not restarted (%s); retrying", exc)
                    await asyncio.sleep(0.1 * (attempt + 1))
            _log.error("event log consumer lost: other nodes' events are not delivered")

    def _unsubscribe(self, sub: _Sub) -> None:
        with self._dispatch_lock:  # waits for a delivery in progress on the loop thread
            sub.closed = True
            self._subs = tuple(s for s in self._subs if s is not sub)

    async def _on_consumer_msg(self, msg: Msg) -> None:
        assert self._deliver_lock is not None
        seq = msg.metadata.sequence.stream
        async with self._deliver_lock:
            if seq <= self._delivered:
                return
            try:
                events = self._decode(seq, msg.data)
            except CorruptRecordError:
                _log.exception("undecodable message %d in the event log", seq)
                self._delivered = seq
                return
            self._dispatch(seq, events)

    async def _deliver(self, seq: int, events: list[Event]) -> None:
        """Hand a local append to the listeners before ``append`` returns, in global order."""
        if not self._subs or self._deliver_lock is None:
            return
        async with self._deliver_lock:
            if seq <= self._delivered:
                return
            if seq > self._delivered + 1:  # fill the gap (other appends) from the stream
                gap = await self._scan(self.config.all_subjects, self._delivered + 1, upto=seq - 1)
                for gseq, msg in gap:
                    self._dispatch(gseq, self._decode(gseq, msg.data))
            self._dispatch(seq, events)

    def _dispatch(self, seq: int, events: list[Event]) -> None:
        self._delivered = max(self._delivered, seq)
        with self._dispatch_lock:
            for sub in self._subs:
                if sub.closed or seq <= sub.after:
                    continue
                try:
                    sub.listener(list(events))
                except Exception:  # the events are stored: the appender still succeeds
                    _log.exception("event log listener %r failed", sub.listener)

    # -- snapshots -------------------------------------------------------------------------

    def save_snapshot(self, snapshot: Snapshot) -> None:
        value = codec.encode(
            {
                "stream_id": snapshot.stream_id,
                "seq": snapshot.seq,
                "state": snapshot.state,
                "created_at": snapshot.created_at,
            }
        ).encode()
        self._call(self._kv_put, stream_token(snapshot.stream_id), value)

    async def _kv_put(self, key: str, value: bytes) -> None:
        await self._kv.put(key, value)

    def load_snapshot(self, stream_id: str) -> Snapshot | None:
        return self._call(self._load_snapshot, stream_id)

    async def _load_snapshot(self, stream_id: str) -> Snapshot | None:
        try:
            entry = await self._kv.get(stream_token(stream_id))
        except nats.js.errors.KeyNotFoundError:  # KeyDeletedError is one too
            return None
        if entry.value is None:
            return None
        raw = codec.decode(entry.value, stream_id, 0)
        return Snapshot(raw["stream_id"], raw["seq"], raw["state"], raw["created_at"])

    # -- deletes ---------------------------------------------------------------------------

    def delete_stream(self, stream_id: str) -> None:
        self._call(self._delete_stream, stream_id)

    async def _delete_stream(self, stream_id: str) -> None:
        idx = self._index(stream_id)
        async with idx.lock:
            await self._js.purge_stream(
                self.config.stream_name, subject=self.config.subject(stream_id)
            )
            with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                await self._kv.purge(stream_token(stream_id))
            idx.reset()

    # -- life cycle ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        nc = self._nc
        return nc is not None and nc.is_connected and not self._closed

    def close(self) -> None:
        """Wait for calls in flight (bounded), disconnect and stop the private loop."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            inflight = list(self._inflight)
        concurrent.futures.wait(inflight, timeout=self.config.timeout_s)
        with self._dispatch_lock:
            self._subs = ()
        with contextlib.suppress(Exception):
            self._run(self._aclose(), timeout=self.config.timeout_s)
        self._stop_loop()

    async def _aclose(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.unsubscribe()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()

    def _stop_loop(self) -> None:
        if self._loop.is_closed():
            return

        async def cancel_rest() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_rest(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()
