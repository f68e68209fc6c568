"""One scenario list, run over HTTP and over NATS against two fresh servers: the statuses
and bodies (ids and clocks aside) must be the same, errors and auth included."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats
import pytest

from eventlog.backends.jetstream import JetStreamEventLog
from tests.http_helpers import Server, running_server
from tests.nats_fixtures import CommandClient, NatsServer, nats_server
from transports.nats import start_nats_transport

__all__ = ["nats_server"]

KEYS = {"ka": "alice", "kb": "bob", "kop": "*"}
S = "/sessions/conf"


@dataclass(frozen=True)
class Step:
    """One request, as HTTP (method, path, body, query, headers) and as NATS (command, payload)."""

    http: tuple[str, str, Any, dict[str, str] | None, dict[str, str] | None]
    nats: tuple[str, dict[str, Any]]
    key: str | None = "ka"


def step(
    method: str,
    path: str,
    command: str,
    payload: dict[str, Any],
    body: Any = None,
    *,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    key: str | None = "ka",
) -> Step:
    return Step((method, path, body, query, headers), (command, payload), key)


SID = {"session_id": "conf"}

SCENARIO: list[Step] = [
    step("POST", "/sessions", "session.create", {"session_id": "conf", "name": "c", "tags": ["x"]},
         {"session_id": "conf", "name": "c", "tags": ["x"]}),
    step("POST", "/sessions", "session.create", {"session_id": "conf"}, {"session_id": "conf"}),
    step("POST", "/sessions", "session.create", {"session_id": "bad id"}, {"session_id": "bad id"}),
    step("GET", S, "session.get", SID),
    step("GET", S, "session.get", SID, key="kb"),
    step("GET", S, "session.get", SID, key=None),
    step("GET", S, "session.get", SID, key="nope"),
    step("GET", S, "session.get", SID, key="kop"),
    step("GET", "/sessions", "session.list", {"tag": "x"}, query={"tag": "x"}),
    step("GET", "/sessions", "session.list", {"status": "weird"}, query={"status": "weird"}),
    step("PATCH", S, "session.update", {**SID, "current_task": "t", "if_match": 1},
         {"current_task": "t"}, headers={"If-Match": "1"}),
    step("PATCH", S, "session.update", {**SID, "current_task": "u", "if_match": 1},
         {"current_task": "u"}, headers={"If-Match": "1"}),
    step("PATCH", S, "session.update", {**SID, "status": "paused"}, {"status": "paused"}),
    step("PUT", f"{S}/context/k", "context.set", {**SID, "key": "k", "value": {"a": [1, "é"]}},
         {"a": [1, "é"]}),
    step("PUT", f"{S}/context/n", "context.set", {**SID, "key": "n", "value": 7}, 7),
    step("GET", f"{S}/context/k", "context.get", {**SID, "key": "k"}),
    step("GET", f"{S}/context/missing", "context.get", {**SID, "key": "missing"}),
    step("GET", f"{S}/context", "context.list", SID),
    step("DELETE", f"{S}/context/n", "context.delete", {**SID, "key": "n"}),
    step("POST", f"{S}/chats", "chat.create", {**SID, "chat_id": "side", "name": "Side"},
         {"chat_id": "side", "name": "Side"}),
    step("GET", f"{S}/chats", "chat.list", SID),
    step("POST", f"{S}/chats/side/switch", "chat.switch", {**SID, "chat_id": "side"}),
    step("POST", f"{S}/chats/nope/switch", "chat.switch", {**SID, "chat_id": "nope"}),
    step("POST", f"{S}/run", "run", {**SID, "message": "What is 2+2?"},
         {"message": "What is 2+2?"}),
    step("POST", f"{S}/run", "run", {**SID, "message": "and again"}, {"message": "and again"}),
    step("POST", f"{S}/run", "run", SID, {}),
    step("POST", f"{S}/cancel", "cancel", SID, {}),
    step("GET", f"{S}/events", "events.read", {**SID, "tail": 3}, query={"tail": "3"}),
    step("GET", f"{S}/events", "events.read", {**SID, "type": "turn_completed"},
         query={"type": "turn_completed"}),
    step("GET", f"{S}/events", "events.read", {**SID, "after": "x"}, query={"after": "x"}),
    step("POST", f"{S}/pause", "session.pause", SID, {}),
    step("POST", f"{S}/run", "run", {**SID, "message": "hi"}, {"message": "hi"}),
    step("POST", f"{S}/resume", "session.resume", SID, {}),
    step("POST", f"{S}/heartbeat", "session.heartbeat", SID, {}),
    step("POST", f"{S}/close", "session.close", SID, {}),
    step("POST", f"{S}/run", "run", {**SID, "message": "hi"}, {"message": "hi"}),
    step("GET", "/sessions", "session.list", {"status": "closed"}, query={"status": "closed"}),
    step("DELETE", S, "session.delete", SID),
    step("GET", S, "session.get", SID),
]  # fmt: skip

_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
_ID = re.compile(r"^(msg|evt|turn|cmd|chat)-[0-9a-f]{8,}$|^[0-9a-f]{32}$|^[0-9a-f]{12}-\d+$")
_VOLATILE = {"duration_ms", "average_response_ms", "uptime_s", "message"}


def normalize(value: Any, key: str | None = None) -> Any:
    """Clocks and generated ids replaced by placeholders; everything else kept."""
    if isinstance(value, dict):
        return {
            k: (
                "<text>"
                if k == "message" and isinstance(v, str) and key == "error"
                else normalize(v, k)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [normalize(v, key) for v in value]
    if isinstance(value, str):
        if _TS.match(value):
            return "<time>"
        if _ID.match(value):
            return "<id>"
    if isinstance(value, int | float) and not isinstance(value, bool) and key in _VOLATILE:
        return "<number>"
    return value


@pytest.fixture(params=["memory", "jetstream"])
async def both(
    nats_server: NatsServer, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Server, CommandClient]]:
    """An HTTP server, and a second server of its own served over NATS; same API keys.
    Both on memory logs, or both on JetStream logs (each under its own prefix)."""
    prefix = f"cf{uuid.uuid4().hex[:8]}"
    logs: list[JetStreamEventLog] = []
    if request.param == "jetstream":
        for p in (f"{prefix}h", f"{prefix}n"):
            logs.append(
                JetStreamEventLog.from_url(f"jetstream://127.0.0.1:{nats_server.port}?prefix={p}")
            )
    try:
        async with (
            running_server(api_keys=KEYS, log=logs[0] if logs else None) as http,
            running_server(api_keys=KEYS, log=logs[1] if logs else None) as other,
        ):
            transport = await start_nats_transport(other.hub, nats_server.url, prefix, KEYS)
            nc = await nats.connect(nats_server.url)
            try:
                yield http, CommandClient(nc, prefix)
            finally:
                await nc.close()
                await transport.stop()
    finally:
        for log in logs:
            log.close()


async def _over_http(http: Server, s: Step) -> tuple[int, Any]:
    method, path, body, query, headers = s.http
    if s.key is None:
        async with http.client.request(
            method, http.url + path, json=body, params=query, headers=headers
        ) as resp:
            return resp.status, json.loads(await resp.text())
    return await http.call(method, path, body, key=s.key, headers=headers, params=query)


async def _over_nats(client: CommandClient, s: Step) -> tuple[int, Any]:
    command, payload = s.nats
    if s.key is None:
        msg = await client.nc.request(
            f"{client.prefix}.cmd.{command}", json.dumps(payload).encode(), timeout=10
        )
        return int((msg.headers or {}).get("Sessionhub-Status", "200")), json.loads(msg.data)
    return await client.call(command, payload, key=s.key)


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two normalized bodies differ (for a readable failure)."""
    a, b = normalize(a), normalize(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{path}.{k}")
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _diff(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def _same_status(http_status: int, nats_status: int) -> bool:
    """NATS has no status on success; HTTP's 2xx (200, 201) all read as success."""
    if http_status < 300:
        return nats_status < 300
    return http_status == nats_status


async def test_the_scenario_gives_the_same_results_over_http_and_nats(
    both: tuple[Server, CommandClient],
) -> None:
    """Every step: same status class and same body, modulo ids and clocks."""
    http, client = both
    for i, s in enumerate(SCENARIO):
        h_status, h_body = await _over_http(http, s)
        n_status, n_body = await _over_nats(client, s)
        where = f"step {i}: {s.http[0]} {s.http[1]} / {s.nats[0]}"
        assert _same_status(h_status, n_status), (where, h_status, h_body, n_status, n_body)
        assert normalize(h_body) == normalize(n_body), (where, _diff(h_body, n_body))


async def test_streamed_run_matches_run_stream(both: tuple[Server, CommandClient]) -> None:
    """run_stream over HTTP and run with stream: true over NATS give the same messages."""
    http, client = both
    for over in ("http", "nats"):
        if over == "http":
            await http.create(key="ka", session_id="str")
        else:
            await client.ok("session.create", {"session_id": "str"}, key="ka")
    message = {"message": "the quick brown fox"}
    sse = await http.sse("POST", "/sessions/str/run_stream", message, key="ka")
    over_http = [m.data for m in sse]

    seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_msg(msg: Any) -> None:
        payload = json.loads(msg.data)
        if payload["type"].startswith("stream_"):
            seen.put_nowait(payload)

    sub = await client.nc.subscribe(f"{client.prefix}.events.str.>", cb=on_msg)
    await client.nc.flush()
    reply = await client.ok("run", {"session_id": "str", "stream": True, **message}, key="ka")
    over_nats: list[dict[str, Any]] = []
    while not over_nats or over_nats[-1]["type"] != "stream_end":
        over_nats.append(await asyncio.wait_for(seen.get(), 10))
    await sub.unsubscribe()
    assert over_nats[0]["data"]["turn_id"] == reply["turn_id"]
    assert over_http[0]["type"] == "stream_start"
    assert normalize(over_http) == normalize(over_nats)
