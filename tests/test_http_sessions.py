"""Sessions over HTTP: create, read, list, update, close, pause, delete, stats."""

from __future__ import annotations

import asyncio

import pytest

from tests.http_helpers import running_server


@pytest.fixture
async def srv():
    async with running_server() as server:
        yield server


SESSION_FIELDS = {
    "session_id",
    "user_id",
    "name",
    "status",
    "created_at",
    "last_activity_at",
    "expires_at",
    "version",
    "metadata",
    "tags",
    "capabilities",
    "agent",
    "agent_name",
    "agent_type",
    "current_task",
    "current_chat_id",
    "total_requests",
    "total_collaborations",
    "context_entries",
    "chat_count",
    "message_count",
}


async def test_create_with_every_field_returns_the_session_object(srv):
    """POST /sessions answers 201 with the full session object."""
    status, body = await srv.call(
        "POST",
        "/sessions",
        {
            "user_id": "user123",
            "name": "My Work Session",
            "agent": {
                "kind": "echo",
                "model": "gpt-4o-mini",
                "system_prompt": "You are ...",
                "params": {},
            },
            "metadata": {"user": "john"},
            "tags": ["work"],
            "capabilities": ["python", "review"],
            "agent_name": "Cece",
            "agent_type": "Claude",
            "ttl_seconds": 3600,
        },
    )
    assert status == 201, body
    assert set(body) >= SESSION_FIELDS
    assert body["user_id"] == "user123"
    assert body["status"] == "active"
    assert body["current_chat_id"] == "main"
    assert body["expires_at"] is not None and body["expires_at"].endswith("Z")
    assert body["created_at"].endswith("Z")
    assert body["agent"]["kind"] == "echo"
    assert body["tags"] == ["work"] and body["metadata"] == {"user": "john"}
    assert body["version"] >= 1


async def test_create_with_no_body_uses_defaults(srv):
    """Every field of a create is optional, even the body itself."""
    async with srv.client.post(srv.url + "/sessions") as resp:
        assert resp.status == 201
        body = await resp.json()
    assert body["agent"]["kind"] == "echo"
    assert body["chat_count"] == 1 and body["message_count"] == 0


async def test_idempotency_key_returns_the_same_session(srv):
    """A repeated create with the same Idempotency-Key gives back the first session."""
    headers = {"Idempotency-Key": "create-once-1"}
    s1, b1 = await srv.call("POST", "/sessions", {"name": "a"}, headers=headers)
    s2, b2 = await srv.call("POST", "/sessions", {"name": "a"}, headers=headers)
    assert s1 == 201 and s2 in (200, 201)
    assert b1["session_id"] == b2["session_id"]
    _, listing = await srv.call("GET", "/sessions")
    assert listing["total"] == 1


async def test_client_chosen_id_and_already_exists(srv):
    """A client may choose the id; a taken id is 409 already_exists."""
    body = await srv.create(session_id="my.session:1-a_b")
    assert body["session_id"] == "my.session:1-a_b"
    status, err = await srv.call("POST", "/sessions", {"session_id": "my.session:1-a_b"})
    assert status == 409 and err["error"]["code"] == "already_exists"
    for bad in ("", "a/b", "x" * 129, "sp ace", 7):
        status, err = await srv.call("POST", "/sessions", {"session_id": bad})
        assert status == 400, bad
        assert err["error"]["details"]["field"] == "session_id"


async def test_storage_only_session_refuses_runs(srv):
    """agent kind none keeps context and events and answers runs with 409 no_agent."""
    s = await srv.create(agent={"kind": "none"})
    sid = s["session_id"]
    status, _ = await srv.call("PUT", f"/sessions/{sid}/context/k", 1)
    assert status == 200
    status, err = await srv.call("POST", f"/sessions/{sid}/run", {"message": "hi"})
    assert status == 409 and err["error"]["code"] == "no_agent"
    async with srv.client.post(
        f"{srv.url}/sessions/{sid}/run_stream", json={"message": "hi"}
    ) as resp:
        assert resp.status == 409
        assert (await resp.json())["error"]["code"] == "no_agent"


