"""Several sessionhub nodes on one 3-node JetStream cluster (R3 log): commands reach the
session's owner from any node, racing nodes never both append, a node's sessions are
taken over after SIGKILL with every acknowledged write in the log exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats
import pytest
from prometheus_client import REGISTRY

from actors.errors import HubError
from actors.hub import OPERATOR, Hub
from eventlog.backends.jetstream import JetStreamEventLog
from tests.nats_fixtures import CommandClient, NatsCluster, NodeProcess, nats_cluster
from transports.nats import NatsTransport, start_nats_transport

__all__ = ["nats_cluster"]

TTL_S = 2.0


@dataclass
class Node:
    hub: Hub
    log: JetStreamEventLog
    transport: NatsTransport | None


def _log_url(cluster: NatsCluster, prefix: str) -> str:
    hosts = ",".join(u.removeprefix("nats://") for u in cluster.urls)
    return f"jetstream://{hosts}?replicas=3&prefix={prefix}"


@contextlib.asynccontextmanager
async def node(
    cluster: NatsCluster, prefix: str, node_id: str, *, transport: bool = True
) -> AsyncIterator[Node]:
    """One in-process node: a hub on the R3 JetStream log, served over NATS as a cluster."""
    log = JetStreamEventLog.from_url(_log_url(cluster, prefix))
    try:
        async with Hub.running(log) as hub:
            t = None
            if transport:
                t = await start_nats_transport(
                    hub, cluster.url, prefix, None, cluster=True, node_id=node_id,
                    lease_ttl_s=TTL_S, replicas=3,
                )  # fmt: skip
            try:
                yield Node(hub, log, t)
            finally:
                if t is not None:
                    await t.stop()
    finally:
        log.close()


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    """Wait for another node to see a change (it arrives through JetStream)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


@pytest.fixture
def prefix() -> str:
    return f"c{uuid.uuid4().hex[:8]}"


async def test_any_node_serves_any_session_through_its_owner(
    nats_cluster: NatsCluster, prefix: str
) -> None:
    """Created through A, read, written, run and streamed through B: B relays to A."""
    forwarded = REGISTRY.get_sample_value("sessionhub_nats_forwarded_commands_total") or 0
    async with node(nats_cluster, prefix, "A") as a, node(nats_cluster, prefix, "B") as b:
        nc = await nats.connect(servers=nats_cluster.urls)
        try:
            via_a = CommandClient(nc, f"{prefix}.node.A")
            via_b = CommandClient(nc, f"{prefix}.node.B")
            await via_a.ok("session.create", {"session_id": "x1", "name": "made on A"})
            await _until(lambda: b.hub.catalog.owner("x1") is not None)
            assert (await via_b.ok("session.get", {"session_id": "x1"}))["name"] == "made on A"
            await via_b.ok("context.set", {"session_id": "x1", "key": "k", "value": 1})
            reply = await via_b.ok("run", {"session_id": "x1", "message": "hello from B"})
            assert reply["message"]["content"] == "Echo: hello from B"

            seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

            async def on_msg(msg: Any) -> None:
                seen.put_nowait(json.loads(msg.data))

            await nc.subscribe(f"{prefix}.events.x1.>", cb=on_msg)
            await nc.flush()
            started = await via_b.ok(
                "run", {"session_id": "x1", "message": "stream me", "stream": True}
            )
            got: list[dict[str, Any]] = []
            while not {"stream_end", "turn_completed"} <= {g["type"] for g in got}:
                got.append(await asyncio.wait_for(seen.get(), 10))
            assert (
                got[[g["type"] for g in got].index("stream_start")]["data"]["turn_id"]
                == (started["turn_id"])
            )
            text = "".join(g["data"]["content"] for g in got if g["type"] == "stream_chunk")
            assert text.startswith("Echo: stream me")
            seqs = [g["seq"] for g in got if "seq" in g]
            assert len(seqs) == len(set(seqs)) == 2  # each durable event published once

            # the owner runs it all; the other node holds no actor for the session
            assert a.hub.supervisor.is_live("x1") and not b.hub.supervisor.is_live("x1")
            after = REGISTRY.get_sample_value("sessionhub_nats_forwarded_commands_total")
            assert after is not None and after >= forwarded + 4
            read_b = await via_b.ok("events.read", {"session_id": "x1"})
            read_a = await via_a.ok("events.read", {"session_id": "x1"})
            assert read_a == read_b
            assert [e["seq"] for e in read_a["events"]] == list(range(1, read_a["last_seq"] + 1))
        finally:
            await nc.close()


