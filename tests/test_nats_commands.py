"""The NATS transport against a real nats-server: every command, errors, auth, streamed
runs on the events subjects, and reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from prometheus_client import REGISTRY

from actors.hub import Hub
from eventlog.backends.memory import MemoryEventLog
from tests.nats_fixtures import (
    CommandClient,
    NatsServer,
    nats_server,
    require_nats_server,
)
from transports.commands import COMMANDS
from transports.nats import NatsTransport, start_nats_transport

__all__ = ["nats_server"]

#: The commands API.md "NATS transport" lists.
API_COMMANDS = (
    "session.create",
    "session.get",
    "session.list",
    "session.update",
    "session.close",
    "session.delete",
    "session.pause",
    "session.resume",
    "session.heartbeat",
    "context.set",
    "context.get",
    "context.list",
    "context.delete",
    "chat.create",
    "chat.list",
    "chat.switch",
    "run",
    "cancel",
    "events.read",
    "hub.send",
    "memory.set",
    "memory.get",
    "memory.search",
    "memory.delete",
    "collaboration.start",
    "collaboration.get",
)

KEYS = {"ka": "alice", "kb": "bob", "kop": "*"}


class Served:
    def __init__(self, hub: Hub, transport: NatsTransport, client: CommandClient, nc: Any):
        self.hub = hub
        self.transport = transport
        self.client = client
        self.nc = nc
        self.prefix = transport.prefix


@contextlib.asynccontextmanager
async def _serve(server: NatsServer, keys: dict[str, str] | None) -> AsyncIterator[Served]:
    prefix = f"sh{uuid.uuid4().hex[:8]}"
    async with Hub.running(MemoryEventLog()) as hub:
        transport = await start_nats_transport(hub, server.url, prefix, keys)
        nc = await nats.connect(server.url)
        try:
            yield Served(hub, transport, CommandClient(nc, prefix), nc)
        finally:
            await nc.close()
            await transport.stop()


@pytest.fixture
async def served(nats_server: NatsServer) -> AsyncIterator[Served]:
    """A hub on a memory log served over NATS under a fresh prefix, without API keys."""
    async with _serve(nats_server, None) as s:
        yield s


@pytest.fixture
async def served_auth(nats_server: NatsServer) -> AsyncIterator[Served]:
    """The same with API keys: alice, bob and an operator."""
    async with _serve(nats_server, KEYS) as s:
        yield s


async def test_every_listed_command_round_trips(served: Served) -> None:
    """Each command of API.md that the command layer has answers over NATS like HTTP would."""
    c = served.client
    used: set[str] = set()

    async def ok(name: str, payload: Any = None) -> Any:
        used.add(name)
        return await c.ok(name, payload)

    s = await ok("session.create", {"session_id": "s1", "name": "work", "tags": ["t"]})
    assert (s["session_id"], s["name"], s["status"], s["version"]) == ("s1", "work", "active", 1)
    assert (await ok("session.get", {"session_id": "s1"}))["name"] == "work"
    listing = await ok("session.list", {"tag": "t"})
    assert [x["session_id"] for x in listing["sessions"]] == ["s1"]
    upd = await ok("session.update", {"session_id": "s1", "current_task": "x", "if_match": 1})
    assert upd["current_task"] == "x"
    await ok("session.heartbeat", {"session_id": "s1"})
    assert (await ok("session.pause", {"session_id": "s1"}))["status"] == "paused"
    assert (await ok("session.resume", {"session_id": "s1"}))["status"] == "active"
    put = await ok("context.set", {"session_id": "s1", "key": "k", "value": [1, {"a": 2}]})
    assert (put["key"], put["value"]) == ("k", [1, {"a": 2}])
    assert await ok("context.get", {"session_id": "s1", "key": "k"}) == {
        "key": "k",
        "value": [1, {"a": 2}],
    }
    assert (await ok("context.list", {"session_id": "s1"}))["entries"] == {"k": [1, {"a": 2}]}
    assert (await ok("context.delete", {"session_id": "s1", "key": "k"}))["success"] is True
    chat = await ok("chat.create", {"session_id": "s1", "name": "side"})
    chats = await ok("chat.list", {"session_id": "s1"})
    assert {ch["chat_id"] for ch in chats["chats"]} == {"main", chat["chat_id"]}
    await ok("chat.switch", {"session_id": "s1", "chat_id": chat["chat_id"]})
    reply = await ok("run", {"session_id": "s1", "message": "What is 2+2?"})
    assert reply["message"]["role"] == "assistant" and reply["turn_id"]
    used.add("cancel")
    status, body = await c.call("cancel", {"session_id": "s1"})
    assert status == 409, body  # nothing is running: the same refusal as on HTTP
    events = await ok("events.read", {"session_id": "s1", "type": "session_created"})
    assert [e["seq"] for e in events["events"]] == [1]
    await _collaboration_commands(c, ok)
    assert (await ok("session.close", {"session_id": "s1"}))["status"] == "closed"
    deleted = await ok("session.delete", {"session_id": "s1"})
    assert deleted["success"] is True
    status, _ = await c.call("session.get", {"session_id": "s1"})
    assert status == 404
    supported = [name for name in API_COMMANDS if name in COMMANDS]
    missing = sorted(set(supported) - used)
    assert not missing, f"commands not exercised: {missing}"


async def _collaboration_commands(c: CommandClient, ok: Any) -> None:
    """hub.*, memory.* and collaboration.*, as far as the command layer has them."""
    if "hub.send" in COMMANDS:
        await ok("session.create", {"session_id": "s2"})
        sent = await ok(
            "hub.send",
            {"from_session": "s1", "to_session": "s2", "type": "ping", "subject": "hi",
             "body": "hello"},
        )  # fmt: skip
        assert sent["message_id"] and sent["thread_id"]
    if "memory.set" in COMMANDS:
        put = await ok(
            "memory.set",
            {"key": "task_1", "session_id": "s1", "value": {"x": 1}, "type": "task"},
        )
        assert (put["key"], put["value"]) == ("task_1", {"x": 1})
    if "memory.get" in COMMANDS:
        got = await ok("memory.get", {"key": "task_1", "session_id": "s1"})
        assert got["value"] == {"x": 1}
    if "memory.search" in COMMANDS:
        found = await ok("memory.search", {"pattern": "task_*", "session_id": "s1"})
        assert [e["key"] for e in found["entries"]] == ["task_1"]
    if "memory.delete" in COMMANDS:
        assert (await ok("memory.delete", {"key": "task_1", "session_id": "s1"}))["success"]
    if "collaboration.start" in COMMANDS:
        team = {
            "agents": [{"name": "a", "role": "writer", "agent": {"kind": "echo"}}],
            "strategy": "round_robin",
            "max_rounds": 1,
        }
        started = await ok(
            "collaboration.start", {"session_id": "s1", "team": team, "task": "do it"}
        )
        assert started["collaboration_id"]
        if "collaboration.get" in COMMANDS:
            got = await ok(
                "collaboration.get",
                {"collaboration_id": started["collaboration_id"], "session_id": "s1"},
            )
            assert got["status"] in ("running", "completed")


async def test_errors_carry_the_status_header(served: Served) -> None:
    """Refusals answer the API's error body with Sessionhub-Status; success has no header."""
    c = served.client
    cases: list[tuple[str, Any, bytes | None, int, str]] = [
        ("no.such.command", {}, None, 404, "not_found"),
        ("session.get", {"session_id": "nope"}, None, 404, "session_not_found"),
        ("session.create", None, b"{not json", 400, "invalid_request"),
        ("session.create", None, b"[1, 2]", 400, "invalid_request"),
        ("session.create", {"session_id": "bad id!"}, None, 400, "invalid_request"),
        ("session.create", None, b"{" + b" " * 5000 + b"}", 413, "payload_too_large"),
    ]
    served.transport.max_body_bytes = 4096
    for name, payload, raw, status, code in cases:
        got_status, body = await c.call(name, payload, raw=raw)
        assert (got_status, body["error"]["code"]) == (status, code), (name, body)
        assert set(body["error"]) == {"code", "message", "details"}
    await c.ok("session.create", {"session_id": "dup"})
    status, body = await c.call("session.create", {"session_id": "dup"})
    assert (status, body["error"]["code"]) == (409, "already_exists")
    await c.ok("session.close", {"session_id": "dup"})
    status, body = await c.call("run", {"session_id": "dup", "message": "hi"})
    assert (status, body["error"]["code"]) == (409, "session_closed")
    msg = await served.nc.request(f"{served.prefix}.cmd.session.list", b"", timeout=5)
    assert msg.headers is None or "Sessionhub-Status" not in msg.headers


