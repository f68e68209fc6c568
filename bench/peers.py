"""sessionhub against the session stores agent frameworks ship, on one workload, in one run.

The workload (issue 6): S sessions x N chat messages of 200 bytes, one append per call,
each store on its own SQLite file in a fresh directory on the same disk:

1. create S sessions, one at a time;
2. append N messages to each of them one call at a time, round robin over the sessions,
   from one writer ("sequential"), with the latency of every append;
3. create C more sessions and let C concurrent writers (tasks or threads, whichever the
   store is built for) append N messages each, one writer per session ("concurrent");
4. load every full history of the S sessions, ``--load-rounds`` times over ("live": the
   process that wrote them, store warm), then once each from a fresh process on the same
   file ("cold": new process, new store object; the OS page cache stays warm);
5. bytes on disk (database + WAL + journals, after close) per message stored.

Stores: sessionhub through its async facade (``Hub.append_events`` of one ``app.message``
client event per call on a storage-only session, and ``Hub.context_set``), sessionhub
over HTTP (an aiohttp client against a ``sessionhub serve`` subprocess on loopback), the
OpenAI Agents SDK's ``SQLiteSession``, Google ADK's ``DatabaseSessionService`` on
sqlite+aiosqlite, LangGraph's ``SqliteSaver`` (one checkpoint ``put`` per message, the
checkpoint holding the thread's messages as a graph's state does), and raw sqlite3 with
one commit (one fsync) per insert and with one commit per 100 inserts. Every row says its
durability from the PRAGMAs its own connection reports.

Each store runs in a subprocess: peers in the bench venv (``requirements-peers.txt``,
created on first use under ``$SESSIONHUB_BENCH_VENV``, default
``~/.cache/sessionhub-bench-venv``), sessionhub and raw sqlite3 in the interpreter running
this script, so the project's venv never sees a peer. Stores are interleaved within each
repetition (this machine's fsync latency drifts) and every figure is the median over
``--reps``. The HTTP row also measures ``PUT /sessions/{id}/context/{key}`` and a bare
aiohttp handler with the same client and concurrency, for the 40% target.

    .venv/bin/python bench/peers.py                        # defaults: 50 x 200, 64 writers
    .venv/bin/python bench/peers.py --reps 1 --stores sessionhub-facade,openai-agents
    .venv/bin/python bench/peers.py --json /tmp/peers.json --profile /tmp/prof
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

# ``bench/eventlog.py`` would shadow the ``eventlog`` package: import from the repository root.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from bench import common  # noqa: E402
from bench.common import MESSAGE, MESSAGE_TEXT  # noqa: E402

PEER_STORES = ("openai-agents", "adk", "langgraph")
ALL_STORES = (
    "sessionhub-facade",
    "sessionhub-facade-ctx",
    "sessionhub-http",
    *PEER_STORES,
    "raw-fsync",
    "raw-batch100",
)
LABELS = {
    "sessionhub-facade": "sessionhub facade append_events",
    "sessionhub-facade-ctx": "sessionhub facade context_set",
    "sessionhub-http": "sessionhub HTTP POST /events",
    "openai-agents": "openai-agents SQLiteSession",
    "adk": "google-adk DatabaseSessionService",
    "langgraph": "langgraph SqliteSaver",
    "raw-fsync": "raw sqlite3, commit per insert",
    "raw-batch100": "raw sqlite3, commit per 100",
}
WORKER_TIMEOUT_S = 600


# =============================================================================================
# Stores. Each has: open(dir), create(sid), append(sid, i), load(sid) -> messages loaded,
# flush() (end of a write phase), pragmas(), close(). Methods may be sync or async;
# ``concurrency`` says whether concurrent writers are asyncio tasks or threads.
# =============================================================================================


def quiet_structlog() -> None:
    """sessionhub logs with structlog; keep the bench's output to warnings and worse."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.basicConfig(level=logging.WARNING)


class FacadeStore:
    """sessionhub in process: ``Hub`` on the SQLite event log (WAL, synchronous=FULL)."""

    concurrency = "tasks"
    group_commit = True

    def __init__(self, args: argparse.Namespace, mode: str = "append_events") -> None:
        self.args = args
        self.log: Any = None
        self.hub: Any = None
        self._cm: Any = None
        self.mode = mode
        self.open_s = 0.0

    async def open(self, path: Path) -> None:
        quiet_structlog()
        from actors.caller import Caller
        from actors.config import HubConfig
        from actors.hub import Hub
        from eventlog import open_eventlog

        start = time.perf_counter()
        self.path = path / "events.db"
        self.log = open_eventlog(f"sqlite:///{self.path}")
        self._cm = Hub.running(self.log, HubConfig())
        self.hub = await self._cm.__aenter__()
        self.open_s = time.perf_counter() - start
        self.caller = Caller("bench-user")

    async def create(self, sid: str) -> None:
        await self.hub.create_session(self.caller, {"session_id": sid, "agent": {"kind": "none"}})

    async def append(self, sid: str, i: int) -> None:
        if self.mode == "context_set":
            await self.hub.context_set(self.caller, sid, f"m{i}", MESSAGE)
        else:
            body = {"events": [{"type": "app.message", "data": MESSAGE}]}
            await self.hub.append_events(self.caller, sid, body)

    async def load(self, sid: str) -> int:
        page = await self.hub.read_events(self.caller, sid, {"limit": "10000"})
        kind = "context_set" if self.mode == "context_set" else "app.message"
        return sum(1 for e in page["events"] if e["type"] == kind)

    def flush(self) -> None:
        pass

    def pragmas(self) -> dict[str, Any]:
        conn = getattr(self.log, "_wconn", None)  # the writer's own connection
        if conn is None:
            return {"journal_mode": "WAL", "synchronous": "FULL"}
        return common.sqlite_pragmas(conn)

    async def close(self) -> None:
        await self._cm.__aexit__(None, None, None)
        self.log.close()


