"""Hub messages, shared memory, registry and collaborations through the facade."""

from __future__ import annotations

import pytest

from actors.clock import ManualClock
from actors.errors import HubError
from actors.hub import Hub
from eventlog.backends.memory import MemoryEventLog
from tests.hub_helpers import ALICE, BOB, config


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
async def hub(clock, tmp_path):
    (tmp_path / "teams").mkdir()
    (tmp_path / "teams" / "review.yaml").write_text(
        "agents:\n"
        "  - {name: planner, role: plan}\n"
        "  - {name: reviewer, role: review, agent: {kind: calculator}}\n"
        "strategy: pipeline\nmax_rounds: 1\n"
    )
    (tmp_path / "secret.yaml").write_text("agents: []\n")
    log = MemoryEventLog()
    async with Hub.running(log, config(teams_dir=str(tmp_path / "teams")), clock) as h:
        yield h


async def _sessions(hub, caller, n):
    return [(await hub.create_session(caller, {}))["session_id"] for _ in range(n)]


async def test_direct_message_reply_and_thread(hub):
    """A message lands in the recipient's inbox and log; a reply joins its thread."""
    a, b = await _sessions(hub, ALICE, 2)
    sent = await hub.send_message(
        ALICE, {"from_session": a, "to_session": b, "type": "request", "subject": "review?"}
    )
    assert sent["delivered_to"] == [b] and sent["thread_id"] == sent["message_id"]
    inbox = await hub.inbox(ALICE, b, {})
    assert [m["subject"] for m in inbox["messages"]] == ["review?"]
    events = await hub.read_events(ALICE, b, {"type": "message_received"})
    assert events["events"][0]["data"]["message_id"] == sent["message_id"]
    reply = await hub.send_message(
        ALICE, {"from_session": b, "type": "response", "body": "ok", "reply_to": sent["message_id"]}
    )
    assert reply["to_session"] == a and reply["thread_id"] == sent["thread_id"]
    thread = await hub.thread(ALICE, sent["thread_id"])
    assert [m["message_id"] for m in thread["messages"]] == [
        sent["message_id"],
        reply["message_id"],
    ]
    assert (await hub.inbox(ALICE, a, {"type": "response"}))["messages"][0]["body"] == "ok"
    assert (await hub.inbox(ALICE, a, {"type": "request"}))["messages"] == []
    with pytest.raises(HubError):
        await hub.thread(BOB, sent["thread_id"])


async def test_broadcast_reaches_every_open_session_of_the_user_only(hub):
    """A broadcast reaches the user's other open sessions and nobody else's."""
    a, b, c, closed = await _sessions(hub, ALICE, 4)
    await hub.close_session(ALICE, closed)
    (bob,) = await _sessions(hub, BOB, 1)
    sent = await hub.send_message(ALICE, {"from_session": a, "type": "broadcast", "body": "hi"})
    assert sorted(sent["delivered_to"]) == sorted([b, c])
    for sid in (b, c):
        assert len((await hub.inbox(ALICE, sid, {}))["messages"]) == 1
    assert (await hub.inbox(BOB, bob, {}))["messages"] == []
    assert (await hub.inbox(ALICE, a, {}))["messages"] == []


async def test_message_errors(hub):
    """Unknown or foreign sessions are 404; bad types 400; closed recipients 409."""
    a, b = await _sessions(hub, ALICE, 2)
    (bob,) = await _sessions(hub, BOB, 1)
    cases = [
        ({"from_session": a, "to_session": bob}, 404),
        ({"from_session": bob, "to_session": a}, 404),
        ({"from_session": "nope", "to_session": a}, 404),
        ({"from_session": a, "to_session": b, "type": "shout"}, 400),
        ({"from_session": a, "to_session": b, "data": [1]}, 400),
        ({"from_session": a, "reply_to": "msg-unknown"}, 404),
        ({"to_session": b}, 400),
    ]
    for body, status in cases:
        with pytest.raises(HubError) as err:
            await hub.send_message(ALICE, body)
        assert err.value.status == status, body
    await hub.close_session(ALICE, b)
    with pytest.raises(HubError) as err:
        await hub.send_message(ALICE, {"from_session": a, "to_session": b})
    assert err.value.code == "session_closed"