async def test_openai_agent_without_server_is_refused_at_creation(srv):
    """An agent that needs an unconfigured server is 400 invalid_request at create."""
    status, err = await srv.call("POST", "/sessions", {"agent": {"kind": "openai"}})
    assert status == 400 and err["error"]["code"] == "invalid_request"
    status, err = await srv.call("POST", "/sessions", {"agent": {"kind": "no-such-kind"}})
    assert status == 400


async def test_get_and_time_travel(srv):
    """GET /sessions/{id}?at=SEQ is the state after event SEQ; ETag is the version."""
    s = await srv.create(name="v1")
    sid = s["session_id"]
    status, patched = await srv.call("PATCH", f"/sessions/{sid}", {"current_task": "t1"})
    assert status == 200 and patched["current_task"] == "t1"
    async with srv.client.get(f"{srv.url}/sessions/{sid}") as resp:
        now = await resp.json()
        assert resp.headers["ETag"] == f'"{now["version"]}"'
    status, then = await srv.call("GET", f"/sessions/{sid}?at=1")
    assert status == 200
    assert then["current_task"] is None and then["version"] == 1
    for bad in ("abc", "0", "-1", "999"):
        status, err = await srv.call("GET", f"/sessions/{sid}?at={bad}")
        assert status == 400, bad
        assert err["error"]["details"]["field"] == "at"


async def test_list_filters_and_closed_sessions(srv):
    """Listing filters by user, tag, capability, agent_type; closed only when named."""
    a = await srv.create(user_id="u1", tags=["x"], capabilities=["py"], agent_type="A")
    b = await srv.create(user_id="u2", tags=["y"])
    c = await srv.create(user_id="u1")
    status, _ = await srv.call("POST", f"/sessions/{c['session_id']}/close")
    assert status == 200
    _, all_ = await srv.call("GET", "/sessions")
    ids = {s["session_id"] for s in all_["sessions"]}
    assert ids == {a["session_id"], b["session_id"]}
    assert all_["total"] == 2 and "next_cursor" in all_
    _, by_user = await srv.call("GET", "/sessions?user_id=u1")
    assert [s["session_id"] for s in by_user["sessions"]] == [a["session_id"]]
    _, by_tag = await srv.call("GET", "/sessions?tag=y")
    assert [s["session_id"] for s in by_tag["sessions"]] == [b["session_id"]]
    _, by_cap = await srv.call("GET", "/sessions?capability=py")
    assert [s["session_id"] for s in by_cap["sessions"]] == [a["session_id"]]
    _, by_type = await srv.call("GET", "/sessions?agent_type=A")
    assert [s["session_id"] for s in by_type["sessions"]] == [a["session_id"]]
    _, closed = await srv.call("GET", "/sessions?status=closed")
    assert [s["session_id"] for s in closed["sessions"]] == [c["session_id"]]
    status, err = await srv.call("GET", "/sessions?status=bogus")
    assert status == 400 and err["error"]["details"]["field"] == "status"
    status, err = await srv.call("GET", "/sessions?limit=x")
    assert status == 400 and err["error"]["details"]["field"] == "limit"