async def test_two_nodes_racing_on_one_session_never_both_append(
    nats_cluster: NatsCluster, prefix: str
) -> None:
    """Both nodes write one session at once, bypassing ownership: the conditional append
    keeps one writer per seq; every acknowledged write is in the log once, no gap."""
    async with (
        node(nats_cluster, prefix, "A", transport=False) as a,
        node(nats_cluster, prefix, "B", transport=False) as b,
    ):
        await a.hub.create_session(OPERATOR, {"session_id": "race"})
        await _until(lambda: b.hub.catalog.owner("race") is not None)
        acked: list[str] = []
        refused = 0

        async def write(n: Node, key: str) -> None:
            nonlocal refused
            try:
                await n.hub.context_set(OPERATOR, "race", key, key)
            except HubError as exc:
                assert exc.code == "version_conflict", exc
                refused += 1
            else:
                acked.append(key)

        writes = [write(n, f"{name}{i}") for i in range(25) for n, name in ((a, "a"), (b, "b"))]
        await asyncio.gather(*writes)
        events = a.log.read("race")
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        stored = [e.data["key"] for e in events if e.type == "context_set"]
        assert sorted(stored) == sorted(acked)  # once each, and nothing unacknowledged
        assert len(acked) + refused == 50
        assert {k[0] for k in acked} == {"a", "b"}  # both nodes did write


async def test_sigkill_of_a_node_its_sessions_are_taken_over(
    nats_cluster: NatsCluster, prefix: str
) -> None:
    """Clients write through A and B; A is SIGKILLed; after A's lease expires B serves
    A's sessions, and every acknowledged write is in the log exactly once, with no gap."""
    a = NodeProcess(nats_cluster.url, _log_url(nats_cluster, prefix), prefix, "A", TTL_S)
    try:
        async with node(nats_cluster, prefix, "B") as b:
            nc = await nats.connect(servers=nats_cluster.urls)
            try:
                await _run_takeover(nc, prefix, a, b)
            finally:
                await nc.close()
    finally:
        a.kill()


async def _run_takeover(nc: Any, prefix: str, a: NodeProcess, b: Node) -> None:
    via = {"A": CommandClient(nc, f"{prefix}.node.A"), "B": CommandClient(nc, f"{prefix}.node.B")}
    sessions = [f"k{i}" for i in range(4)]
    for sid in sessions:
        await via["A"].ok("session.create", {"session_id": sid})
    await _until(lambda: all(b.hub.catalog.owner(s) for s in sessions))
    acked: dict[str, list[str]] = {s: [] for s in sessions}
    statuses: list[int] = []
    killed = asyncio.Event()
    served_after_kill: dict[str, asyncio.Event] = {s: asyncio.Event() for s in sessions}
    stop = asyncio.Event()

    async def writer(entry: str, sid: str) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            key = f"{entry}{i}"
            after_kill = killed.is_set()
            try:
                status, _ = await via[entry].call(
                    "context.set", {"session_id": sid, "key": key, "value": i}, timeout=5
                )
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                status = 0
            if after_kill and entry == "B":
                statuses.append(status)
            if status == 200:
                acked[sid].append(key)
                if after_kill and entry == "B":
                    served_after_kill[sid].set()
            else:
                await asyncio.sleep(0.05)  # a client's back-off before retrying

    tasks = [asyncio.create_task(writer(e, s)) for s in sessions for e in ("A", "B")]
    await _until(lambda: all(len(v) >= 5 for v in acked.values()))
    a.kill()
    killed.set()
    for event in served_after_kill.values():
        await asyncio.wait_for(event.wait(), 15)
    stop.set()
    await asyncio.gather(*tasks)

    # until the takeover B answers "owner unreachable" (503); a command relayed to A just
    # before A died is answered 503 once A's lease is gone (or the client times out)
    assert set(statuses) <= {0, 200, 503}, statuses
    for sid in sessions:
        events = b.log.read(sid)
        assert [e.seq for e in events] == list(range(1, len(events) + 1)), sid
        keys = [e.data["key"] for e in events if e.type == "context_set"]
        assert len(keys) == len(set(keys)), f"{sid}: a write stored twice"
        assert set(acked[sid]) <= set(keys), f"{sid}: an acknowledged write is missing"
        assert b.transport is not None and b.transport.leases is not None
        assert await b.transport.leases.owner(sid, acquire=False) == "B"


