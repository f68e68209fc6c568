"""The context store, the four-in-one POST /context, chats and messages over HTTP."""

from __future__ import annotations

import pytest

from tests.http_helpers import running_server


@pytest.fixture
async def srv():
    async with running_server() as server:
        yield server


@pytest.fixture
async def sid(srv):
    return (await srv.create())["session_id"]


@pytest.mark.parametrize(
    "value", [{"a": [1, 2, {"b": None}]}, [1, "x"], "text", 42, 1.5, True, None]
)
async def test_context_holds_any_json_value(srv, sid, value):
    """PUT takes any JSON value and GET gives it back."""
    status, body = await srv.call(
        "PUT",
        f"/sessions/{sid}/context/key-1",
        data=_json(value),
        headers={"Content-Type": "application/json"},
    )
    assert status == 200, body
    assert body["key"] == "key-1" and body["value"] == value and isinstance(body["version"], int)
    status, body = await srv.call("GET", f"/sessions/{sid}/context/key-1")
    assert status == 200 and body == {"key": "key-1", "value": value}


async def test_context_list_and_delete(srv, sid):
    """List shows every entry; DELETE removes one; a missing key is 404 not_found."""
    await srv.call("PUT", f"/sessions/{sid}/context/a", 1)
    await srv.call("PUT", f"/sessions/{sid}/context/b.c:d@e", {"x": 1})
    status, body = await srv.call("GET", f"/sessions/{sid}/context")
    assert status == 200 and body == {"entries": {"a": 1, "b.c:d@e": {"x": 1}}}
    status, body = await srv.call("DELETE", f"/sessions/{sid}/context/a")
    assert status == 200 and body["success"] is True
    status, err = await srv.call("GET", f"/sessions/{sid}/context/a")
    assert status == 404 and err["error"]["code"] == "not_found"
    status, err = await srv.call("DELETE", f"/sessions/{sid}/context/a")
    assert status == 404


async def test_context_is_isolated_per_session(srv, sid):
    """One session's context is not visible in another."""
    other = (await srv.create())["session_id"]
    await srv.call("PUT", f"/sessions/{sid}/context/shared", "mine")
    status, _ = await srv.call("GET", f"/sessions/{other}/context/shared")
    assert status == 404
    _, body = await srv.call("GET", f"/sessions/{other}/context")
    assert body == {"entries": {}}


async def test_empty_put_body_is_400(srv, sid):
    """PUT context needs a JSON value."""
    status, err = await srv.call("PUT", f"/sessions/{sid}/context/k", data=b"")
    assert status == 400 and err["error"]["details"]["field"] == "body"


@pytest.mark.parametrize(
    "path",
    ["%2e%2e", "..", ".hidden", "%2E%2E%2Fx", "a%2Fb", "a%00b", "sp%20ace", "x" * 300, "%C3%A9"],
)
async def test_path_tricks_in_keys_are_refused_and_change_nothing(srv, sid, path):
    """Keys with dot-segments, slashes, NULs or odd characters are 400/404, never stored."""
    before = (await srv.get(sid))["version"]
    async with srv.client.put(f"{srv.url}/sessions/{sid}/context/{path}", json=1) as resp:
        assert resp.status in (400, 404), (path, resp.status)
        body = await resp.json()
        assert body["error"]["code"] in ("invalid_request", "not_found", "session_not_found")
    assert (await srv.get(sid))["version"] == before
    _, entries = await srv.call("GET", f"/sessions/{sid}/context")
    assert entries == {"entries": {}}


async def test_dot_dot_in_the_url_never_escapes_the_session(srv, sid):
    """``context/../x`` is normalised by the router or refused, never a context write."""
    other = (await srv.create())["session_id"]
    before = (await srv.get(other))["version"]
    import yarl

    url = yarl.URL(f"{srv.url}/sessions/{sid}/context/../../{other}/context/x", encoded=True)
    async with srv.client.put(url, json=1) as resp:
        assert resp.status in (400, 404, 405)
    assert (await srv.get(other))["version"] == before
    assert (await srv.get(sid))["context_entries"] == 0