class HttpStore:
    """sessionhub over HTTP: an aiohttp client against a ``sessionhub serve`` subprocess."""

    concurrency = "tasks"
    group_commit = True

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.server: common.Server | None = None
        self.http: Any = None
        self.open_s = 0.0

    async def open(self, path: Path) -> None:
        import aiohttp

        self.path = path / "events.db"
        self.server = common.Server(f"sqlite:///{self.path}", log_level=self.args.server_log_level)
        self.open_s = self.server.start(log_path=path / "server.log")
        connector = aiohttp.TCPConnector(limit=max(self.args.concurrency, 1) + 8)
        self.http = aiohttp.ClientSession(self.server.base, connector=connector)

    async def _call(self, method: str, url: str, body: Any = None, ok: int = 200) -> Any:
        async with self.http.request(method, url, json=body) as resp:
            data = await resp.read()
            if resp.status != ok:
                raise RuntimeError(f"{method} {url}: {resp.status} {data[:300]!r}")
            return data

    async def create(self, sid: str) -> None:
        body = {"session_id": sid, "user_id": "bench-user", "agent": {"kind": "none"}}
        await self._call("POST", "/sessions", body, ok=201)

    async def append(self, sid: str, i: int) -> None:
        body = {"events": [{"type": "app.message", "data": MESSAGE}]}
        await self._call("POST", f"/sessions/{sid}/events", body)

    async def put_context(self, sid: str, i: int) -> None:
        await self._call("PUT", f"/sessions/{sid}/context/m{i}", MESSAGE)

    async def load(self, sid: str) -> int:
        data = await self._call("GET", f"/sessions/{sid}/events?limit=10000")
        return sum(1 for e in json.loads(data)["events"] if e["type"] == "app.message")

    def flush(self) -> None:
        pass

    def pragmas(self) -> dict[str, Any]:
        return {"journal_mode": "WAL", "synchronous": "FULL"}  # the same event log as above

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.server is not None:
            self.server.stop()


class OpenAIAgentsStore:
    """``agents.SQLiteSession``: one object per session on one file; ``add_items`` each."""

    concurrency = "tasks"
    group_commit = False

    def __init__(self, args: argparse.Namespace) -> None:
        self.sessions: dict[str, Any] = {}
        self.open_s = 0.0

    async def open(self, path: Path) -> None:
        start = time.perf_counter()
        from agents import SQLiteSession

        self.cls = SQLiteSession
        self.path = path / "openai.db"
        self.open_s = time.perf_counter() - start

    def _session(self, sid: str) -> Any:
        s = self.sessions.get(sid)
        if s is None:
            s = self.sessions[sid] = self.cls(sid, self.path)
        return s

    async def create(self, sid: str) -> None:
        self._session(sid)  # a session row is written with its first item

    async def append(self, sid: str, i: int) -> None:
        await self._session(sid).add_items([dict(MESSAGE)])

    async def load(self, sid: str) -> int:
        return len(await self._session(sid).get_items())

    def flush(self) -> None:
        pass

    def pragmas(self) -> dict[str, Any]:
        s = next(iter(self.sessions.values()))
        return common.sqlite_pragmas(s._get_connection())

    async def close(self) -> None:
        for s in self.sessions.values():
            s.close()


class AdkStore:
    """``google.adk.sessions.DatabaseSessionService`` on ``sqlite+aiosqlite``."""

    concurrency = "tasks"
    group_commit = False

    def __init__(self, args: argparse.Namespace) -> None:
        self.sessions: dict[str, Any] = {}
        self.open_s = 0.0

    async def open(self, path: Path) -> None:
        start = time.perf_counter()
        import logging

        from google.adk.events import Event
        from google.adk.sessions import DatabaseSessionService
        from google.genai import types

        logging.getLogger("google_adk").setLevel(logging.ERROR)
        self.Event, self.types = Event, types
        self.path = path / "adk.db"
        self.svc = DatabaseSessionService(db_url=f"sqlite+aiosqlite:///{self.path}")
        self.open_s = time.perf_counter() - start

    async def create(self, sid: str) -> None:
        self.sessions[sid] = await self.svc.create_session(
            app_name="bench", user_id="bench-user", session_id=sid
        )

    async def append(self, sid: str, i: int) -> None:
        types = self.types
        content = types.Content(role="user", parts=[types.Part(text=MESSAGE_TEXT)])
        event = self.Event(author="user", invocation_id=f"inv-{i}", content=content)
        await self.svc.append_event(self.sessions[sid], event)

    async def load(self, sid: str) -> int:
        session = await self.svc.get_session(app_name="bench", user_id="bench-user", session_id=sid)
        return len(session.events)

    def flush(self) -> None:
        pass

    async def pragmas(self) -> dict[str, Any]:
        async with self.svc.db_engine.connect() as conn:
            journal = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            sync = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar()
        names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
        return {"journal_mode": str(journal).upper(), "synchronous": names.get(sync, str(sync))}

    async def close(self) -> None:
        await self.svc.close()


