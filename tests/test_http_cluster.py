"""HTTP on any node of several works for any session, SSE included: commands and
streamed runs go to the session's owner node over NATS."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from sessionhub.settings import Settings
from tests.http_helpers import free_port, read_sse
from tests.nats_fixtures import NatsCluster, nats_cluster
from tests.test_nats_cluster import node
from transports.http import make_app

__all__ = ["nats_cluster"]


@contextlib.asynccontextmanager
async def http_node(cluster: NatsCluster, prefix: str, node_id: str) -> AsyncIterator[tuple]:
    async with node(cluster, prefix, node_id) as n:
        port = free_port()
        runner = web.AppRunner(make_app(Settings(port=port), n.hub, nats=n.transport))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield n, f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()


async def test_http_on_any_node_serves_any_session(nats_cluster: NatsCluster) -> None:
    """Created over HTTP on A; read, written, run and streamed over HTTP on B, run by A."""
    prefix = f"h{uuid.uuid4().hex[:8]}"
    async with (
        http_node(nats_cluster, prefix, "A") as (a, url_a),
        http_node(nats_cluster, prefix, "B") as (b, url_b),
        aiohttp.ClientSession() as http,
    ):
        async with http.post(f"{url_a}/sessions", json={"session_id": "hx"}) as resp:
            assert resp.status == 201
        async with http.put(f"{url_b}/sessions/hx/context/k", json={"v": 1}) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["version"] == 2
        async with http.post(f"{url_b}/sessions/hx/chats", json={"name": "side"}) as resp:
            assert resp.status == 201, await resp.text()
        async with http.post(f"{url_b}/sessions/hx/run", json={"message": "hi"}) as resp:
            assert (await resp.json())["message"]["content"] == "Echo: hi"
        async with http.post(
            f"{url_b}/sessions/hx/run_stream", json={"message": "one two three"}
        ) as resp:
            assert resp.status == 200
            got = [m async for m in read_sse(resp)]
        types = [m.data["type"] for m in got]
        assert types[0] == "stream_start" and types[-1] == "stream_end", types
        assert got[0].id is not None
        text = "".join(m.data["data"]["content"] for m in got if m.data["type"] == "stream_chunk")
        assert got[-1].data["data"]["complete_text"] == "Echo: one two three (turn 2)"
        assert text == got[-1].data["data"]["complete_text"]
        async with http.get(f"{url_b}/sessions/nope") as resp:
            assert resp.status == 404
        async with http.post(f"{url_b}/sessions/nope/run_stream", json={"message": "x"}) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "session_not_found"
        async with http.get(f"{url_a}/sessions/hx") as resp:
            assert (await resp.json())["message_count"] == 4
        assert a.hub.supervisor.is_live("hx") and not b.hub.supervisor.is_live("hx")