async def test_post_context_four_operations(srv, sid):
    """POST /context save/load/list/delete answer what their routes answer."""
    status, saved = await srv.call(
        "POST", "/context", {"session_id": sid, "operation": "save", "key": "k", "data": {"v": 1}}
    )
    assert status == 200 and saved["key"] == "k" and saved["value"] == {"v": 1}
    assert "version" in saved
    status, loaded = await srv.call(
        "POST", "/context", {"session_id": sid, "operation": "load", "key": "k"}
    )
    assert status == 200 and loaded == {"key": "k", "value": {"v": 1}}
    status, listed = await srv.call("POST", "/context", {"session_id": sid, "operation": "list"})
    assert status == 200 and listed == {"entries": {"k": {"v": 1}}}
    status, deleted = await srv.call(
        "POST", "/context", {"session_id": sid, "operation": "delete", "key": "k"}
    )
    assert status == 200 and deleted["success"] is True
    status, err = await srv.call(
        "POST", "/context", {"session_id": sid, "operation": "load", "key": "k"}
    )
    assert status == 404
    for bad, field in [
        ({"session_id": sid, "operation": "frobnicate"}, "operation"),
        ({"session_id": sid}, "operation"),
        ({"operation": "list"}, "session_id"),
        ({"session_id": 5, "operation": "list"}, "session_id"),
        ({"session_id": sid, "operation": "save", "key": "k"}, "data"),
        ({"session_id": sid, "operation": "load"}, "key"),
        ({"session_id": sid, "operation": "save", "key": "../x", "data": 1}, "key"),
    ]:
        status, err = await srv.call("POST", "/context", bad)
        assert status == 400, bad
        assert err["error"]["details"]["field"] == field, (bad, err)
    status, err = await srv.call("POST", "/context", {"session_id": "nope", "operation": "list"})
    assert status == 404 and err["error"]["code"] == "session_not_found"
    status, err = await srv.call("POST", "/context", data=b"[1]")
    assert status == 400


async def test_chats_create_list_switch_delete(srv, sid):
    """Every session starts with main; chats can be created, switched to and deleted."""
    status, chats = await srv.call("GET", f"/sessions/{sid}/chats")
    assert status == 200
    assert chats["current_chat_id"] == "main"
    assert [c["chat_id"] for c in chats["chats"]] == ["main"]
    status, chat = await srv.call(
        "POST",
        f"/sessions/{sid}/chats",
        {
            "name": "research",
            "system_prompt": "Be brief.",
            "agent": {"kind": "echo"},
            "max_messages": 10,
        },
    )
    assert status == 201, chat
    assert set(chat) >= {"chat_id", "name", "created_at", "message_count", "agent", "system_prompt"}
    cid = chat["chat_id"]
    status, _ = await srv.call("POST", f"/sessions/{sid}/chats/{cid}/switch")
    assert status == 200
    assert (await srv.get(sid))["current_chat_id"] == cid
    await srv.call("POST", f"/sessions/{sid}/run", {"message": "in research"})
    status, msgs = await srv.call("GET", f"/sessions/{sid}/messages?chat_id={cid}")
    assert [m["content"] for m in msgs["messages"]] == ["in research", "Echo: in research"]
    status, main_msgs = await srv.call("GET", f"/sessions/{sid}/messages?chat_id=main")
    assert main_msgs["messages"] == []
    status, err = await srv.call("DELETE", f"/sessions/{sid}/chats/main")
    assert status in (400, 409)
    status, err = await srv.call("POST", f"/sessions/{sid}/chats/nope/switch")
    assert status == 404 and err["error"]["code"] == "chat_not_found"
    status, _ = await srv.call("POST", f"/sessions/{sid}/chats/main/switch")
    assert status == 200
    status, _ = await srv.call("DELETE", f"/sessions/{sid}/chats/{cid}")
    assert status == 200
    _, chats = await srv.call("GET", f"/sessions/{sid}/chats")
    assert [c["chat_id"] for c in chats["chats"]] == ["main"]
    status, err = await srv.call("GET", f"/sessions/{sid}/messages?chat_id={cid}")
    assert status == 404 and err["error"]["code"] == "chat_not_found"


async def test_chat_limit_is_429(srv):
    """More chats than max_chats_per_session is 429 limit_exceeded naming the limit."""
    from actors.config import HubConfig, Limits

    async with running_server(hub_config=HubConfig(limits=Limits(max_chats_per_session=2))) as s:
        sid = (await s.create())["session_id"]
        status, _ = await s.call("POST", f"/sessions/{sid}/chats", {"name": "two"})
        assert status == 201
        status, err = await s.call("POST", f"/sessions/{sid}/chats", {"name": "three"})
        assert status == 429
        assert err["error"]["code"] == "limit_exceeded"
        assert err["error"]["details"]["limit"] == "max_chats_per_session"


async def test_messages_paging(srv, sid):
    """messages are oldest first; limit takes the latest; before pages back."""
    for word in ("one", "two", "three"):
        await srv.call("POST", f"/sessions/{sid}/run", {"message": word})
    status, body = await srv.call("GET", f"/sessions/{sid}/messages")
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant"] * 3
    assert all(set(m) >= {"id", "role", "content", "created_at", "chat_id", "status"} for m in msgs)
    assert all(m["status"] == "complete" for m in msgs)
    _, last2 = await srv.call("GET", f"/sessions/{sid}/messages?limit=2")
    assert [m["id"] for m in last2["messages"]] == [m["id"] for m in msgs[-2:]]
    _, before = await srv.call("GET", f"/sessions/{sid}/messages?before={msgs[2]['id']}")
    assert [m["id"] for m in before["messages"]] == [m["id"] for m in msgs[:2]]
    status, err = await srv.call("GET", f"/sessions/{sid}/messages?limit=-1")
    assert status == 400 and err["error"]["details"]["field"] == "limit"


def _json(value):
    import json

    return json.dumps(value)