class LangGraphStore:
    """``langgraph.checkpoint.sqlite.SqliteSaver``: one checkpoint ``put`` per message.

    Like a graph with a ``messages`` channel, each checkpoint holds the thread's messages
    so far (``HumanMessage`` objects, serialised by the saver's serde); loading a history
    is ``get_tuple`` of the thread's latest checkpoint.
    """

    concurrency = "threads"
    group_commit = False

    def __init__(self, args: argparse.Namespace) -> None:
        self.threads: dict[str, tuple[dict[str, Any], list[Any]]] = {}
        self.open_s = 0.0

    def open(self, path: Path) -> None:
        import sqlite3

        start = time.perf_counter()
        from langchain_core.messages import HumanMessage
        from langgraph.checkpoint.base import empty_checkpoint
        from langgraph.checkpoint.sqlite import SqliteSaver

        self.Human, self.empty = HumanMessage, empty_checkpoint
        self.path = path / "langgraph.db"
        self.conn = sqlite3.connect(self.path, check_same_thread=False)
        self.saver = SqliteSaver(self.conn)
        self.saver.setup()
        self.open_s = time.perf_counter() - start

    def _put(self, sid: str, messages: list[Any], step: int) -> None:
        config = self.threads[sid][0] if sid in self.threads else None
        if config is None:
            config = {"configurable": {"thread_id": sid, "checkpoint_ns": ""}}
        checkpoint = self.empty()
        checkpoint["channel_values"] = {"messages": messages}
        checkpoint["channel_versions"] = {"messages": step + 1}
        checkpoint["updated_channels"] = ["messages"]
        metadata = {"source": "loop", "step": step, "parents": {}}
        new_config = self.saver.put(config, checkpoint, metadata, {"messages": step + 1})
        self.threads[sid] = (new_config, messages)

    def create(self, sid: str) -> None:
        self._put(sid, [], -1)

    def append(self, sid: str, i: int) -> None:
        messages = [*self.threads[sid][1], self.Human(content=MESSAGE_TEXT, id=uuid.uuid4().hex)]
        self._put(sid, messages, i)

    def load(self, sid: str) -> int:
        config = {"configurable": {"thread_id": sid, "checkpoint_ns": ""}}
        tup = self.saver.get_tuple(config)
        return len(tup.checkpoint["channel_values"].get("messages", []))

    def flush(self) -> None:
        pass

    def pragmas(self) -> dict[str, Any]:
        return common.sqlite_pragmas(self.conn)

    def close(self) -> None:
        self.conn.close()


