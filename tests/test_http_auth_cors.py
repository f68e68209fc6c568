"""API keys, isolation between users, the operator key, the bind rule, and CORS."""

from __future__ import annotations

import pytest

from sessionhub.settings import Settings, SettingsError, load_settings
from tests.http_helpers import read_sse, running_server

KEYS = {"key-alice": "alice", "key-bob": "bob", "key-op": "*"}


@pytest.fixture
async def srv():
    async with running_server(api_keys=KEYS) as server:
        yield server


async def test_missing_or_wrong_key_is_401(srv):
    """With keys configured, every route but /health and /metrics needs a valid key."""
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic a2V5"},
        {"Authorization": "Bearer"},
        {"Authorization": "key-alice"},
    ):
        for method, path in [
            ("GET", "/sessions"),
            ("POST", "/sessions"),
            ("GET", "/sessions/x"),
            ("GET", "/openapi.json"),
            ("GET", "/sessions/x/events/stream"),
        ]:
            async with srv.client.request(method, srv.url + path, headers=headers) as resp:
                assert resp.status == 401, (method, path, headers)
                body = await resp.json()
                assert body["error"]["code"] == "unauthorized"
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    status, _ = await srv.call("GET", "/health")
    assert status == 200
    async with srv.client.get(srv.url + "/metrics") as resp:
        assert resp.status == 200


async def test_users_see_only_their_own_sessions(srv):
    """Another user's session is a 404 on every route; listings are per user."""
    a = await srv.create(key="key-alice", name="alice's")
    assert a["user_id"] == "alice"
    b = await srv.create(key="key-bob")
    sid = a["session_id"]
    await srv.call("PUT", f"/sessions/{sid}/context/secret", "s3cr3t", key="key-alice")
    version = (await srv.get(sid, key="key-alice"))["version"]
    for method, path, body in [
        ("GET", "", None),
        ("PATCH", "", {"tags": ["x"]}),
        ("DELETE", "", None),
        ("POST", "/close", None),
        ("POST", "/pause", None),
        ("POST", "/heartbeat", None),
        ("GET", "/stats", None),
        ("GET", "/context", None),
        ("GET", "/context/secret", None),
        ("PUT", "/context/secret", "mine"),
        ("DELETE", "/context/secret", None),
        ("GET", "/chats", None),
        ("POST", "/chats", {}),
        ("GET", "/messages", None),
        ("POST", "/run", {"message": "x"}),
        ("POST", "/run_stream", {"message": "x"}),
        ("POST", "/cancel", {}),
        ("GET", "/events", None),
        ("POST", "/events", {"events": [{"type": "app.x"}]}),
        ("GET", "/events/stream", None),
        ("GET", "/ws", None),
    ]:
        status, out = await srv.call(method, f"/sessions/{sid}{path}", body, key="key-bob")
        assert status == 404, (method, path, out)
        assert out["error"]["code"] == "session_not_found"
    status, out = await srv.call(
        "POST", "/context", {"session_id": sid, "operation": "load", "key": "secret"}, key="key-bob"
    )
    assert status == 404
    assert (await srv.get(sid, key="key-alice"))["version"] == version
    _, mine = await srv.call("GET", "/sessions", key="key-bob")
    assert [s["session_id"] for s in mine["sessions"]] == [b["session_id"]]
    status, out = await srv.call("GET", "/sessions?user_id=alice", key="key-bob")
    assert status in (400, 404) or out["sessions"] == []


async def test_body_user_id_differing_from_the_caller_is_refused(srv):
    """A create naming another user_id is 400/404, never honoured."""
    status, out = await srv.call("POST", "/sessions", {"user_id": "bob"}, key="key-alice")
    assert status in (400, 404) and "error" in out
    _, listing = await srv.call("GET", "/sessions", key="key-op")
    assert listing["total"] == 0
    s = await srv.create(key="key-alice", user_id="alice")
    assert s["user_id"] == "alice"


async def test_operator_sees_everything(srv):
    """The * key is an operator: every user's sessions."""
    a = await srv.create(key="key-alice")
    b = await srv.create(key="key-bob")
    _, listing = await srv.call("GET", "/sessions", key="key-op")
    assert {s["session_id"] for s in listing["sessions"]} == {a["session_id"], b["session_id"]}
    status, _ = await srv.call("GET", f"/sessions/{a['session_id']}", key="key-op")
    assert status == 200
    _, by_user = await srv.call("GET", "/sessions?user_id=bob", key="key-op")
    assert [s["session_id"] for s in by_user["sessions"]] == [b["session_id"]]


