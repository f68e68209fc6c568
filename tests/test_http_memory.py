"""Shared memory over HTTP: set, latest, history, search, delete, TTL, users kept apart."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from types import MappingProxyType

import aiohttp
import pytest
from aiohttp import web

from actors.clock import ManualClock
from actors.config import HubConfig
from actors.hub import Hub
from actors.memory import MEMORY_TYPES
from eventlog import open_eventlog
from sessionhub.settings import Settings
from tests.http_helpers import Server
from transports.http import make_app

KEYS = {"ka": "alice", "kb": "bob", "kop": "*"}


@contextlib.asynccontextmanager
async def clocked_server(clock: ManualClock, **overrides) -> AsyncIterator[Server]:
    """``running_server`` whose hub reads ``clock``, so a test moves time by hand."""
    overrides["api_keys"] = MappingProxyType(dict(overrides.get("api_keys", KEYS)))
    settings = dataclasses.replace(
        Settings(host="127.0.0.1", port=0, eventlog="memory://", shutdown_timeout_s=5.0),
        hub=HubConfig(sweep_interval_s=0),
        **overrides,
    )
    log = open_eventlog("memory://")
    try:
        async with Hub.running(log, settings.hub, clock) as hub:
            runner = web.AppRunner(make_app(settings, hub), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            try:
                async with aiohttp.ClientSession() as client:
                    yield Server(
                        f"http://127.0.0.1:{port}",
                        port,
                        hub,
                        runner.app,
                        client,
                        settings,
                        log,
                        "ka",
                    )
            finally:
                await asyncio.wait_for(runner.cleanup(), 30)
    finally:
        log.close()


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
async def srv(clock):
    async with clocked_server(clock) as server:
        yield server


async def _put(srv, key, body, key_=None, status=200):
    got, out = await srv.call("PUT", f"/memory/{key}", body, key=key_)
    assert got == status, (key, body, got, out)
    return out


def _keys(answer):
    return [e["key"] for e in answer["entries"]]


async def test_set_get_and_history(srv, clock):
    """PUT answers the entry; GET the latest; history every value, oldest first."""
    a, b = (await srv.create())["session_id"], (await srv.create())["session_id"]
    first = await _put(
        srv,
        "project_plan",
        {
            "session_id": a,
            "value": {"phase": "design"},
            "type": "state",
            "tags": ["project", "active"],
        },
    )
    assert first == {
        "key": "project_plan",
        "value": {"phase": "design"},
        "type": "state",
        "tags": ["project", "active"],
        "session_id": a,
        "version": 1,
        "created_at": first["created_at"],
        "expires_at": None,
    }
    assert first["created_at"].endswith("Z")
    clock.advance(5)
    second = await _put(srv, "project_plan", {"session_id": b, "value": {"phase": "build"}})
    assert second["version"] == 2 and second["type"] == "note" and second["tags"] == []
    status, latest = await srv.call("GET", "/memory/project_plan")
    assert status == 200 and latest == second
    status, history = await srv.call("GET", "/memory/project_plan/history")
    assert status == 200 and history["key"] == "project_plan"
    assert history["entries"] == [first, second]
    # Any JSON value can be stored, null included.
    for value in (None, 0, "text", [1, 2], {"nested": {"x": True}}):
        entry = await _put(srv, "anything", {"session_id": a, "value": value})
        assert entry["value"] == value
    _, got = await srv.call("GET", "/memory/anything")
    assert got["value"] == {"nested": {"x": True}} and got["version"] == 5


async def test_every_memory_type_and_search_filters(srv):
    """Search by glob pattern, by tags (all must match), by writing session and by type."""
    a, b = (await srv.create())["session_id"], (await srv.create())["session_id"]
    for type_ in MEMORY_TYPES:
        await _put(srv, f"typed_{type_}", {"session_id": a, "value": type_, "type": type_})
    await _put(srv, "task_1", {"session_id": a, "value": 1, "type": "task", "tags": ["x", "y"]})
    await _put(srv, "task_2", {"session_id": b, "value": 2, "type": "task", "tags": ["x"]})
    await _put(srv, "task_10", {"session_id": b, "value": 10, "type": "task", "tags": ["y"]})
    status, everything = await srv.call("GET", "/memory")
    assert status == 200 and len(everything["entries"]) == len(MEMORY_TYPES) + 3
    assert _keys(everything) == sorted(_keys(everything))
    cases = [
        ({"pattern": "task_*"}, ["task_1", "task_10", "task_2"]),
        ({"pattern": "task_?"}, ["task_1", "task_2"]),
        ({"pattern": "task_[12]"}, ["task_1", "task_2"]),
        ({"pattern": "task_[!1]"}, ["task_2"]),
        ({"pattern": "TASK_*"}, []),
        ({"tags": "x"}, ["task_1", "task_2"]),
        ({"tags": "x,y"}, ["task_1"]),
        ({"tags": "y,x"}, ["task_1"]),
        ({"tags": "x,nope"}, []),
        ({"session_id": b}, ["task_10", "task_2"]),
        ({"type": "task"}, ["task_1", "task_10", "task_2", "typed_task"]),
        ({"type": "decision"}, ["typed_decision"]),
        ({"pattern": "task_*", "tags": "y", "session_id": b, "type": "task"}, ["task_10"]),
    ]
    for query, expected in cases:
        status, found = await srv.call("GET", "/memory", params=query)
        assert status == 200, query
        assert _keys(found) == expected, query


async def test_ttl_expiry_on_the_injected_clock(srv, clock):
    """An entry with ttl_seconds answers until its time is up, then vanishes from reads;
    its history keeps it, and a new value brings the key back."""
    sid = (await srv.create())["session_id"]
    entry = await _put(srv, "lease", {"session_id": sid, "value": "mine", "ttl_seconds": 30})
    assert entry["expires_at"] > entry["created_at"]
    await _put(srv, "forever", {"session_id": sid, "value": 1})
    clock.advance(29)
    status, _ = await srv.call("GET", "/memory/lease")
    assert status == 200
    _, found = await srv.call("GET", "/memory")
    assert _keys(found) == ["forever", "lease"]
    clock.advance(2)
    status, err = await srv.call("GET", "/memory/lease")
    assert status == 404 and err["error"]["code"] == "not_found"
    _, found = await srv.call("GET", "/memory")
    assert _keys(found) == ["forever"]
    status, history = await srv.call("GET", "/memory/lease/history")
    assert status == 200 and [e["value"] for e in history["entries"]] == ["mine"]
    _, stats = await srv.call("GET", "/hub/stats")
    assert stats["memory"]["entries"] == 1
    again = await _put(srv, "lease", {"session_id": sid, "value": "renewed"})
    assert again["version"] == 2 and again["expires_at"] is None
    _, got = await srv.call("GET", "/memory/lease")
    assert got["value"] == "renewed"


async def test_delete_hides_the_key_and_keeps_its_history(srv):
    """DELETE answers success; reads 404 afterwards; history stays; a second delete 404s."""
    sid = (await srv.create())["session_id"]
    await _put(srv, "old_key", {"session_id": sid, "value": 1})
    await _put(srv, "old_key", {"session_id": sid, "value": 2})
    status, body = await srv.call("DELETE", "/memory/old_key")
    assert status == 200 and body == {"success": True}
    status, _ = await srv.call("GET", "/memory/old_key")
    assert status == 404
    _, found = await srv.call("GET", "/memory")
    assert found["entries"] == []
    _, history = await srv.call("GET", "/memory/old_key/history")
    assert [e["value"] for e in history["entries"]] == [1, 2]
    status, err = await srv.call("DELETE", "/memory/old_key")
    assert status == 404 and err["error"]["code"] == "not_found"
    status, _ = await srv.call("DELETE", "/memory/never_set")
    assert status == 404
    status, _ = await srv.call("GET", "/memory/never_set/history")
    assert status == 404


async def test_users_are_kept_apart(srv):
    """Each user has its own memory; naming another user's session is 404, never honoured."""
    alice = (await srv.create())["session_id"]
    bob = (await srv.create(key="kb"))["session_id"]
    await _put(srv, "plan", {"session_id": alice, "value": "alice's"})
    await _put(srv, "plan", {"session_id": bob, "value": "bob's"}, key_="kb")
    _, mine = await srv.call("GET", "/memory/plan")
    _, his = await srv.call("GET", "/memory/plan", key="kb")
    assert mine["value"] == "alice's" and his["value"] == "bob's"
    assert mine["version"] == his["version"] == 1
    # Bob cannot write with, read through or search by alice's session.
    err = await _put(srv, "plan", {"session_id": alice, "value": "x"}, key_="kb", status=404)
    assert err["error"]["code"] == "session_not_found"
    for path in (
        f"/memory/plan?session_id={alice}",
        f"/memory/plan/history?session_id={alice}",
        f"/memory?session_id={alice}",
        f"/memory/plan?session_id={alice}&user_id=alice",
    ):
        status, err = await srv.call("GET", path, key="kb")
        assert status == 404 and err["error"]["code"] == "session_not_found", path
    status, _ = await srv.call("DELETE", f"/memory/plan?session_id={alice}", key="kb")
    assert status == 404
    # A user_id in the query does not let bob read alice's memory: his own answers.
    _, his = await srv.call("GET", "/memory/plan?user_id=alice", key="kb")
    assert his["value"] == "bob's"
    _, his_history = await srv.call("GET", "/memory/plan/history", key="kb")
    assert [e["value"] for e in his_history["entries"]] == ["bob's"]
    # Alice's delete leaves bob's key alone.
    await srv.call("DELETE", "/memory/plan")
    _, his = await srv.call("GET", "/memory/plan", key="kb")
    assert his["value"] == "bob's"
    # An operator names the user with a session of theirs.
    status, theirs = await srv.call("GET", f"/memory/plan?session_id={bob}", key="kop")
    assert status == 200 and theirs["value"] == "bob's"
    async with srv.client.get(f"{srv.url}/memory/plan") as resp:
        assert resp.status == 401
    status, err = await srv.call("PUT", "/memory/plan", {"session_id": bob, "value": 1}, key="no")
    assert status == 401 and err["error"]["code"] == "unauthorized"