async def test_handoff_carries_data_and_shared_memory(hub):
    """The receiver of a handoff gets its data and can read the sender's shared memory."""
    a, b = await _sessions(hub, ALICE, 2)
    await hub.memory_set(ALICE, "plan", {"session_id": a, "value": ["x"], "type": "task"})
    await hub.send_message(
        ALICE, {"from_session": a, "to_session": b, "type": "handoff", "data": {"step": 3}}
    )
    got = (await hub.inbox(ALICE, b, {"type": "handoff"}))["messages"][0]
    assert got["data"] == {"step": 3}
    assert (await hub.memory_get(ALICE, "plan", {"session_id": b}))["value"] == ["x"]


async def test_shared_memory(hub, clock):
    """Set, history, search by pattern/tags/session/type, delete, TTL on the clock."""
    a, b = await _sessions(hub, ALICE, 2)
    (bob,) = await _sessions(hub, BOB, 1)
    e1 = await hub.memory_set(
        ALICE, "task_1", {"session_id": a, "value": 1, "type": "task", "tags": ["x", "y"]}
    )
    assert e1["version"] == 1 and e1["session_id"] == a and e1["expires_at"] is None
    await hub.memory_set(ALICE, "task_1", {"session_id": b, "value": 2, "type": "task"})
    await hub.memory_set(ALICE, "task_2", {"session_id": a, "value": 3, "tags": ["x"]})
    await hub.memory_set(ALICE, "fact", {"session_id": a, "value": 4, "type": "fact"})
    await hub.memory_set(ALICE, "tmp", {"session_id": a, "value": 5, "ttl_seconds": 10})
    got = await hub.memory_get(ALICE, "task_1", {})
    assert got["value"] == 2 and got["version"] == 2
    history = await hub.memory_history(ALICE, "task_1", {})
    assert [e["value"] for e in history["entries"]] == [1, 2]
    keys = lambda r: [e["key"] for e in r["entries"]]  # noqa: E731
    assert keys(await hub.memory_search(ALICE, {"pattern": "task_*"})) == ["task_1", "task_2"]
    assert keys(await hub.memory_search(ALICE, {"tags": "x"})) == ["task_2"]
    assert keys(await hub.memory_search(ALICE, {"session_id": b})) == ["task_1"]
    assert keys(await hub.memory_search(ALICE, {"type": "fact"})) == ["fact"]
    assert "tmp" in keys(await hub.memory_search(ALICE, {}))
    clock.advance(11)
    assert "tmp" not in keys(await hub.memory_search(ALICE, {}))
    with pytest.raises(HubError) as err:
        await hub.memory_get(ALICE, "tmp", {})
    assert err.value.status == 404
    assert (await hub.memory_delete(ALICE, "fact", {})) == {"success": True}
    with pytest.raises(HubError):
        await hub.memory_get(ALICE, "fact", {})
    assert (await hub.memory_search(BOB, {}))["entries"] == []
    for call, status in [
        (hub.memory_set(ALICE, "k", {"session_id": a, "value": 1, "type": "bogus"}), 400),
        (hub.memory_set(ALICE, "k", {"session_id": bob, "value": 1}), 404),
        (hub.memory_set(ALICE, "k", {"value": 1}), 400),
        (hub.memory_set(ALICE, "../k", {"session_id": a, "value": 1}), 400),
        (hub.memory_search(ALICE, {"pattern": "task_[1"}), 400),
        (hub.memory_search(ALICE, {"pattern": "a/b"}), 400),
        (hub.memory_search(ALICE, {"type": "bogus"}), 400),
    ]:
        with pytest.raises(HubError) as err:
            await call
        assert err.value.status == status
    stats = await hub.hub_stats(ALICE, {})
    assert stats["memory"]["entries"] == 2 and stats["sessions"]["total"] == 2


async def test_missed_heartbeats_mark_sessions_idle(clock):
    """Active sessions silent past heartbeat_timeout_s become idle; heartbeats keep others."""
    async with Hub.running(MemoryEventLog(), config(heartbeat_timeout_s=30), clock) as hub:
        quiet, alive = await _sessions(hub, ALICE, 2)
        await hub.update_session(ALICE, alive, {"status": "working", "current_task": "t1"})
        clock.advance(20)
        await hub.heartbeat(ALICE, alive)
        clock.advance(15)
        assert (await hub.sweep())["idled"] == 1
        assert (await hub.get_session(ALICE, quiet))["status"] == "idle"
        s = await hub.get_session(ALICE, alive)
        assert s["status"] == "working" and s["current_task"] == "t1"
        assert (await hub.list_sessions(ALICE, {"status": "idle"}))["total"] == 1


