"""Every error code of API.md over HTTP, and bad input of every kind changing nothing."""

from __future__ import annotations

import json

import aiohttp
import pytest

from actors.config import HubConfig, Limits
from tests.http_helpers import running_server

ERROR_KEYS = {"code", "message", "details"}


def assert_error(status, body, want_status, code=None, field=None):
    assert status == want_status, (status, body)
    assert set(body) == {"error"}, body
    assert set(body["error"]) == ERROR_KEYS, body
    if code is not None:
        assert body["error"]["code"] == code, body
    if field is not None:
        assert body["error"]["details"].get("field") == field, body


@pytest.fixture
async def srv():
    async with running_server(max_body_bytes=8192) as server:
        yield server


async def test_unknown_path_is_404_not_found(srv):
    """Unknown paths get 404 not_found in the error shape."""
    for path in ("/nope", "/sessions/x/nope", "/sessions/", "/", "/sessions/a/b/c/d/e"):
        status, body = await srv.call("GET", path)
        assert_error(status, body, 404, "not_found")


async def test_wrong_method_is_405_with_allow(srv):
    """A known path with another method is 405 method_not_allowed, with Allow."""
    sid = (await srv.create())["session_id"]
    for method, path in [
        ("PUT", "/sessions"),
        ("DELETE", "/health"),
        ("GET", f"/sessions/{sid}/run"),
        ("POST", f"/sessions/{sid}/context"),
        ("PATCH", "/context"),
    ]:
        async with srv.client.request(method, srv.url + path) as resp:
            body = await resp.json()
            assert_error(resp.status, body, 405, "method_not_allowed")
            assert resp.headers["Allow"]
            assert body["error"]["details"]["allowed"]


BAD_BODIES = [
    (b"{bad", "invalid JSON"),
    (b'{"a": NaN}', "NaN"),
    (b'{"a": Infinity}', "Infinity"),
    (b"[" * 3000 + b"]" * 3000, "deep nesting"),
    (b'{"a": ' + b"9" * 4400 + b"}", "huge integer"),
    (b'{"name": "\\ud800"}', "lone surrogate"),
    (b'{"name": "\xff\xfe"}', "invalid UTF-8"),
    (b'{"a": 1} trailing', "trailing data"),
    (b"[1, 2]", "array"),
    (b'"string"', "string"),
    (b"42", "number"),
    (b"null", "null"),
]


@pytest.mark.parametrize("raw,what", BAD_BODIES, ids=[w for _, w in BAD_BODIES])
async def test_bad_bodies_are_400_and_change_nothing(srv, raw, what):
    """Malformed or non-object bodies are 400 invalid_request on every body route."""
    sid = (await srv.create())["session_id"]
    before = (await srv.get(sid))["version"]
    count = srv.log.count()
    for method, path in [
        ("POST", "/sessions"),
        ("PATCH", f"/sessions/{sid}"),
        ("POST", f"/sessions/{sid}/chats"),
        ("POST", f"/sessions/{sid}/run"),
        ("POST", f"/sessions/{sid}/run_stream"),
        ("POST", f"/sessions/{sid}/cancel"),
        ("POST", f"/sessions/{sid}/events"),
        ("POST", "/context"),
    ]:
        status, body = await srv.call(
            method, path, data=raw, headers={"Content-Type": "application/json"}
        )
        assert_error(status, body, 400, "invalid_request")
    if what in (
        "invalid JSON",
        "NaN",
        "Infinity",
        "lone surrogate",
        "invalid UTF-8",
        "trailing data",
        "huge integer",
        "deep nesting",
    ):
        status, body = await srv.call("PUT", f"/sessions/{sid}/context/k", data=raw)
        assert_error(status, body, 400, "invalid_request", "body")
    assert (await srv.get(sid))["version"] == before
    assert srv.log.count() == count


