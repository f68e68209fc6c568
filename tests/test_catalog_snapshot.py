"""The catalog snapshot: a restart folds only the events after it and sees the same hub."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.catalog import CATALOG_SNAPSHOT
from actors.errors import SessionNotFound
from actors.hub import Hub
from eventlog import Snapshot, open_eventlog
from sessionhub.ops.verify import verify_sqlite
from tests.hub_helpers import ALICE, BOB, config


async def _fill(hub: Hub) -> list[str]:
    """Sessions of two users with tags, one closed, one deleted, shared memory, a message."""
    sids = []
    for i in range(6):
        caller = ALICE if i % 2 else BOB
        s = await hub.create_session(
            caller, {"name": f"s{i}", "tags": [f"t{i % 3}"]}, idempotency_key=f"k{i}"
        )
        sids.append(s["session_id"])
    await hub.context_set(BOB, sids[0], "plan", {"steps": [1, 2]})
    await hub.close_session(ALICE, sids[1])
    await hub.delete_session(BOB, sids[2])
    await hub.memory_set(ALICE, "fact", {"session_id": sids[3], "value": "the sky is blue"})
    await hub.send_message(ALICE, {"from_session": sids[3], "to_session": sids[5], "body": "hi"})
    return sids


async def _view(hub: Hub) -> dict:
    out = {}
    for caller in (ALICE, BOB):
        for status in ("active", "closed"):
            listed = await hub.list_sessions(caller, {"status": status})
            out[(caller.user_id, status)] = listed
        out[(caller.user_id, "tag")] = await hub.list_sessions(caller, {"tag": "t1"})
    out["memory"] = await hub.memory_get(ALICE, "fact", {})
    return out


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/events.db"


async def test_restart_starts_from_the_snapshot_and_sees_the_same_sessions(tmp_path):
    """Stopping saves the catalog; the next start loads it, folds only the events appended
    after it (here by a hub that saves none), and lists, counts and finds the same."""
    log = open_eventlog(_url(tmp_path))
    async with Hub.running(log, config()) as hub:
        sids = await _fill(hub)
        saved_at = log.last_position()
    snap = log.load_snapshot(CATALOG_SNAPSHOT)
    assert snap is not None and snap.seq == saved_at
    async with Hub.running(log, config(catalog_snapshot_every=0)) as hub:  # saves none
        late = await hub.create_session(ALICE, {"name": "late", "tags": ["t1"]})
        before = await _view(hub)
    assert log.load_snapshot(CATALOG_SNAPSHOT).seq == saved_at
    async with Hub.running(log, config()) as hub:
        assert hub.catalog.loaded_from == saved_at
        assert 0 < hub.catalog.folded < saved_at  # only what followed the snapshot
        assert await _view(hub) == before
        assert late["session_id"] in {s["session_id"] for s in before[("alice", "tag")]["sessions"]}
        # idempotency keys came back with the states
        again = await hub.create_session(ALICE, {"name": "s3"}, idempotency_key="k3")
        assert again["session_id"] == sids[3]
        with pytest.raises(SessionNotFound):
            await hub.get_session(BOB, sids[2])  # deleted before the snapshot
    assert [p for p in verify_sqlite(tmp_path / "events.db").problems] == []
    log.close()


async def test_a_session_purged_after_the_snapshot_stays_gone(tmp_path):
    """A purge deletes the stream and its deletion with it: the snapshot's copy of the
    session is dropped on load because the log's count of deleted events moved."""
    log = open_eventlog(_url(tmp_path))
    async with Hub.running(log, config()) as hub:
        kept = (await hub.create_session(ALICE, {"name": "kept"}))["session_id"]
        gone = (await hub.create_session(ALICE, {"name": "gone"}))["session_id"]
    async with Hub.running(log, config(catalog_snapshot_every=0)) as hub:
        await hub.delete_session(ALICE, gone, purge=True)
    async with Hub.running(log, config()) as hub:
        assert hub.catalog.loaded_from > 0
        listed = await hub.list_sessions(ALICE, {})
        assert [s["session_id"] for s in listed["sessions"]] == [kept]
        with pytest.raises(SessionNotFound):
            await hub.get_session(ALICE, gone)
    log.close()


@pytest.mark.parametrize(
    "state",
    [
        {"format": 99},
        {"format": 1, "position": 10**9, "deleted": 0, "system_streams": [], "sessions": "[]"},
        {"format": 1, "position": 1, "deleted": 0, "system_streams": [], "sessions": "[{"},
        {"format": 1},
    ],
    ids=["other-format", "ahead-of-the-log", "undecodable", "incomplete"],
)
async def test_an_unusable_snapshot_is_ignored_and_the_whole_log_folded(tmp_path, state):
    log = open_eventlog(_url(tmp_path))
    async with Hub.running(log, config(catalog_snapshot_every=0)) as hub:
        await _fill(hub)
        before = await _view(hub)
    log.save_snapshot(Snapshot(CATALOG_SNAPSHOT, 1, state))
    async with Hub.running(log, config()) as hub:
        assert hub.catalog.loaded_from == 0
        assert hub.catalog.folded == log.count()
        assert await _view(hub) == before
    log.close()


async def test_a_long_fold_is_saved_right_after_start_up(tmp_path):
    """A start that folded at least catalog_snapshot_every events saves the catalog
    without waiting for the shutdown (a crash later does not cost that fold again)."""
    log = open_eventlog(_url(tmp_path))
    async with Hub.running(log, config(catalog_snapshot_every=0)) as hub:
        await _fill(hub)
    assert log.load_snapshot(CATALOG_SNAPSHOT) is None
    async with Hub.running(log, config(catalog_snapshot_every=5)) as hub:
        await hub._catalog_saving
        snap = log.load_snapshot(CATALOG_SNAPSHOT)
        assert snap is not None and snap.seq == log.last_position()
    log.close()