async def test_collaboration_round_robin_replays(hub):
    """A team runs in the background; each step is an event; status and transcript read back."""
    (sid,) = await _sessions(hub, ALICE, 1)
    team = {
        "agents": [{"name": "a1", "role": "writer"}, {"name": "a2", "role": "critic"}],
        "strategy": "round_robin",
        "max_rounds": 2,
    }
    started = await hub.collaboration_start(ALICE, {"session_id": sid, "team": team, "task": "t"})
    assert started["status"] == "running"
    await hub.wait_collaboration(started["collaboration_id"])
    got = await hub.collaboration_get(ALICE, started["collaboration_id"], {"session_id": sid})
    assert got["status"] == "completed"
    assert [t["agent"] for t in got["transcript"]] == ["a1", "a2", "a1", "a2"]
    assert "a1 (writer)" in got["transcript"][1]["input"]
    assert (await hub.get_session(ALICE, sid))["total_collaborations"] == 1
    types = [e["type"] for e in (await hub.read_events(ALICE, sid, {}))["events"]]
    assert types.count("collaboration_step") == 4 and types[-1] == "collaboration_completed"


async def test_collaboration_from_team_file_and_stream(hub):
    """A team file under the teams folder runs as a pipeline; a path outside is refused."""
    (sid,) = await _sessions(hub, ALICE, 1)
    stream = await hub.collaboration_stream(
        ALICE, {"session_id": sid, "team_config_path": "review.yaml", "task": "What is 6*7?"}
    )
    types = [payload["type"] async for _, payload in stream]
    assert types[0] == "collaboration_start" and types[-1] == "collaboration_end"
    assert types.count("agent_start") == 2 and "stream_chunk" in types
    got = await hub.collaboration_get(ALICE, stream.collaboration_id, {"session_id": sid})
    assert got["status"] == "completed" and "42" in got["result"]
    for path in ("../secret.yaml", "/etc/passwd", "missing.yaml"):
        with pytest.raises(HubError) as err:
            await hub.collaboration_start(
                ALICE, {"session_id": sid, "team_config_path": path, "task": "x"}
            )
        assert err.value.status == 400
    for team in ({"agents": []}, {"agents": [{"name": "x"}], "strategy": "chaos"}, "x"):
        with pytest.raises(HubError):
            await hub.collaboration_start(ALICE, {"session_id": sid, "team": team, "task": "x"})


async def test_everything_is_back_after_a_restart(clock, tmp_path):
    """Inboxes, threads, memory with history and transcripts come back from the log."""
    log = MemoryEventLog()
    async with Hub.running(log, config(), clock) as hub:
        a, b = await _sessions(hub, ALICE, 2)
        sent = await hub.send_message(ALICE, {"from_session": a, "to_session": b, "body": "x"})
        await hub.send_message(ALICE, {"from_session": b, "reply_to": sent["message_id"]})
        await hub.memory_set(ALICE, "k", {"session_id": a, "value": 1})
        await hub.memory_set(ALICE, "k", {"session_id": a, "value": 2})
        c = await hub.collaboration_start(
            ALICE,
            {"session_id": a, "team": {"agents": [{"name": "solo", "role": "r"}]}, "task": "t"},
        )
        await hub.wait_collaboration(c["collaboration_id"])
        before = (
            await hub.inbox(ALICE, b, {}),
            await hub.thread(ALICE, sent["thread_id"]),
            await hub.memory_history(ALICE, "k", {}),
            await hub.collaboration_get(ALICE, c["collaboration_id"], {"session_id": a}),
        )
    async with Hub.running(log, config(), clock) as hub:
        after = (
            await hub.inbox(ALICE, b, {}),
            await hub.thread(ALICE, sent["thread_id"]),
            await hub.memory_history(ALICE, "k", {}),
            await hub.collaboration_get(ALICE, c["collaboration_id"], {"session_id": a}),
        )
    assert after == before