WRONG_TYPES = [
    ("POST", "/sessions", {"name": 5}, "name"),
    ("POST", "/sessions", {"tags": "work"}, "tags"),
    ("POST", "/sessions", {"tags": [1]}, "tags"),
    ("POST", "/sessions", {"metadata": []}, "metadata"),
    ("POST", "/sessions", {"agent": "echo"}, "agent"),
    ("POST", "/sessions", {"agent": {"kind": 3}}, "agent"),
    ("POST", "/sessions", {"ttl_seconds": "soon"}, "ttl_seconds"),
    ("POST", "/sessions", {"session_id": ["x"]}, "session_id"),
    ("PATCH", "/sessions/{sid}", {"status": "paused"}, "status"),
    ("PATCH", "/sessions/{sid}", {"metadata": 1}, "metadata"),
    ("PATCH", "/sessions/{sid}", {"user_id": "someone"}, "user_id"),
    ("POST", "/sessions/{sid}/chats", {"name": ["x"]}, "name"),
    ("POST", "/sessions/{sid}/chats", {"max_messages": "many"}, "max_messages"),
    ("POST", "/sessions/{sid}/run", {"message": None}, "message"),
    ("POST", "/sessions/{sid}/run", {"message": "x", "stream": "yes"}, "stream"),
    ("POST", "/sessions/{sid}/cancel", {"turn_id": 1}, "turn_id"),
    ("POST", "/sessions/{sid}/events", {"events": [{"type": 1}]}, "events[0].type"),
    ("POST", "/context", {"session_id": "{sid}", "operation": 1}, "operation"),
]


@pytest.mark.parametrize(
    "method,path,body,field", WRONG_TYPES, ids=[f"{m} {p} {f}" for m, p, _, f in WRONG_TYPES]
)
async def test_wrong_types_are_400_naming_the_field(srv, method, path, body, field):
    """Wrong types are 400 invalid_request with details.field, and change nothing."""
    sid = (await srv.create())["session_id"]
    before = (await srv.get(sid))["version"]
    count = srv.log.count()
    body = json.loads(json.dumps(body).replace("{sid}", sid))
    status, out = await srv.call(method, path.replace("{sid}", sid), body)
    assert_error(status, out, 400, "invalid_request", field)
    assert (await srv.get(sid))["version"] == before
    assert srv.log.count() == count


async def test_unknown_ids_are_404(srv):
    """Unknown sessions, chats and keys are 404 with their codes."""
    sid = (await srv.create())["session_id"]
    for method, path, body in [
        ("GET", "/sessions/nope", None),
        ("PATCH", "/sessions/nope", {}),
        ("DELETE", "/sessions/nope", None),
        ("POST", "/sessions/nope/close", None),
        ("POST", "/sessions/nope/pause", None),
        ("POST", "/sessions/nope/resume", None),
        ("POST", "/sessions/nope/heartbeat", None),
        ("GET", "/sessions/nope/stats", None),
        ("GET", "/sessions/nope/context", None),
        ("PUT", "/sessions/nope/context/k", 1),
        ("GET", "/sessions/nope/context/k", None),
        ("DELETE", "/sessions/nope/context/k", None),
        ("POST", "/sessions/nope/chats", {}),
        ("GET", "/sessions/nope/chats", None),
        ("POST", "/sessions/nope/chats/main/switch", None),
        ("DELETE", "/sessions/nope/chats/x", None),
        ("GET", "/sessions/nope/messages", None),
        ("POST", "/sessions/nope/run", {"message": "x"}),
        ("POST", "/sessions/nope/cancel", {}),
        ("GET", "/sessions/nope/events", None),
        ("POST", "/sessions/nope/events", {"events": [{"type": "app.x"}]}),
        ("GET", "/sessions/nope/events/stream", None),
    ]:
        status, out = await srv.call(method, path, body)
        assert_error(status, out, 404, "session_not_found")
    status, out = await srv.call("POST", f"/sessions/{sid}/chats/nope/switch")
    assert_error(status, out, 404, "chat_not_found")
    status, out = await srv.call("DELETE", f"/sessions/{sid}/chats/nope")
    assert_error(status, out, 404, "chat_not_found")
    status, out = await srv.call("GET", f"/sessions/{sid}/context/nope")
    assert_error(status, out, 404, "not_found")


