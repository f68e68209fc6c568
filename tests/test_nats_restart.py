"""A restart of the NATS server under load: clients of a server whose event log is
JetStream see 503s while NATS is down, then recovery, and nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats

from eventlog.backends.jetstream import JetStreamEventLog
from tests.http_helpers import running_server
from tests.nats_fixtures import CommandClient, NatsServer, require_nats_server
from transports.nats import start_nats_transport


async def test_restart_of_nats_under_load(tmp_path: Path) -> None:
    """HTTP writers keep going through a NATS stop/start: 503 while down, 200 after, and
    every acknowledged write is in the log once; the NATS transport comes back too."""
    server = NatsServer(require_nats_server(), tmp_path)
    server.start()
    log = JetStreamEventLog.from_url(f"jetstream://127.0.0.1:{server.port}?prefix=rs&timeout=2")
    try:
        async with running_server(log=log) as srv:
            transport = await start_nats_transport(srv.hub, server.url, "rs")
            try:
                await _under_load(srv, server, transport.prefix)
            finally:
                await transport.stop()
    finally:
        log.close()
        server.stop()


async def _under_load(srv: object, server: NatsServer, prefix: str) -> None:
    from tests.http_helpers import Server

    assert isinstance(srv, Server)
    sessions = [f"r{i}" for i in range(4)]
    for sid in sessions:
        await srv.create(session_id=sid)
    acked: dict[str, list[str]] = {s: [] for s in sessions}
    statuses: dict[str, list[int]] = {"before": [], "down": [], "after": []}
    phase = ["before"]
    recovered = {s: asyncio.Event() for s in sessions}
    stop = asyncio.Event()

    async def writer(sid: str) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            key = f"w{i}"
            current = phase[0]
            status, body = await srv.call("PUT", f"/sessions/{sid}/context/{key}", {"i": i})
            statuses[phase[0]].append(status)  # the phase the answer came in
            if status == 200:
                acked[sid].append(key)
                if current == "after":
                    recovered[sid].set()
            else:
                assert status == 503, (status, body)
                await asyncio.sleep(0.02)  # a client's back-off before retrying

    tasks = [asyncio.create_task(writer(s)) for s in sessions]
    while sum(map(len, acked.values())) < 40:
        await asyncio.sleep(0.01)
    phase[0] = "down"
    server.stop()
    while statuses["down"].count(503) < 8:
        await asyncio.sleep(0.01)
    server.start()
    phase[0] = "after"
    for event in recovered.values():
        await asyncio.wait_for(event.wait(), 15)
    stop.set()
    await asyncio.gather(*tasks)

    assert set(statuses["before"]) == {200}  # answered before the stop
    assert 503 in statuses["down"]
    for sid in sessions:
        status, body = await srv.call("GET", f"/sessions/{sid}/events")
        assert status == 200
        seqs = [e["seq"] for e in body["events"]]
        assert seqs == list(range(1, len(seqs) + 1))
        keys = [e["data"]["key"] for e in body["events"] if e["type"] == "context_set"]
        assert len(keys) == len(set(keys)), f"{sid}: a write stored twice"
        assert set(acked[sid]) <= set(keys), f"{sid}: an acknowledged write was lost"

    # the NATS transport reconnected as well
    deadline = asyncio.get_running_loop().time() + 10
    while srv.hub.nats_status != "connected":
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    nc = await nats.connect(server.url)
    try:
        got = await CommandClient(nc, prefix).ok("session.get", {"session_id": sessions[0]})
        assert got["version"] >= len(acked[sessions[0]]) + 1
    finally:
        await nc.close()
