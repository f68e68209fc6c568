"""Pipelined appends on the SQLite log: an actor queues a command's events and goes on,
the answer leaves only once they are durable, and a failed commit loses nothing that was
acknowledged and leaves no trace of what was not."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from typing import Any

import pytest

from actors.errors import NotFound, Unavailable
from actors.hub import Hub
from eventlog import NewEvent
from eventlog.backends.sqlite import SQLiteEventLog
from tests.hub_helpers import ALICE, config


class GatedSQLiteLog(SQLiteEventLog):
    """A SQLite log whose writer holds, before committing, any batch that touches
    ``gated_stream`` until ``gate`` opens; ``fail_next`` fails such a batch instead."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.gated_stream: str | None = None
        self.gate = threading.Event()
        self.holding = threading.Event()
        self.fail_next = 0

    def _apply_batch(self, conn: sqlite3.Connection, batch: list[Any]) -> Any:
        if any(getattr(item, "stream_id", None) == self.gated_stream for item in batch):
            self.holding.set()
            assert self.gate.wait(10)
            if self.fail_next:
                self.fail_next -= 1
                raise sqlite3.OperationalError("disk I/O error")
        return super()._apply_batch(conn, batch)


@pytest.fixture
async def gated(tmp_path):
    log = GatedSQLiteLog(tmp_path / "events.db")
    try:
        async with Hub.running(log, config()) as hub:
            sid = (await hub.create_session(ALICE, {"agent": {"kind": "none"}}))["session_id"]
            yield hub, log, sid
    finally:
        log.close()


def _in_flight(hub: Hub, sid: str) -> int:
    return hub.supervisor.in_flight._counts.get(sid, 0)


async def _until(predicate: Any) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_answers_wait_for_durability_while_the_actor_goes_on(gated):
    """Two writes are in flight at once (the actor did not wait for the first commit);
    neither they nor a read behind them is answered before the commit, and then the
    read sees both."""
    hub, log, sid = gated
    log.gated_stream = sid
    first = asyncio.create_task(hub.context_set(ALICE, sid, "a", 1))
    await asyncio.to_thread(log.holding.wait, 10)
    second = asyncio.create_task(hub.context_set(ALICE, sid, "b", 2))
    await _until(lambda: _in_flight(hub, sid) == 2)
    read = asyncio.create_task(hub.context_list(ALICE, sid))
    await asyncio.sleep(0.2)
    assert not (first.done() or second.done() or read.done())
    assert log.last_seq(sid) == 1  # nothing of theirs is durable yet
    log.gate.set()
    await asyncio.gather(first, second)
    listed = await read
    assert listed["entries"] == {"a": 1, "b": 2}
    assert (await hub.get_session(ALICE, sid))["version"] == log.last_seq(sid) == 3


async def test_a_failed_commit_is_reported_and_leaves_no_trace(gated):
    """The write whose commit fails gets 503 and is not in the state; the write queued
    behind it (whose expected seq assumed the first) is decided again and lands."""
    hub, log, sid = gated
    log.gated_stream = sid
    log.fail_next = 1
    lost = asyncio.create_task(hub.context_set(ALICE, sid, "lost", 1))
    await asyncio.to_thread(log.holding.wait, 10)
    kept = asyncio.create_task(hub.context_set(ALICE, sid, "kept", 2))
    await _until(lambda: _in_flight(hub, sid) == 2)
    log.gate.set()
    with pytest.raises(Unavailable):
        await lost
    assert (await kept)["value"] == 2
    with pytest.raises(NotFound):
        await hub.context_get(ALICE, sid, "lost")
    assert (await hub.context_get(ALICE, sid, "kept"))["value"] == 2
    session = await hub.get_session(ALICE, sid)
    assert session["version"] == log.last_seq(sid) == 2
    assert [e.type for e in log.read(sid)] == ["session_created", "context_set"]


async def test_a_stream_moved_on_by_another_writer_is_reloaded_and_the_command_lands(gated):
    """Another writer appends behind the actor's back: the actor's append conflicts, it
    reloads the session from the log and decides again; both writes are in the state."""
    hub, log, sid = gated
    await hub.context_set(ALICE, sid, "mine", 1)
    other = NewEvent("app.note", {"context_delta": {"theirs": 2}}, command_id="other-node")
    await asyncio.to_thread(log.append, sid, [other], 2)
    await hub.context_set(ALICE, sid, "mine", 3)
    listed = await hub.context_list(ALICE, sid)
    assert listed["entries"] == {"mine": 3, "theirs": 2}
    assert (await hub.get_session(ALICE, sid))["version"] == log.last_seq(sid) == 4