async def test_body_over_the_limit_is_413(srv):
    """A body over max_body_bytes is 413 payload_too_large, announced or chunked."""
    sid = (await srv.create())["session_id"]
    before = (await srv.get(sid))["version"]
    big = json.dumps({"name": "x" * 10_000}).encode()
    status, body = await srv.call("POST", "/sessions", data=big)
    assert_error(status, body, 413, "payload_too_large")
    assert body["error"]["details"]["max"] == 8192

    async def chunks():
        for _ in range(10):
            yield b" " * 1000
        yield b"1"

    async with srv.client.put(f"{srv.url}/sessions/{sid}/context/k", data=chunks()) as resp:
        out = await resp.json()
        assert_error(resp.status, out, 413, "payload_too_large")
    assert (await srv.get(sid))["version"] == before
    _, listing = await srv.call("GET", "/sessions")
    assert listing["total"] == 1


async def test_default_limit_is_one_mebibyte():
    """Without configuration the body limit is 1 MiB."""
    async with running_server() as srv:
        sid = (await srv.create())["session_id"]
        ok = json.dumps("x" * (1024 * 1024 - 100))
        status, _ = await srv.call("PUT", f"/sessions/{sid}/context/k", data=ok)
        assert status in (200, 400, 429)  # accepted by the transport (the hub may cap values)
        too_big = json.dumps("x" * (1024 * 1024 + 10))
        status, body = await srv.call("PUT", f"/sessions/{sid}/context/k", data=too_big)
        assert_error(status, body, 413, "payload_too_large")


async def test_conflicts_are_409(srv):
    """already_exists, version_conflict, session_closed, session_paused, turn_in_progress,
    no_agent: each a 409 with its code."""
    s = await srv.create(session_id="taken")
    status, body = await srv.call("POST", "/sessions", {"session_id": "taken"})
    assert_error(status, body, 409, "already_exists")
    status, body = await srv.call(
        "PATCH", "/sessions/taken", {"tags": []}, headers={"If-Match": str(s["version"] + 5)}
    )
    assert_error(status, body, 409, "version_conflict")
    await srv.call("POST", "/sessions/taken/pause")
    status, body = await srv.call("POST", "/sessions/taken/run", {"message": "x"})
    assert_error(status, body, 409, "session_paused")
    await srv.call("POST", "/sessions/taken/close")
    status, body = await srv.call("PUT", "/sessions/taken/context/k", 1)
    assert_error(status, body, 409, "session_closed")
    none = await srv.create(agent={"kind": "none"})
    status, body = await srv.call("POST", f"/sessions/{none['session_id']}/run", {"message": "x"})
    assert_error(status, body, 409, "no_agent")


async def test_limits_are_429_naming_the_limit():
    """Per-user sessions and context entries over their caps are 429 limit_exceeded."""
    config = HubConfig(limits=Limits(max_sessions_per_user=2, max_context_entries=1))
    async with running_server(hub_config=config) as srv:
        a = await srv.create(user_id="u")
        await srv.create(user_id="u")
        status, body = await srv.call("POST", "/sessions", {"user_id": "u"})
        assert_error(status, body, 429, "limit_exceeded")
        assert body["error"]["details"]["limit"] == "max_sessions_per_user"
        sid = a["session_id"]
        await srv.call("PUT", f"/sessions/{sid}/context/one", 1)
        before = (await srv.get(sid))["version"]
        status, body = await srv.call("PUT", f"/sessions/{sid}/context/two", 2)
        assert_error(status, body, 429, "limit_exceeded")
        assert body["error"]["details"]["limit"] == "max_context_entries"
        assert (await srv.get(sid))["version"] == before


async def test_unavailable_after_the_hub_stops():
    """Once the hub is stopping, commands answer 503 unavailable and health says so."""
    async with running_server() as srv:
        sid = (await srv.create())["session_id"]
        await srv.hub.stop()
        status, body = await srv.call("GET", f"/sessions/{sid}")
        assert_error(status, body, 503, "unavailable")
        status, body = await srv.call("GET", "/health")
        assert status == 503 and body["status"] != "ok"