async def test_auth_is_the_bearer_header_as_on_http(served_auth: Served) -> None:
    """Without a key or with a wrong one: 401; another user's session is a 404."""
    served = served_auth
    c = served.client
    for key in (None, "wrong"):
        status, body = await c.call("session.list", {}, key=key)
        assert (status, body["error"]["code"]) == (401, "unauthorized")
    msg = await served.nc.request(
        f"{served.prefix}.cmd.session.list", b"{}", headers={"Authorization": "Basic x"}
    )
    assert msg.headers["Sessionhub-Status"] == "401"
    mine = await c.ok("session.create", {"name": "a"}, key="ka")
    assert mine["user_id"] == "alice"
    status, body = await c.call("session.get", {"session_id": mine["session_id"]}, key="kb")
    assert (status, body["error"]["code"]) == (404, "session_not_found")
    status, _ = await c.call("session.create", {"user_id": "bob"}, key="ka")
    assert status in (400, 404)
    assert (await c.ok("session.get", {"session_id": mine["session_id"]}, key="kop"))["name"]
    listing = await c.ok("session.list", {}, key="kb")
    assert listing["sessions"] == []


async def test_streamed_run_is_seen_on_the_events_subjects_in_order(served: Served) -> None:
    """run with stream: true answers the turn id at once; its chunks follow in order."""
    c = served.client
    await c.ok("session.create", {"session_id": "st"})
    seen: asyncio.Queue[tuple[str, dict[str, Any], str]] = asyncio.Queue()

    async def on_msg(msg: Any) -> None:
        headers = msg.headers or {}
        seen.put_nowait((msg.subject, json.loads(msg.data), headers.get("Sessionhub-Event-Id")))

    sub = await served.nc.subscribe(f"{served.prefix}.events.st.>", cb=on_msg)
    await served.nc.flush()
    message = "one two three four five six"
    status, body = await c.call("run", {"session_id": "st", "message": message, "stream": True})
    assert status == 200 and set(body) == {"turn_id"}, body
    got: list[tuple[str, dict[str, Any], str]] = []
    while not got or got[-1][1].get("type") != "stream_end":
        got.append(await asyncio.wait_for(seen.get(), 10))
    types = [payload["type"] for _, payload, _ in got]
    framed = [t for t in types if t.startswith("stream_")]
    assert framed[0] == "stream_start" and framed[-1] == "stream_end", types
    assert "turn_started" in types
    chunks = [p for _, p, _ in got if p["type"] == "stream_chunk"]
    assert len(chunks) >= len(message.split())
    assert [ch["data"]["sequence"] for ch in chunks] == list(range(1, len(chunks) + 1))
    end = got[-1][1]
    assert "".join(ch["data"]["content"] for ch in chunks) == end["data"]["complete_text"]
    for subject, payload, _ in got:
        assert subject == f"{served.prefix}.events.st.{payload['type']}"
    start = got[types.index("stream_start")][1]
    assert start["data"]["turn_id"] == body["turn_id"]
    # chunk ids continue the turn's start event: SEQ.N, as on SSE
    turn_seq = next(p["seq"] for _, p, _ in got if p["type"] == "turn_started")
    assert [i for _, p, i in got if p["type"] == "stream_chunk"] == [
        f"{turn_seq}.{n}" for n in range(1, len(chunks) + 1)
    ]
    # the turn's durable end is published too (before or after stream_end)
    while "turn_completed" not in types:
        got.append(await asyncio.wait_for(seen.get(), 10))
        types.append(got[-1][1]["type"])
    done = got[types.index("turn_completed")]
    assert done[2] == str(done[1]["seq"]) == str(turn_seq + 1)
    await sub.unsubscribe()