async def test_bad_requests(srv):
    """Bad types, missing fields, bad patterns and bad bodies are 400 and change nothing."""
    sid = (await srv.create())["session_id"]
    closed = (await srv.create())["session_id"]
    await srv.call("POST", f"/sessions/{closed}/close")
    cases = [
        ({"session_id": sid}, "value"),
        ({"value": 1}, "session_id"),
        ({"session_id": 5, "value": 1}, "session_id"),
        ({"session_id": [sid], "value": 1}, "session_id"),
        ({"session_id": sid, "value": 1, "type": "bogus"}, "type"),
        ({"session_id": sid, "value": 1, "type": 3}, "type"),
        ({"session_id": sid, "value": 1, "tags": "x"}, "tags"),
        ({"session_id": sid, "value": 1, "tags": [1]}, "tags"),
        ({"session_id": sid, "value": 1, "ttl_seconds": "10"}, "ttl_seconds"),
        ({"session_id": sid, "value": 1, "ttl_seconds": 0}, "ttl_seconds"),
        ({"session_id": sid, "value": 1, "ttl_seconds": -5}, "ttl_seconds"),
        ({"session_id": sid, "value": 1, "ttl_seconds": True}, "ttl_seconds"),
    ]
    for body, field in cases:
        err = await _put(srv, "k", body, status=400)
        assert err["error"]["code"] == "invalid_request", body
        assert err["error"]["details"]["field"] == field, body
    for raw in ("[1]", "{bad json", "", '"text"'):
        status, err = await srv.call(
            "PUT", "/memory/k", data=raw, headers={"Content-Type": "application/json"}
        )
        assert status == 400, raw
    err = await _put(srv, "k", {"session_id": "nope", "value": 1}, status=404)
    assert err["error"]["code"] == "session_not_found"
    err = await _put(srv, "k", {"session_id": closed, "value": 1}, status=409)
    assert err["error"]["code"] == "session_closed"
    for query, field in [
        ("pattern=task_[1", "pattern"),
        ("pattern=a]", "pattern"),
        ("pattern=[[a]]", "pattern"),
        ("pattern=a/b", "pattern"),
        ("pattern=" + "a" * 300, "pattern"),
        ("type=bogus", "type"),
    ]:
        status, err = await srv.call("GET", f"/memory?{query}")
        assert status == 400, query
        assert err["error"]["details"]["field"] == field, query
    status, err = await srv.call("GET", "/memory?session_id=nope")
    assert status == 404
    _, found = await srv.call("GET", "/memory")
    assert found["entries"] == []
    status, err = await srv.call("POST", "/memory/k")
    assert status == 405