class RawStore:
    """Plain sqlite3: WAL, synchronous=FULL, JSON text rows, no framework.

    ``per_commit=1``: a connection per writer thread, each insert its own transaction (one
    fsync each; concurrent writers queue on SQLite's write lock). ``per_commit=100``: one
    shared connection under a lock and a commit every 100 inserts, whoever made them: an
    upper bound for batching, not durable per call.
    """

    concurrency = "threads"
    group_commit = False

    def __init__(self, args: argparse.Namespace, per_commit: int = 1) -> None:
        self.per_commit = per_commit
        self.local = threading.local()
        self.conns: list[Any] = []
        self.lock = threading.Lock()
        self.pending = 0
        self.open_s = 0.0

    def _connect(self) -> Any:
        import sqlite3

        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        with self.lock:
            self.conns.append(conn)
        return conn

    def _conn(self) -> Any:
        if self.per_commit > 1:
            return self.conns[0]
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = self._connect()
        return conn

    def open(self, path: Path) -> None:
        start = time.perf_counter()
        self.path = path / "raw.db"
        conn = self._connect()
        self.local.conn = conn
        conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, created_at REAL);
            CREATE TABLE IF NOT EXISTS messages (
                id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, seq INTEGER NOT NULL,
                data TEXT NOT NULL, UNIQUE (session_id, seq));
            """
        )
        self.open_s = time.perf_counter() - start

    def create(self, sid: str) -> None:
        with self.lock if self.per_commit > 1 else _NOLOCK:
            conn = self._conn()
            if not conn.in_transaction:
                conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO sessions VALUES (?, ?)", (sid, time.time()))
            conn.execute("COMMIT")

    def append(self, sid: str, i: int) -> None:
        row = (sid, i + 1, json.dumps(MESSAGE))
        if self.per_commit == 1:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(_RAW_INSERT, row)
            conn.execute("COMMIT")
            return
        with self.lock:
            conn = self.conns[0]
            if not conn.in_transaction:
                conn.execute("BEGIN IMMEDIATE")
            conn.execute(_RAW_INSERT, row)
            self.pending += 1
            if self.pending >= self.per_commit:
                conn.execute("COMMIT")
                self.pending = 0

    def flush(self) -> None:
        with self.lock:
            for conn in self.conns:
                if conn.in_transaction:
                    conn.execute("COMMIT")
            self.pending = 0

    def load(self, sid: str) -> int:
        rows = self._conn().execute(
            "SELECT data FROM messages WHERE session_id = ? ORDER BY seq", (sid,)
        )
        return len([json.loads(r[0]) for r in rows])

    def pragmas(self) -> dict[str, Any]:
        return common.sqlite_pragmas(self._conn())

    def close(self) -> None:
        for conn in self.conns:
            conn.close()


_RAW_INSERT = "INSERT INTO messages (session_id, seq, data) VALUES (?, ?, ?)"
_NOLOCK = contextlib.nullcontext()


def make_store(name: str, args: argparse.Namespace) -> Any:
    if name == "sessionhub-facade":
        return FacadeStore(args)
    if name == "sessionhub-facade-ctx":
        return FacadeStore(args, mode="context_set")
    if name == "sessionhub-http":
        return HttpStore(args)
    if name == "openai-agents":
        return OpenAIAgentsStore(args)
    if name == "adk":
        return AdkStore(args)
    if name == "langgraph":
        return LangGraphStore(args)
    if name == "raw-fsync":
        return RawStore(args, per_commit=1)
    if name == "raw-batch100":
        return RawStore(args, per_commit=100)
    raise SystemExit(f"unknown store {name!r}")


# =============================================================================================
# The workload (runs inside a worker subprocess)
# =============================================================================================


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


async def concurrent(
    store: Any, fn: Callable[..., Any], sids: list[str], n: int, cap_s: float
) -> tuple[float, int, list[str]]:
    """``len(sids)`` writers make ``n`` calls each, a session per writer, for at most
    ``cap_s`` seconds; returns (seconds, calls that succeeded, errors of those that failed).
    """
    done = [0]
    failed: list[str] = []
    if store.concurrency == "tasks":
        deadline = time.perf_counter() + cap_s

        async def writer(sid: str) -> None:
            for i in range(n):
                try:
                    await fn(sid, i)
                    done[0] += 1
                except Exception as exc:  # a store that fails under load: count, go on
                    failed.append(f"{type(exc).__name__}: {str(exc)[:160]}")
                if time.perf_counter() > deadline:
                    return

        start = time.perf_counter()
        await asyncio.gather(*(writer(s) for s in sids))
        await call(store.flush)
        return time.perf_counter() - start, done[0], failed

    errors: list[BaseException] = []
    barrier = threading.Barrier(len(sids) + 1)
    counts = [0] * len(sids)
    limit = [0.0]

    def run(k: int, sid: str) -> None:
        barrier.wait()
        try:
            for i in range(n):
                try:
                    fn(sid, i)
                    counts[k] += 1
                except Exception as exc:
                    failed.append(f"{type(exc).__name__}: {str(exc)[:160]}")
                if time.perf_counter() > limit[0]:
                    return
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k, s)) for k, s in enumerate(sids)]
    for t in threads:
        t.start()
    limit[0] = time.perf_counter() + cap_s + 1.0  # the barrier releases just below
    barrier.wait()
    start = time.perf_counter()
    limit[0] = start + cap_s
    for t in threads:
        t.join()
    store.flush()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed, sum(counts), failed


async def run_write(store: Any, args: argparse.Namespace, path: Path) -> dict[str, Any]:
    s, n, c = args.sessions, args.messages, args.concurrency
    seq_ids = [f"s-{k:05d}" for k in range(s)]
    conc_ids = [f"c-{k:05d}" for k in range(c)]
    out: dict[str, Any] = {"store": args.worker, "rows": {}}
    prof = Path(args.profile) if args.profile else None

    await call(store.open, path)

    start = time.perf_counter()
    for sid in seq_ids:
        await call(store.create, sid)
    creates_s = time.perf_counter() - start
    for sid in conc_ids:
        await call(store.create, sid)

    # Round robin over the sessions; a slow store stops after --max-phase-s at the end
    # of a round, so every session holds the same number of messages.
    lat: list[float] = []
    rounds = 0
    # sessionhub's rows always run the whole workload: its targets are defined on it.
    cap = float("inf") if args.worker.startswith("sessionhub") else args.max_phase_s
    start = time.perf_counter()
    deadline = start + cap
    for i in range(n):
        for sid in seq_ids:
            t0 = time.perf_counter()
            await call(store.append, sid, i)
            lat.append(time.perf_counter() - t0)
        rounds += 1
        if time.perf_counter() > deadline:
            break
    await call(store.flush)
    seq_s = time.perf_counter() - start

    # A profile is of the process doing the work: the server for the HTTP store.
    pid = store.server.pid if isinstance(store, HttpStore) and store.server else os.getpid()
    with common.py_spy(pid, prof / f"{args.worker}-append.txt" if prof else None):
        conc_s, conc_done, conc_failed = await concurrent(store, store.append, conc_ids, n, cap)

    row = {
        "creates_per_s": s / creates_s,
        "seq_appends_per_s": s * rounds / seq_s,
        "seq_append": common.latency_ms(lat),
        "conc_appends_per_s": conc_done / conc_s,
        "history": rounds,
        "capped": rounds < n or conc_done + len(conc_failed) < c * n,
        "stored": s * rounds + conc_done,
        "conc_failed": len(conc_failed),
        "conc_error": conc_failed[0] if conc_failed else None,
    }
    n = rounds

    loads: list[float] = []
    counts: set[int] = set()
    with common.py_spy(pid, prof / f"{args.worker}-load.txt" if prof else None):
        start = time.perf_counter()
        for _ in range(args.load_rounds):
            for sid in seq_ids:
                t0 = time.perf_counter()
                counts.add(await call(store.load, sid))
                loads.append(time.perf_counter() - t0)
        load_s = time.perf_counter() - start
    if counts != {n}:
        raise RuntimeError(f"{args.worker}: loaded histories of {sorted(counts)} messages, not {n}")
    row["live_load"] = common.latency_ms(loads)
    row["live_loads_per_s"] = len(loads) / load_s

    if isinstance(store, HttpStore):
        out["http"] = await http_put_context(store, args, path)

    row["pragmas"] = await call(store.pragmas)
    row["open_s"] = store.open_s
    await call(store.close)
    row["bytes_per_msg"] = common.dir_bytes(path) / row["stored"]
    out["rows"][args.worker] = row
    return out


async def http_put_context(store: HttpStore, args: argparse.Namespace, path: Path) -> dict:
    """PUT context req/s against sessionhub, then a bare aiohttp handler, same client."""
    import aiohttp

    c, n = args.concurrency, args.messages
    ids = [f"p-{k:05d}" for k in range(c)]
    for sid in ids:
        await store.create(sid)
    prof = Path(args.profile) / "sessionhub-http-put-context.txt" if args.profile else None
    assert store.server is not None
    with common.py_spy(store.server.pid, prof):
        put_s, put_done, put_failed = await concurrent(store, store.put_context, ids, n, 1e9)
    if put_failed:
        raise RuntimeError(f"PUT context failed: {put_failed[0]}")
    sessionhub_rps = put_done / put_s

    port = common.free_port()
    bare = subprocess.Popen([sys.executable, __file__, "--bare-server", str(port)])
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(500):
            try:
                common.http_get(base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.01)
        connector = aiohttp.TCPConnector(limit=c + 8)
        async with aiohttp.ClientSession(base, connector=connector) as http:

            async def writer(sid: str) -> None:
                for i in range(n):
                    async with http.put(f"/sessions/{sid}/context/m{i}", json=MESSAGE) as resp:
                        await resp.read()
                        if resp.status != 200:
                            raise RuntimeError(f"bare handler answered {resp.status}")

            start = time.perf_counter()
            await asyncio.gather(*(writer(s) for s in ids))
            bare_s = time.perf_counter() - start
    finally:
        bare.terminate()
        bare.wait(10)
    bare_rps = c * n / bare_s
    return {
        "put_context_rps": sessionhub_rps,
        "bare_rps": bare_rps,
        "ratio": sessionhub_rps / bare_rps,
    }


def bare_server(port: int) -> None:
    """A bare aiohttp app: PUT parses the JSON body and answers a small JSON object."""
    from aiohttp import web

    async def put(request: web.Request) -> web.Response:
        value = await request.json()
        key = request.match_info["key"]
        return web.json_response({"key": key, "value": value, "version": 1})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_put("/sessions/{sid}/context/{key}", put)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


async def run_cold(store: Any, args: argparse.Namespace, path: Path) -> dict[str, Any]:
    """A fresh process on the written file: open the store, load each history once."""
    seq_ids = [f"s-{k:05d}" for k in range(args.sessions)]
    await call(store.open, path)
    if isinstance(store, (OpenAIAgentsStore,)):
        for sid in seq_ids:
            store._session(sid)
    if isinstance(store, AdkStore):
        await store.svc.prepare_tables()
    loads: list[float] = []
    counts: set[int] = set()
    start = time.perf_counter()
    for sid in seq_ids:
        t0 = time.perf_counter()
        counts.add(await call(store.load, sid))
        loads.append(time.perf_counter() - t0)
    load_s = time.perf_counter() - start
    await call(store.close)
    if len(counts) != 1:
        raise RuntimeError(f"{args.worker}: cold histories of {sorted(counts)} messages")
    return {
        "store": args.worker,
        "open_s": store.open_s,
        "cold_load": common.latency_ms(loads),
        "cold_loads_per_s": len(loads) / load_s,
    }


def worker_main(args: argparse.Namespace) -> None:
    store = make_store(args.worker, args)
    path = Path(args.dir)
    if args.phase == "write":
        result = asyncio.run(run_write(store, args, path))
    else:
        result = asyncio.run(run_cold(store, args, path))
    Path(args.out).write_text(json.dumps(result))


def breakdown(args: argparse.Namespace) -> int:
    """Where the facade's time goes: each layer alone, same process, same concurrency.

    Runs in the project's venv, in process: the event log alone (threads calling
    ``SQLiteEventLog.append``), the bare bridge of DESIGN.md (a pykka ThreadingActor per
    session that does nothing but answer through ``actors.bridge.Replies``: the ceiling of
    any command under that architecture), the hub's bridge (``get_session``, no write),
    the facade on ``memory://`` (everything but SQLite), the facade on SQLite, and the
    live load path (``log.read`` alone, then ``Hub.read_events``).
    """
    quiet_structlog()
    from actors.caller import Caller
    from actors.hub import Hub
    from eventlog import NewEvent, open_eventlog

    c, n = args.concurrency, args.messages
    base = Path(args.workdir) if args.workdir else None
    work = Path(tempfile.mkdtemp(prefix="sessionhub-breakdown-", dir=base))
    caller = Caller("bench-user")
    body = {"events": [{"type": "app.message", "data": MESSAGE}]}
    rows: list[list[str]] = []

    async def bare_bridge() -> float:
        import pykka

        from actors.bridge import Replies

        class Echo(pykka.ThreadingActor):
            def on_receive(self, message: Any) -> None:
                put, fut = message
                put(fut, None, None)

        replies = Replies(asyncio.get_running_loop(), 30.0, TimeoutError)
        refs = [Echo.start() for _ in range(c)]

        async def caller_of(ref: pykka.ActorRef) -> None:
            for _ in range(n):
                fut = replies.future()
                ref.tell((replies.put, fut))
                await fut

        start = time.perf_counter()
        await asyncio.gather(*(caller_of(ref) for ref in refs))
        rate = c * n / (time.perf_counter() - start)
        for ref in refs:
            ref.stop()
        return rate

    def log_threads() -> float:
        log = open_eventlog(f"sqlite:///{work / 'log.db'}")
        barrier = threading.Barrier(c + 1)

        def run(k: int) -> None:
            barrier.wait()
            for i in range(n):
                log.append(f"t-{k}", [NewEvent("app.message", dict(MESSAGE))], i)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(c)]
        for t in threads:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        log.close()
        return c * n / elapsed

    async def facade(url: str, op: str) -> float:
        log = open_eventlog(url)
        try:
            async with Hub.running(log) as hub:
                sids = [f"b-{k}" for k in range(c)]
                for sid in sids:
                    await hub.create_session(caller, {"session_id": sid, "agent": {"kind": "none"}})

                async def writer(sid: str) -> None:
                    for _ in range(n):
                        if op == "get":
                            await hub.get_session(caller, sid)
                        else:
                            await hub.append_events(caller, sid, body)

                start = time.perf_counter()
                await asyncio.gather(*(writer(s) for s in sids))
                return c * n / (time.perf_counter() - start)
        finally:
            log.close()

    async def loads(url: str) -> tuple[float, float]:
        log = open_eventlog(url)
        try:
            async with Hub.running(log) as hub:
                await hub.create_session(caller, {"session_id": "l-0", "agent": {"kind": "none"}})
                for _ in range(n):
                    await hub.append_events(caller, "l-0", body)
                rounds = 500
                start = time.perf_counter()
                for _ in range(rounds):
                    log.read("l-0")
                direct = rounds / (time.perf_counter() - start)
                start = time.perf_counter()
                for _ in range(rounds):
                    await hub.read_events(caller, "l-0", {"limit": "10000"})
                return direct, rounds / (time.perf_counter() - start)
        finally:
            log.close()

    try:
        rate = log_threads()
        rows.append([f"SQLiteEventLog.append from {c} threads (no actors, no loop)", rate])
        rate = asyncio.run(bare_bridge())
        rows.append([f"bare pykka actor round trip, {c} tasks (no work: the ceiling)", rate])
        rate = asyncio.run(facade("memory://", "get"))
        rows.append([f"Hub.get_session, {c} tasks (loop -> actor -> loop, no write)", rate])
        rate = asyncio.run(facade("memory://", "append"))
        rows.append([f"Hub.append_events on memory://, {c} tasks (no SQLite)", rate])
        rate = asyncio.run(facade(f"sqlite:///{work / 'hub.db'}", "append"))
        rows.append([f"Hub.append_events on sqlite, {c} tasks (the real path)", rate])
        direct, hub_rate = asyncio.run(loads(f"sqlite:///{work / 'loads.db'}"))
        rows.append([f"log.read of a {n}-event session (decode only)", direct])
        rows.append(["Hub.read_events of the same session (executor + to_api)", hub_rate])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"layers of the facade, {c} concurrent, {n} calls each; ops/s:")
    print(common.markdown_table(["layer", "ops/s"], [[k, common.fmt(v)] for k, v in rows]))
    return 0


# =============================================================================================
# The orchestrator
# =============================================================================================


def fsync_probe(workdir: Path, count: int = 500) -> dict[str, float]:
    """The machine's floor: write 200 bytes + fsync, p50/p99 in microseconds."""
    path = workdir / "fsync-probe.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    lat = []
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            os.write(fd, b"x" * 200)
            os.fsync(fd)
            lat.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return {
        "p50_us": common.percentile(lat, 50) * 1e6,
        "p99_us": common.percentile(lat, 99) * 1e6,
    }