async def test_unexpected_exception_is_500_in_the_same_shape(srv, monkeypatch):
    """A bug in the server answers 500 internal_error in the error shape."""

    async def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(srv.hub, "session_stats", broken)
    sid = (await srv.create())["session_id"]
    status, body = await srv.call("GET", f"/sessions/{sid}/stats")
    assert_error(status, body, 500, "internal_error")


async def test_event_log_down_is_503(tmp_path):
    """With the event log gone, commands and /health answer 503 unavailable, not 500
    (with no history kept in memory, the events are read from the log too)."""
    async with running_server(
        eventlog=f"sqlite:///{tmp_path}/e.db", hub_config=HubConfig(history_cache_events=0)
    ) as srv:
        sid = (await srv.create())["session_id"]
        srv.log.close()
        for method, path, body in [
            ("PUT", f"/sessions/{sid}/context/k", 1),
            ("GET", f"/sessions/{sid}/events", None),
            ("POST", "/sessions", {}),
            ("GET", "/health", None),
        ]:
            status, out = await srv.call(method, path, body)
            assert_error(status, out, 503, "unavailable")


async def test_query_tricks_never_500(srv):
    """Odd query strings are 400 or ignored, never a 500."""
    sid = (await srv.create())["session_id"]
    for path in [
        "/sessions?limit=99999999999999999999999",
        "/sessions?limit=1e3",
        "/sessions?cursor=%00",
        f"/sessions/{sid}?at=1.5",
        f"/sessions/{sid}/events?after=%2e%2e",
        f"/sessions/{sid}/messages?before=%00",
        f"/sessions/{sid}/messages?limit=1%00",
        f"/sessions/{sid}/events?limit=99999999999999999999999",
        f"/sessions/{sid}?purge=1&at=",
    ]:
        status, body = await srv.call("GET", path)
        assert status < 500, (path, body)
        if status >= 400:
            assert set(body) == {"error"}


async def test_invalid_headers_are_400(srv):
    """A bad Idempotency-Key or If-Match is 400, not 500."""
    sid = (await srv.create())["session_id"]
    status, body = await srv.call("POST", "/sessions", {}, headers={"Idempotency-Key": "x" * 300})
    assert_error(status, body, 400, "invalid_request")
    status, body = await srv.call(
        "POST",
        f"/sessions/{sid}/events",
        {"events": [{"type": "app.x"}]},
        headers={"If-Match": "v1"},
    )
    assert_error(status, body, 400, "invalid_request", "if_match")


async def test_client_errors_leave_the_connection_usable(srv):
    """After a 400, a 404 and a 413 the same client keeps working."""
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as client:
        for _ in range(3):
            async with client.post(srv.url + "/sessions", data=b"{bad") as resp:
                assert resp.status == 400
            async with client.get(srv.url + "/nope") as resp:
                assert resp.status == 404
        async with client.post(srv.url + "/sessions", json={}) as resp:
            assert resp.status == 201


OUT_OF_RANGE = [
    ("POST", "/sessions/{sid}/chats", '{"max_messages": 1e400}', "max_messages"),
    ("POST", "/sessions/{sid}/chats", '{"max_messages": -1e400}', "max_messages"),
    ("POST", "/sessions", '{"ttl_seconds": 1e999}', "ttl_seconds"),
    (
        "PUT",
        "/memory/k",
        '{"session_id": "{sid}", "value": 1, "ttl_seconds": 1e400}',
        "ttl_seconds",
    ),
]


@pytest.mark.parametrize(
    "method,path,raw,field", OUT_OF_RANGE, ids=[f"{m} {p} {f}" for m, p, _, f in OUT_OF_RANGE]
)
async def test_numbers_beyond_a_double_are_400_not_500(srv, method, path, raw, field):
    """A number too large for a float (it parses as infinity) is 400 naming the field."""
    sid = (await srv.create())["session_id"]
    count = srv.log.count()
    status, out = await srv.call(
        method, path.replace("{sid}", sid), data=raw.replace("{sid}", sid).encode()
    )
    assert_error(status, out, 400, "invalid_request", field)
    assert srv.log.count() == count