async def test_path_tricks_in_keys_are_refused(srv):
    """Keys are letters, digits and _-.:@ only: dot segments, slashes, encoded slashes,
    leading dots and overlong keys are 400 (or no route), never another key."""
    sid = (await srv.create())["session_id"]
    await _put(srv, "secret", {"session_id": sid, "value": "s"})
    for raw in (
        "/memory/..%2Fsecret",
        "/memory/%2E%2E",
        "/memory/.hidden",
        "/memory/a%2Fb",
        "/memory/a%5Cb",
        "/memory/a%00b",
        "/memory/%20",
        "/memory/" + "k" * 257,
    ):
        status, body = await _raw(
            srv, "PUT", raw, b'{"session_id": "%s", "value": 1}' % sid.encode()
        )
        assert status in (400, 404), (raw, status, body)
        status, body = await _raw(srv, "GET", raw)
        assert status in (400, 404), (raw, status, body)
        assert b'"value":"s"' not in body, raw
    for raw in ("/memory/../memory/secret", "/memory/x/../secret", "/memory/secret/../secret"):
        status, body = await _raw(srv, "DELETE", raw)
        assert status in (400, 404), (raw, status, body)
    _, history = await srv.call("GET", "/memory/secret/history")
    assert [e["value"] for e in history["entries"]] == ["s"]
    _, found = await srv.call("GET", "/memory")
    assert _keys(found) == ["secret"]
    # Every allowed character works and reads back as set.
    key = "a-Z_0.9:x@y"
    await _put(srv, key, {"session_id": sid, "value": 1})
    status, got = await srv.call("GET", f"/memory/{key}")
    assert status == 200 and got["key"] == key


async def _raw(srv, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 request with the target sent byte for byte (no client normalisation)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ka\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status = int(response.split(b" ", 2)[1])
    return status, response.split(b"\r\n\r\n", 1)[-1]