async def test_access_token_query_for_browser_streams(srv):
    """EventSource and WebSocket clients may pass the key as ?access_token=."""
    sid = (await srv.create(key="key-alice"))["session_id"]
    url = f"{srv.url}/sessions/{sid}/events/stream?access_token=key-alice"
    async with srv.client.get(url) as resp:
        assert resp.status == 200
        async for message in read_sse(resp):
            assert message.id == "1"
            break
    async with srv.client.get(f"{srv.url}/sessions/{sid}/events/stream?access_token=key-bob") as r:
        assert r.status == 404
    async with srv.client.ws_connect(f"{srv.url}/sessions/{sid}/ws?access_token=key-alice") as ws:
        await ws.send_json({"type": "ping"})
        assert (await ws.receive_json(timeout=5))["type"] == "pong"


async def test_open_server_without_keys():
    """Without keys the server is open: no Authorization needed, everything visible."""
    async with running_server() as srv:
        s = await srv.create(user_id="u1")
        status, _ = await srv.call("GET", f"/sessions/{s['session_id']}")
        assert status == 200


def test_non_loopback_bind_needs_keys_or_insecure():
    """An open server refuses a non-loopback address unless --insecure."""
    Settings(host="127.0.0.1").check_bind()
    Settings(host="::1").check_bind()
    Settings(host="localhost").check_bind()
    with pytest.raises(SettingsError):
        Settings(host="0.0.0.0").check_bind()
    with pytest.raises(SettingsError):
        load_settings({"host": "192.168.1.5"}, {}).check_bind()
    load_settings({"host": "0.0.0.0", "insecure": True}, {}).check_bind()
    load_settings({"host": "0.0.0.0"}, {"SESSIONHUB_API_KEYS": "k=alice"}).check_bind()


ORIGIN = "https://app.example"


async def test_cors_off_by_default():
    """Without --cors-origins no CORS headers, and a preflight is not answered."""
    async with running_server() as srv:
        async with srv.client.get(srv.url + "/sessions", headers={"Origin": ORIGIN}) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers
        async with srv.client.options(
            srv.url + "/sessions",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
        ) as resp:
            assert resp.status == 405
            assert "Access-Control-Allow-Origin" not in resp.headers


async def test_cors_allows_configured_origins_everywhere():
    """Allowed origins get CORS headers on every route, errors and SSE included."""
    async with running_server(api_keys=KEYS, cors_origins=(ORIGIN, "http://127.0.0.1:3000")) as srv:
        async with srv.client.options(
            f"{srv.url}/sessions/x/context/k",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "authorization, content-type, if-match",
            },
        ) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
            assert set(resp.headers["Access-Control-Allow-Methods"].split(", ")) >= {
                "PUT",
                "GET",
                "DELETE",
            }
            allowed = {
                h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")
            }
            assert allowed >= {
                "authorization",
                "content-type",
                "idempotency-key",
                "if-match",
                "last-event-id",
            }
        headers = {"Origin": ORIGIN, "Authorization": "Bearer key-alice"}
        async with srv.client.post(srv.url + "/sessions", json={}, headers=headers) as resp:
            assert resp.status == 201
            assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
            assert "Origin" in resp.headers["Vary"]
            sid = (await resp.json())["session_id"]
        async with srv.client.get(srv.url + "/nope", headers=headers) as resp:
            assert resp.status == 404
            assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
        async with srv.client.get(srv.url + "/sessions", headers={"Origin": ORIGIN}) as resp:
            assert resp.status == 401
            assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
        async with srv.client.get(
            f"{srv.url}/sessions/{sid}/events/stream", headers=headers
        ) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
        async with srv.client.post(
            f"{srv.url}/sessions/{sid}/run_stream", json={"message": "x"}, headers=headers
        ) as resp:
            assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
            await resp.read()
        async with srv.client.get(
            srv.url + "/sessions",
            headers={"Origin": "https://evil.example", "Authorization": "Bearer key-alice"},
        ) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers
        async with srv.client.options(
            srv.url + "/sessions",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        ) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers
