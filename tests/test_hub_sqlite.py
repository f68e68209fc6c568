"""The session layer on the durable SQLite log: restarts and snapshots lose nothing."""

from __future__ import annotations

from actors.hub import Hub
from eventlog import open_eventlog
from tests.hub_helpers import ALICE, config


async def _fill(hub: Hub) -> str:
    s = await hub.create_session(ALICE, {"name": "kept", "tags": ["t"]})
    sid = s["session_id"]
    await hub.context_set(ALICE, sid, "plan", {"steps": [1, 2]})
    chat = await hub.chat_create(ALICE, sid, {"name": "side", "system_prompt": "Be brief"})
    await hub.run(ALICE, sid, {"message": "first"})
    await hub.run(ALICE, sid, {"message": "second", "chat_id": chat["chat_id"]})
    for i in range(30):
        await hub.context_set(ALICE, sid, "counter", i)
    return sid


async def _view(hub: Hub, sid: str) -> dict:
    return {
        "session": await hub.get_session(ALICE, sid),
        "context": await hub.context_list(ALICE, sid),
        "chats": await hub.chat_list(ALICE, sid),
        "messages": await hub.messages(ALICE, sid, {}),
        "events": await hub.read_events(ALICE, sid, {}),
        "list": await hub.list_sessions(ALICE, {}),
    }


async def test_restart_on_the_same_file_keeps_everything(tmp_path):
    """Sessions, chats, messages, context and events are all back after a restart."""
    url = f"sqlite:///{tmp_path}/events.db"
    log = open_eventlog(url)
    async with Hub.running(log, config()) as hub:
        sid = await _fill(hub)
        before = await _view(hub, sid)
    log.close()
    log = open_eventlog(url)
    try:
        async with Hub.running(log, config()) as hub:
            assert await _view(hub, sid) == before
            nxt = await hub.run(ALICE, sid, {"message": "third"})
            assert "(turn 2)" in nxt["message"]["content"]
    finally:
        log.close()


async def test_snapshots_give_the_same_state_as_the_log(tmp_path):
    """With a snapshot every few events, rehydration from snapshot + tail equals the log."""
    url = f"sqlite:///{tmp_path}/events.db"
    log = open_eventlog(url)
    async with Hub.running(log, config(snapshot_every=7)) as hub:
        sid = await _fill(hub)
        before = await _view(hub, sid)
        live = await hub._ask(sid, "snapshot", {})
    snap = log.load_snapshot(sid)
    assert snap is not None and snap.seq > 7
    log.close()
    log = open_eventlog(url)
    try:
        async with Hub.running(log, config(snapshot_every=7)) as hub:
            assert await _view(hub, sid) == before
            assert await hub._ask(sid, "snapshot", {}) == live
            for at in (1, 5, 20):
                past = await hub.get_session(ALICE, sid, at=at)
                assert past["version"] == at
    finally:
        log.close()
