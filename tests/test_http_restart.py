"""A restart on the same SQLite file brings everything back; shutdown records running turns."""

from __future__ import annotations

import asyncio

from tests.http_helpers import running_server


async def _snapshot(srv, sid):
    out = {}
    for name, path in [
        ("session", ""),
        ("chats", "/chats"),
        ("context", "/context"),
        ("messages_main", "/messages?chat_id=main"),
        ("events", "/events"),
        ("stats", "/stats"),
    ]:
        status, body = await srv.call("GET", f"/sessions/{sid}{path}")
        assert status == 200, (path, body)
        out[name] = body
    chats = out["chats"]["chats"]
    for chat in chats:
        _, body = await srv.call("GET", f"/sessions/{sid}/messages?chat_id={chat['chat_id']}")
        out[f"messages_{chat['chat_id']}"] = body
    return out


async def test_restart_on_the_same_sqlite_file_brings_everything_back(tmp_path):
    """Sessions, chats, messages, context and events are all back after a restart."""
    url = f"sqlite:///{tmp_path}/events.db"
    async with running_server(eventlog=url) as srv:
        sid = (await srv.create(name="keep me", tags=["t"], metadata={"m": 1}))["session_id"]
        await srv.call("PUT", f"/sessions/{sid}/context/plan", {"steps": [1, 2]})
        await srv.call("POST", f"/sessions/{sid}/run", {"message": "first"})
        _, chat = await srv.call("POST", f"/sessions/{sid}/chats", {"name": "side"})
        await srv.call(
            "POST", f"/sessions/{sid}/run", {"message": "in side", "chat_id": chat["chat_id"]}
        )
        await srv.call("POST", f"/sessions/{sid}/events", {"events": [{"type": "app.note"}]})
        closed = (await srv.create(name="closed"))["session_id"]
        await srv.call("POST", f"/sessions/{closed}/close")
        before = await _snapshot(srv, sid)
        _, listing_before = await srv.call("GET", "/sessions?status=closed")
    async with running_server(eventlog=url) as srv:
        after = await _snapshot(srv, sid)
        _, listing_after = await srv.call("GET", "/sessions?status=closed")
        assert after == before
        assert listing_after == listing_before
        status, body = await srv.call("POST", f"/sessions/{sid}/run", {"message": "again"})
        assert status == 200
        assert body["message"]["content"] == "Echo: again (turn 2)"


async def test_shutdown_cancels_and_records_running_turns(tmp_path):
    """A turn running when the server stops ends as a cancelled, recorded message."""
    url = f"sqlite:///{tmp_path}/events.db"
    async with running_server(eventlog=url) as srv:
        sid = (await srv.create(agent={"kind": "echo", "params": {"delay_s": 0.5}}))["session_id"]
        task = asyncio.create_task(
            srv.call("POST", f"/sessions/{sid}/run", {"message": "a b c d e f g h"})
        )
        for _ in range(100):
            if srv.hub.runner.running(sid):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.6)
    task.cancel()
    async with running_server(eventlog=url) as srv:
        _, body = await srv.call("GET", f"/sessions/{sid}/messages")
        messages = body["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert messages[1]["status"] == "cancelled"
        assert messages[1]["content"].startswith("Echo:")
        _, events = await srv.call("GET", f"/sessions/{sid}/events?type=turn_completed")
        assert len(events["events"]) == 1