async def test_list_pages_with_cursor(srv):
    """limit and next_cursor page through every session exactly once."""
    created = {(await srv.create())["session_id"] for _ in range(5)}
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        path = "/sessions?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, page = await srv.call("GET", path)
        assert status == 200
        seen += [s["session_id"] for s in page["sessions"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(created)


async def test_patch_merges_metadata_and_checks_if_match(srv):
    """PATCH merges metadata; a stale If-Match is 409 version_conflict and changes nothing."""
    s = await srv.create(metadata={"a": 1})
    sid, version = s["session_id"], s["version"]
    status, body = await srv.call(
        "PATCH",
        f"/sessions/{sid}",
        {"metadata": {"b": 2}, "tags": ["t"], "status": "working"},
        headers={"If-Match": str(version)},
    )
    assert status == 200, body
    assert body["metadata"] == {"a": 1, "b": 2}
    assert body["tags"] == ["t"] and body["status"] == "working"
    status, err = await srv.call(
        "PATCH", f"/sessions/{sid}", {"current_task": "x"}, headers={"If-Match": str(version)}
    )
    assert status == 409 and err["error"]["code"] == "version_conflict"
    status, _ = await srv.call(
        "PATCH",
        f"/sessions/{sid}",
        {"current_task": "y"},
        headers={"If-Match": f'"{body["version"]}"'},
    )
    assert status == 200
    status, err = await srv.call("PATCH", f"/sessions/{sid}", {"x": 1}, headers={"If-Match": "abc"})
    assert status == 400 and err["error"]["details"]["field"] == "if_match"
    status, err = await srv.call("PATCH", f"/sessions/{sid}", {"status": "closed"})
    assert status == 400 and err["error"]["details"]["field"] == "status"


async def test_close_makes_every_command_409(srv):
    """A closed session is readable, listed with status=closed, and refuses commands."""
    s = await srv.create()
    sid = s["session_id"]
    status, closed = await srv.call("POST", f"/sessions/{sid}/close")
    assert status == 200 and closed["status"] == "closed"
    status, got = await srv.call("GET", f"/sessions/{sid}")
    assert status == 200 and got["status"] == "closed"
    for method, path, body in [
        ("POST", f"/sessions/{sid}/run", {"message": "x"}),
        ("PUT", f"/sessions/{sid}/context/k", 1),
        ("PATCH", f"/sessions/{sid}", {"current_task": "t"}),
        ("POST", f"/sessions/{sid}/chats", {"name": "c"}),
        ("POST", f"/sessions/{sid}/pause", None),
        ("POST", f"/sessions/{sid}/heartbeat", None),
    ]:
        status, err = await srv.call(method, path, body)
        assert status == 409, (method, path, err)
        assert err["error"]["code"] == "session_closed"
    assert (await srv.get(sid))["version"] == closed["version"]


async def test_pause_resume_and_heartbeat(srv):
    """A paused session rejects runs with 409 session_paused until resumed."""
    s = await srv.create()
    sid = s["session_id"]
    status, paused = await srv.call("POST", f"/sessions/{sid}/pause")
    assert status == 200 and paused["status"] == "paused"
    status, err = await srv.call("POST", f"/sessions/{sid}/run", {"message": "x"})
    assert status == 409 and err["error"]["code"] == "session_paused"
    status, resumed = await srv.call("POST", f"/sessions/{sid}/resume")
    assert status == 200 and resumed["status"] == "active"
    await asyncio.sleep(0.01)
    status, beat = await srv.call("POST", f"/sessions/{sid}/heartbeat")
    assert status == 200
    assert beat["last_activity_at"] >= s["last_activity_at"]
    status, _ = await srv.call("POST", f"/sessions/{sid}/run", {"message": "x"})
    assert status == 200


async def test_delete_then_404_and_purge(srv):
    """DELETE answers success; afterwards the API says 404; events stay unless purged."""
    s1 = await srv.create()
    s2 = await srv.create()
    status, body = await srv.call("DELETE", f"/sessions/{s1['session_id']}")
    assert status == 200
    assert body == {"success": True, "message": f"Session {s1['session_id']} deleted"}
    for method, path in [
        ("GET", ""),
        ("GET", "/stats"),
        ("GET", "/events"),
        ("DELETE", ""),
        ("POST", "/close"),
    ]:
        status, err = await srv.call(method, f"/sessions/{s1['session_id']}{path}")
        assert status == 404 and err["error"]["code"] == "session_not_found", path
    assert srv.log.last_seq(s1["session_id"]) > 0
    status, _ = await srv.call("DELETE", f"/sessions/{s2['session_id']}?purge=true")
    assert status == 200
    assert srv.log.last_seq(s2["session_id"]) == 0
    status, err = await srv.call("DELETE", f"/sessions/{s2['session_id']}?purge=maybe")
    assert status == 400


async def test_stats(srv):
    """GET stats has the documented counters."""
    s = await srv.create()
    sid = s["session_id"]
    await srv.call("POST", f"/sessions/{sid}/run", {"message": "one"})
    status, stats = await srv.call("GET", f"/sessions/{sid}/stats")
    assert status == 200
    for name in (
        "total_requests",
        "total_turns",
        "message_count",
        "chat_count",
        "context_entries",
        "events",
        "average_response_ms",
        "created_at",
        "last_activity_at",
    ):
        assert name in stats, name
    assert stats["total_turns"] == 1 and stats["message_count"] == 2
    assert stats["events"] == (await srv.get(sid))["version"]