def python_for(store: str) -> str | None:
    if store in PEER_STORES:
        py = common.venv_python(create=True)
        return str(py) if py else None
    return sys.executable


def run_worker(store: str, phase: str, args: argparse.Namespace, path: Path) -> dict[str, Any]:
    python = python_for(store)
    if python is None:
        raise RuntimeError("no bench venv")
    out = path.parent / f"{path.name}-{phase}.json"
    cmd = [python, __file__, "--worker", store, "--phase", phase, "--dir", str(path)]
    cmd += ["--out", str(out), "--sessions", str(args.sessions), "--messages", str(args.messages)]
    cmd += ["--concurrency", str(args.concurrency), "--load-rounds", str(args.load_rounds)]
    cmd += ["--server-log-level", args.server_log_level, "--max-phase-s", str(args.max_phase_s)]
    if args.profile and phase == "write":
        cmd += ["--profile", args.profile]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        raise RuntimeError(" / ".join(tail) or f"exit {proc.returncode}")
    return json.loads(out.read_text())


def collect(runs: list[dict[str, Any]], key: str) -> list[Any]:
    out = []
    for r in runs:
        cur: Any = r
        for part in key.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        out.append(cur)
    return out


def med(runs: list[dict[str, Any]], key: str) -> float:
    return common.median([v for v in collect(runs, key) if isinstance(v, (int, float))])