async def test_durable_events_published_match_events_read(served: Served) -> None:
    """What the events subjects carried for a session is what events.read returns."""
    c = served.client
    seen: list[dict[str, Any]] = []
    target = [10**9]
    done = asyncio.Event()

    async def on_msg(msg: Any) -> None:
        payload = json.loads(msg.data)
        if "seq" in payload:
            seen.append(payload)
        if len(seen) >= target[0]:
            done.set()

    await served.nc.subscribe(f"{served.prefix}.events.ev.>", cb=on_msg)
    await served.nc.flush()
    await c.ok("session.create", {"session_id": "ev"})
    await c.ok("context.set", {"session_id": "ev", "key": "a", "value": 1})
    await c.ok("session.heartbeat", {"session_id": "ev"})
    read = await c.ok("events.read", {"session_id": "ev"})
    target[0] = len(read["events"])
    if len(seen) >= target[0]:
        done.set()
    await asyncio.wait_for(done.wait(), 10)
    assert seen == read["events"]


async def test_reconnect_is_survived_and_counted(tmp_path: Path) -> None:
    """A NATS restart: status goes disconnected then connected, the counter counts it,
    and commands work again afterwards."""
    server = NatsServer(require_nats_server(), tmp_path)
    server.start()

    def reconnects() -> float:
        return REGISTRY.get_sample_value("sessionhub_nats_reconnects_total") or 0.0

    before = reconnects()
    try:
        async with Hub.running(MemoryEventLog()) as hub:
            transport = await start_nats_transport(hub, server.url, "rc")
            try:
                assert hub.nats_status == "connected"
                assert (await hub.health())["nats"] == "connected"
                server.stop()
                await _until(lambda: hub.nats_status == "disconnected")
                server.start()
                await _until(lambda: hub.nats_status == "connected")
                assert reconnects() == before + 1
                nc = await nats.connect(server.url)
                try:
                    client = CommandClient(nc, "rc")
                    created = await client.ok("session.create", {"session_id": "after"})
                    assert created["session_id"] == "after"
                finally:
                    await nc.close()
            finally:
                await transport.stop()
            assert hub.nats_status is None
    finally:
        server.stop()


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    """Wait for a state that nats-py's callbacks set (no event to await from outside)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)