async def test_event_stream_on_another_node_sees_the_owners_chunks(
    nats_cluster: NatsCluster, prefix: str
) -> None:
    """B's event stream of a session that A serves (what SSE on B reads) gets the durable
    events and the stream chunks of a turn running on A; B's dispatch() relays to A."""
    async with node(nats_cluster, prefix, "A") as a, node(nats_cluster, prefix, "B") as b:
        assert a.transport is not None and b.transport is not None
        status, _ = await a.transport.dispatch("session.create", {"session_id": "sse"})
        assert status == 201
        await _until(lambda: b.hub.catalog.owner("sse") is not None)
        stream = await b.hub.open_event_stream(OPERATOR, "sse")
        got: list[tuple[str, dict[str, Any]]] = []
        ended = asyncio.Event()

        async def read() -> None:
            # durable events come through JetStream, chunks through the events subjects:
            # the turn's end may overtake its last chunks, so wait for both
            final: str | None = None
            async for sse_id, payload in stream:
                got.append((sse_id, payload))
                if payload.get("type") == "turn_completed":
                    final = payload["data"]["message"]["content"]
                text = "".join(p["data"]["content"] for _, p in got if p["type"] == "stream_chunk")
                if final is not None and text == final:
                    ended.set()
                    return

        reader = asyncio.create_task(read())
        status, started = await b.transport.dispatch(
            "run", {"session_id": "sse", "message": "one two three", "stream": True}
        )
        assert status == 200 and "turn_id" in started  # relayed: 200 stands for success
        await asyncio.wait_for(ended.wait(), 10)
        await stream.aclose()
        reader.cancel()
        types = [p["type"] for _, p in got]
        assert types[0] == "session_created" and "turn_completed" in types
        chunks = [(i, p) for i, p in got if p["type"] == "stream_chunk"]
        assert chunks, types
        turn_seq = next(p["seq"] for _, p in got if p["type"] == "turn_started")
        assert [i for i, _ in chunks] == [f"{turn_seq}.{n}" for n in range(1, len(chunks) + 1)]
        assert "".join(p["data"]["content"] for _, p in chunks).startswith("Echo: one two three")
        assert a.hub.supervisor.is_live("sse") and not b.hub.supervisor.is_live("sse")
        status, body = await b.transport.dispatch("session.get", {"session_id": "nope"})
        assert (status, body["error"]["code"]) == (404, "session_not_found")


async def test_one_session_id_created_on_two_nodes_at_once(
    nats_cluster: NatsCluster, prefix: str
) -> None:
    """Two users create the same session id through two nodes at once: one gets 201,
    the other 409 already_exists, never the other user's session."""
    keys = {"ka": "alice", "kb": "bob"}
    async with node(nats_cluster, prefix, "A") as a, node(nats_cluster, prefix, "B") as b:
        assert a.transport is not None and b.transport is not None
        a.transport.auth = b.transport.auth = type(a.transport.auth)(keys, transport="nats")
        nc = await nats.connect(servers=nats_cluster.urls)
        try:
            for round_ in range(5):
                sid = f"same-{round_}"
                results = await asyncio.gather(
                    CommandClient(nc, f"{prefix}.node.A", "ka").call(
                        "session.create", {"session_id": sid}
                    ),
                    CommandClient(nc, f"{prefix}.node.B", "kb").call(
                        "session.create", {"session_id": sid}
                    ),
                )
                statuses = sorted(status for status, _ in results)
                assert statuses == [200, 409], results
                winner = next(body for status, body in results if status == 200)
                loser_user = "bob" if winner["user_id"] == "alice" else "alice"
                loser = next(body for status, body in results if status == 409)
                assert loser["error"]["code"] == "already_exists"
                assert winner["user_id"] != loser_user
        finally:
            await nc.close()