def summarise(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for name, runs in results.items():
        if not runs:
            continue
        pragmas = runs[0].get("pragmas") or {}
        group = name.startswith("sessionhub")
        dur = common.durability(pragmas, fsync_per_commit=not group)
        if name == "raw-batch100":
            dur = "1 fsync per 100 appends: NOT durable per call"
        elif group:
            dur += ": every ack after its fsync"
        rows.append(
            {
                "store": name,
                "label": LABELS.get(name, name),
                "durability": dur,
                "pragmas": pragmas,
                "reps": len(runs),
                "creates_per_s": med(runs, "creates_per_s"),
                "seq_appends_per_s": med(runs, "seq_appends_per_s"),
                "seq_append_p50_ms": med(runs, "seq_append.p50_ms"),
                "conc_appends_per_s": med(runs, "conc_appends_per_s"),
                "live_load_p50_ms": med(runs, "live_load.p50_ms"),
                "live_load_p99_ms": med(runs, "live_load.p99_ms"),
                "live_loads_per_s": med(runs, "live_loads_per_s"),
                "cold_load_p50_ms": med(runs, "cold.cold_load.p50_ms"),
                "cold_load_p99_ms": med(runs, "cold.cold_load.p99_ms"),
                "cold_loads_per_s": med(runs, "cold.cold_loads_per_s"),
                "cold_open_s": med(runs, "cold.open_s"),
                "bytes_per_msg": med(runs, "bytes_per_msg"),
                "history": min(r.get("history", 0) for r in runs),
                "capped": any(r.get("capped") for r in runs),
                "conc_failed": med(runs, "conc_failed"),
                "conc_error": next((r["conc_error"] for r in runs if r.get("conc_error")), None),
            }
        )
    best: dict[str, float] = {}
    for metric in ("seq_appends_per_s", "conc_appends_per_s", "live_loads_per_s"):
        peers = [r[metric] for r in rows if r["store"] in PEER_STORES and r[metric] == r[metric]]
        best[metric] = max(peers) if peers else float("nan")
    for r in rows:
        for metric, value in best.items():
            r[f"{metric}_x_best_peer"] = r[metric] / value if value == value else float("nan")
    return rows


def render(rows: list[dict[str, Any]], http: dict[str, Any], meta: dict[str, Any]) -> str:
    f = common.fmt
    headers = [
        "store",
        "durability",
        "creates/s",
        "seq appends/s",
        "seq p50 ms",
        f"{meta['params']['concurrency']}-conc appends/s",
        "x best peer",
        "live load p50/p99 ms",
        "live loads/s",
        "x best peer",
        "cold load p50/p99 ms",
        "bytes/msg",
    ]
    table = []
    for r in rows:
        table.append(
            [
                r["label"]
                + (
                    f" (capped at {args_cap(meta)} s: {r['history']} msgs/session)"
                    if r["capped"]
                    else ""
                ),
                r["durability"],
                f(r["creates_per_s"]),
                f(r["seq_appends_per_s"]),
                f(r["seq_append_p50_ms"], 2),
                f(r["conc_appends_per_s"])
                + (f" ({f(r['conc_failed'])} failed*)" if r.get("conc_failed") else ""),
                f(r["conc_appends_per_s_x_best_peer"], 1),
                f"{f(r['live_load_p50_ms'], 2)} / {f(r['live_load_p99_ms'], 2)}",
                f(r["live_loads_per_s"]),
                f(r["live_loads_per_s_x_best_peer"], 1),
                f"{f(r['cold_load_p50_ms'], 2)} / {f(r['cold_load_p99_ms'], 2)}",
                f(r["bytes_per_msg"]),
            ]
        )
    text = [common.markdown_table(headers, table)]
    if http:
        text.append("")
        text.append(
            common.markdown_table(
                ["HTTP, same aiohttp client, same concurrency", "req/s"],
                [
                    ["sessionhub PUT /sessions/{id}/context/{key}", f(http["put_context_rps"])],
                    ["bare aiohttp handler (parse JSON, answer JSON)", f(http["bare_rps"])],
                    ["ratio (target >= 40%)", f"{http['ratio'] * 100:.0f}%"],
                ],
            )
        )
    return "\n".join(text)


def args_cap(meta: dict[str, Any]) -> str:
    return f"{meta['params']['max_phase_s']:g}"


def targets(rows: list[dict[str, Any]], http: dict[str, Any]) -> list[tuple[str, str, str]]:
    by = {r["store"]: r for r in rows}
    out = []
    fac = by.get("sessionhub-facade")
    if fac:
        v = fac["conc_appends_per_s"]
        out.append(
            ("facade durable appends, 64 sessions >= 31,000/s", f"{v:,.0f}/s", at_least(v, 31000))
        )
        v = fac["live_loads_per_s"]
        out.append(("full-history loads >= 6,700/s", f"{v:,.0f}/s", at_least(v, 6700)))
        v = fac["live_load_p99_ms"]
        out.append(("live load p99 < 1 ms", f"{v:.2f} ms", below(v, 1.0)))
        v = fac["cold_load_p99_ms"]
        out.append(("cold load p99 < 5 ms", f"{v:.2f} ms", below(v, 5.0)))
    if http:
        v = http["ratio"] * 100
        out.append(("PUT context >= 40% of bare aiohttp", f"{v:.0f}%", at_least(v, 40)))
    return out


def at_least(value: float, target: float) -> str:
    if value != value:
        return "not measured"
    if value >= target:
        return "met"
    return f"MISSED: {value / target * 100:.0f}% of the target ({target / value:.1f}x short)"


def below(value: float, limit: float) -> str:
    if value != value:
        return "not measured"
    if value < limit:
        return "met"
    return f"MISSED: {value / limit:.1f}x the limit"


def orchestrate(args: argparse.Namespace) -> int:
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    for s in stores:
        if s not in ALL_STORES:
            raise SystemExit(f"unknown store {s!r}; known: {', '.join(ALL_STORES)}")
    base = Path(args.workdir) if args.workdir else None
    work = Path(tempfile.mkdtemp(prefix="sessionhub-peers-", dir=base))
    meta: dict[str, Any] = {
        "machine": common.machine(),
        "fs": common.fs_type(work),
        "params": {
            "sessions": args.sessions,
            "messages": args.messages,
            "message_bytes": 200,
            "concurrency": args.concurrency,
            "reps": args.reps,
            "load_rounds": args.load_rounds,
            "max_phase_s": args.max_phase_s,
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = {}
    if any(s in PEER_STORES for s in stores) and common.venv_python(create=True) is None:
        for s in PEER_STORES:
            skipped[s] = "no bench venv"
    if "sessionhub-http" in stores and common.sessionhub_cli() is None:
        skipped["sessionhub-http"] = "no `sessionhub` console script (run from the project venv)"
    print(f"machine: {meta['machine']}  fs={meta['fs']}  workdir={work}", flush=True)
    meta["loadavg_start"] = os.getloadavg()
    meta["fsync_probe"] = fsync_probe(work)
    print(f"write(200 B)+fsync: {meta['fsync_probe']}", flush=True)

    results: dict[str, list[dict[str, Any]]] = {}
    http_runs: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    try:
        for rep in range(args.reps):
            for store in stores:
                if store in skipped:
                    continue
                path = work / f"{store}-{rep}"
                path.mkdir()
                t0 = time.perf_counter()
                sub_args = argparse.Namespace(**vars(args))
                sub_args.profile = None
                try:
                    written = run_worker(store, "write", sub_args, path)
                    cold = run_worker(store, "cold", sub_args, path)
                except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
                    skipped[store] = f"failed: {str(exc)[-600:]}"
                    print(f"[rep {rep + 1}] {store}: SKIPPED ({skipped[store]})", flush=True)
                    continue
                finally:
                    shutil.rmtree(path, ignore_errors=True)
                for name, row in written["rows"].items():
                    if name == store:
                        row["cold"] = cold
                    results.setdefault(name, []).append(row)
                if "http" in written:
                    http_runs.append(written["http"])
                row = written["rows"][store]
                print(
                    f"[rep {rep + 1}] {store}: {time.perf_counter() - t0:.1f}s "
                    f"seq {row['seq_appends_per_s']:,.0f}/s "
                    f"conc {row['conc_appends_per_s']:,.0f}/s "
                    f"live p50 {row['live_load']['p50_ms']:.2f} ms "
                    f"cold p50 {cold['cold_load']['p50_ms']:.2f} ms",
                    flush=True,
                )
        if args.profile:
            # Profiled runs of sessionhub's hot paths, apart from the measured reps: py-spy's
            # sampling costs a little, so these figures are not part of the table.
            for store in ("sessionhub-facade", "sessionhub-http"):
                if store in stores and store not in skipped:
                    path = work / f"{store}-profile"
                    path.mkdir()
                    try:
                        run_worker(store, "write", args, path)
                        print(f"profiled {store} into {args.profile}", flush=True)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        print(f"profile of {store} failed: {exc}", flush=True)
                    finally:
                        shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    results = {k: v for k, v in results.items() if k not in skipped}
    rows = summarise(results)
    http: dict[str, Any] = {}
    if http_runs:
        http = {k: common.median([r[k] for r in http_runs]) for k in http_runs[0]}
    meta["elapsed_s"] = time.perf_counter() - t_all
    meta["loadavg_end"] = os.getloadavg()
    print()
    print(
        f"{args.sessions} sessions x {args.messages} messages of 200 B, one append per call; "
        f"{args.concurrency} concurrent writers; median of {args.reps} reps; "
        f"{meta['machine']['nproc']} cores, {meta['machine']['ram_gib']} GiB, "
        f"Python {meta['machine']['python']}, SQLite {meta['machine']['sqlite']}, {meta['fs']}"
    )
    print()
    print(render(rows, http, meta))
    print()
    tgt = targets(rows, http)
    print(common.markdown_table(["target (issue 6)", "measured", "verdict"], tgt))
    for r in rows:
        if r.get("conc_error"):
            print(f"* {r['label']}: concurrent appends failed, median {r['conc_failed']:.0f} per")
            print(f"  rep (not counted in its rate), e.g. {r['conc_error']}")
    for store, why in skipped.items():
        print(f"skipped {store}: {why}")
    la0, la1 = meta["loadavg_start"][0], meta["loadavg_end"][0]
    print(f"\ntotal {meta['elapsed_s']:.0f} s; load average {la0:.1f} at start, {la1:.1f} at end")
    if args.profile:
        for path in sorted(Path(args.profile).glob("*.txt")):
            if path.stat().st_size and not path.name.endswith(".summary.txt"):
                text = common.format_profile(path.stem, common.summarise_profile(path))
                path.with_suffix(".summary.txt").write_text(text + "\n")
                print("\n" + text)
    if args.json:
        doc = {"meta": meta, "rows": rows, "http": http, "targets": tgt, "skipped": skipped}
        doc["raw"] = results
        Path(args.json).write_text(json.dumps(doc, indent=1))
        print(f"\nwrote {args.json}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sessions", "-S", type=int, default=50, help="sessions (default 50)")
    p.add_argument("--messages", "-N", type=int, default=200, help="messages per session")
    p.add_argument("--concurrency", "-C", type=int, default=64, help="concurrent writers")
    p.add_argument("--reps", type=int, default=2, help="repetitions (median reported)")
    p.add_argument("--load-rounds", type=int, default=4, help="live loads of each history")
    p.add_argument("--stores", default=",".join(ALL_STORES), help="comma-separated stores")
    p.add_argument("--json", help="write every figure to this JSON file (for plot.py)")
    p.add_argument("--profile", help="py-spy the sessionhub hot paths into this directory")
    p.add_argument("--workdir", help="parent of the temporary directory (same disk matters)")
    p.add_argument(
        "--max-phase-s",
        type=float,
        default=15.0,
        help="stop a slow store's append phase after this many seconds (rate of what it did)",
    )
    p.add_argument("--server-log-level", default="warning", help="sessionhub serve --log-level")
    p.add_argument(
        "--breakdown", action="store_true", help="time each layer of the facade alone, then exit"
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--phase", default="write", help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.bare_server:
        bare_server(args.bare_server)
        return 0
    if args.worker:
        worker_main(args)
        return 0
    if args.breakdown:
        return breakdown(args)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
