"""The session layer through its async facade: commands, errors, isolation, time travel."""

from __future__ import annotations

import asyncio

import pytest

from actors.errors import HubError
from actors.hub import Hub
from eventlog.backends.memory import MemoryEventLog
from tests.hub_helpers import ALICE, BOB, OPERATOR, GatedLog, config


@pytest.fixture
async def hub():
    log = MemoryEventLog()
    async with Hub.running(log, config()) as h:
        yield h


async def test_create_returns_the_session_object(hub):
    """A new session has every field of the API's session object, with defaults."""
    s = await hub.create_session(ALICE, {"name": "Work", "tags": ["t"], "metadata": {"a": 1}})
    assert s["user_id"] == "alice"
    assert s["status"] == "active"
    assert s["current_chat_id"] == "main"
    assert s["chat_count"] == 1 and s["message_count"] == 0
    assert s["version"] == 1
    assert s["agent"]["kind"] == "echo"
    assert s["created_at"].endswith("Z")
    assert (await hub.get_session(ALICE, s["session_id"])) == s


async def test_client_chosen_id_and_already_exists(hub):
    """A client may pick the id; taking it twice is 409 already_exists."""
    await hub.create_session(OPERATOR, {"session_id": "my-id:1"})
    with pytest.raises(HubError) as err:
        await hub.create_session(OPERATOR, {"session_id": "my-id:1"})
    assert (err.value.status, err.value.code) == (409, "already_exists")
    with pytest.raises(HubError) as err:
        await hub.create_session(OPERATOR, {"session_id": "bad/id"})
    assert err.value.status == 400 and err.value.details["field"] == "session_id"


async def test_idempotency_key_returns_same_session(hub):
    """A repeated create with the same Idempotency-Key answers the same session."""
    a = await hub.create_session(ALICE, {}, idempotency_key="k1")
    b = await hub.create_session(ALICE, {}, idempotency_key="k1")
    c = await hub.create_session(ALICE, {}, idempotency_key="k2")
    assert a["session_id"] == b["session_id"] != c["session_id"]
    assert (await hub.list_sessions(ALICE, {}))["total"] == 2


async def test_other_users_session_is_not_found(hub):
    """Bob cannot see or touch Alice's session: 404, the same as an unknown id."""
    s = await hub.create_session(ALICE, {})
    for call in (
        hub.get_session(BOB, s["session_id"]),
        hub.context_set(BOB, s["session_id"], "k", 1),
        hub.delete_session(BOB, s["session_id"]),
    ):
        with pytest.raises(HubError) as err:
            await call
        assert (err.value.status, err.value.code) == (404, "session_not_found")
    assert (await hub.list_sessions(BOB, {}))["total"] == 0
    with pytest.raises(HubError):
        await hub.create_session(BOB, {"user_id": "alice"})


async def test_bad_input_changes_nothing(hub):
    """Wrong types are 400 naming the field, and the session's version does not move."""
    s = await hub.create_session(ALICE, {})
    sid = s["session_id"]
    bad_calls = [
        hub.update_session(ALICE, sid, {"status": "flying"}),
        hub.update_session(ALICE, sid, {"tags": "notalist"}),
        hub.update_session(ALICE, sid, {"metadata": [1]}),
        hub.context_set(ALICE, sid, "../etc", 1),
        hub.context_set(ALICE, sid, "", 1),
        hub.chat_create(ALICE, sid, {"max_messages": "x"}),
        hub.run(ALICE, sid, {"message": 5}),
        hub.run(ALICE, sid, {}),
        hub.append_events(ALICE, sid, {"events": [{"type": "NoDots"}]}),
        hub.append_events(ALICE, sid, {"events": "x"}),
        hub.create_session(ALICE, {"agent": {"kind": "nope"}}),
        hub.create_session(ALICE, {"ttl_seconds": -1}),
    ]
    for call in bad_calls:
        with pytest.raises(HubError) as err:
            await call
        assert err.value.status == 400, err.value.to_body()
        assert "field" in err.value.details
    assert (await hub.get_session(ALICE, sid))["version"] == s["version"]


async def test_patch_if_match(hub):
    """PATCH merges metadata; a stale If-Match is 409 version_conflict."""
    s = await hub.create_session(ALICE, {"metadata": {"a": 1}})
    sid = s["session_id"]
    s2 = await hub.update_session(
        ALICE, sid, {"metadata": {"b": 2}, "status": "working"}, if_match=1
    )
    assert s2["metadata"] == {"a": 1, "b": 2} and s2["status"] == "working"
    with pytest.raises(HubError) as err:
        await hub.update_session(ALICE, sid, {"current_task": "x"}, if_match=1)
    assert err.value.code == "version_conflict"


async def test_close_pause_and_storage_only(hub):
    """Closed sessions refuse commands; paused refuse runs; kind none refuses runs."""
    s = await hub.create_session(ALICE, {})
    sid = s["session_id"]
    await hub.pause_session(ALICE, sid)
    with pytest.raises(HubError) as err:
        await hub.run(ALICE, sid, {"message": "hi"})
    assert err.value.code == "session_paused"
    await hub.context_set(ALICE, sid, "k", 1)
    await hub.resume_session(ALICE, sid)
    assert (await hub.run(ALICE, sid, {"message": "hi"}))["message"]["content"]
    await hub.close_session(ALICE, sid)
    with pytest.raises(HubError) as err:
        await hub.context_set(ALICE, sid, "k", 2)
    assert (err.value.status, err.value.code) == (409, "session_closed")
    assert (await hub.get_session(ALICE, sid))["status"] == "closed"
    assert (await hub.list_sessions(ALICE, {}))["total"] == 0
    assert (await hub.list_sessions(ALICE, {"status": "closed"}))["total"] == 1

    store = await hub.create_session(ALICE, {"agent": {"kind": "none"}})
    with pytest.raises(HubError) as err:
        await hub.run(ALICE, store["session_id"], {"message": "hi"})
    assert err.value.code == "no_agent"


async def test_delete_and_purge(hub):
    """Deleted sessions are 404; their events stay unless purged."""
    a = await hub.create_session(ALICE, {"session_id": "a1"})
    b = await hub.create_session(ALICE, {"session_id": "b1"})
    out = await hub.delete_session(ALICE, "a1")
    assert out == {"success": True, "message": "Session a1 deleted"}
    await hub.delete_session(ALICE, "b1", purge=True)
    with pytest.raises(HubError):
        await hub.get_session(ALICE, a["session_id"])
    assert hub.log.last_seq("a1") == 2
    assert hub.log.last_seq(b["session_id"]) == 0


async def test_chats_and_messages(hub):
    """Several chats, each with its own history; the follow-up sees the earlier turn."""
    s = await hub.create_session(ALICE, {})
    sid = s["session_id"]
    chat = await hub.chat_create(ALICE, sid, {"name": "Code", "system_prompt": "Review"})
    assert chat["name"] == "Code" and chat["message_count"] == 0
    await hub.run(ALICE, sid, {"message": "one"})
    await hub.run(ALICE, sid, {"message": "two", "chat_id": chat["chat_id"]})
    second = await hub.run(ALICE, sid, {"message": "three"})
    assert "(turn 2)" in second["message"]["content"]
    main = await hub.messages(ALICE, sid, {})
    assert [m["content"] for m in main["messages"] if m["role"] == "user"] == ["one", "three"]
    other = await hub.messages(ALICE, sid, {"chat_id": chat["chat_id"]})
    assert len(other["messages"]) == 2
    await hub.chat_switch(ALICE, sid, chat["chat_id"])
    listed = await hub.chat_list(ALICE, sid)
    assert listed["current_chat_id"] == chat["chat_id"] and len(listed["chats"]) == 2
    await hub.chat_delete(ALICE, sid, chat["chat_id"])
    s = await hub.get_session(ALICE, sid)
    assert s["current_chat_id"] == "main" and s["chat_count"] == 1 and s["message_count"] == 4
    with pytest.raises(HubError) as err:
        await hub.chat_delete(ALICE, sid, "main")
    assert err.value.status == 400
    with pytest.raises(HubError) as err:
        await hub.chat_switch(ALICE, sid, "nope")
    assert err.value.code == "chat_not_found"


async def test_double_texting(hub):
    """A second run on a busy chat: 409, or queued with enqueue, or replacing with interrupt."""
    s = await hub.create_session(ALICE, {"agent": {"kind": "echo", "params": {"delay_s": 0.05}}})
    sid = s["session_id"]
    first = await hub.start_turn(ALICE, sid, {"message": "a b c d e f g h"})
    with pytest.raises(HubError) as err:
        await hub.run(ALICE, sid, {"message": "second"})
    assert err.value.code == "turn_in_progress"
    queued = await hub.run(ALICE, sid, {"message": "queued", "multitask": "enqueue"})
    assert first.turn.status == "complete"
    assert queued["message"]["content"].startswith("Echo: queued")
    slow = await hub.start_turn(ALICE, sid, {"message": "a b c d e f g h i j"})
    interrupted = await hub.run(ALICE, sid, {"message": "now", "multitask": "interrupt"})
    assert slow.turn.status == "cancelled"
    assert interrupted["message"]["content"].startswith("Echo: now")
    msgs = (await hub.messages(ALICE, sid, {}))["messages"]
    statuses = [m["status"] for m in msgs if m["role"] == "assistant"]
    assert statuses == ["complete", "complete", "cancelled", "complete"]


async def test_cancel_keeps_partial_text(hub):
    """Cancel ends the running turn; its partial text is kept with status cancelled."""
    s = await hub.create_session(ALICE, {"agent": {"kind": "echo", "params": {"delay_s": 0.05}}})
    sid = s["session_id"]
    stream = await hub.start_turn(ALICE, sid, {"message": "one two three four five six"})
    seen = []
    async for _sse_id, payload in stream:
        seen.append(payload["type"])
        if payload["type"] == "stream_chunk" and payload["data"]["sequence"] == 2:
            out = await hub.cancel(ALICE, sid, {})
            assert out["cancelled"][0]["status"] == "cancelled"
    assert seen[-1] == "stream_end"
    last = (await hub.messages(ALICE, sid, {}))["messages"][-1]
    assert last["status"] == "cancelled"
    assert last["content"].startswith("Echo: one")
    assert len(last["content"]) < len("Echo: one two three four five six")


async def test_time_travel(hub):
    """The state after event N, by replay, is what the session was then."""
    s = await hub.create_session(ALICE, {})
    sid = s["session_id"]
    snapshots = [s]
    for i in range(5):
        snapshots.append(await hub.context_set(ALICE, sid, f"k{i}", i))
    for n in range(1, 7):
        past = await hub.get_session(ALICE, sid, at=n)
        assert past["version"] == n
        assert past["context_entries"] == n - 1
    with pytest.raises(HubError):
        await hub.get_session(ALICE, sid, at=99)


async def test_client_events_all_or_none(hub):
    """Client events append atomically with their context deltas, If-Match guarded."""
    s = await hub.create_session(ALICE, {"agent": {"kind": "none"}})
    sid = s["session_id"]
    out = await hub.append_events(
        ALICE,
        sid,
        {
            "events": [
                {"type": "app.step_done", "data": {"n": 1}, "context_delta": {"a": 1}},
                {"type": "app.step_done", "data": {"n": 2}, "context_delta": {"a": None, "b": 2}},
            ]
        },
        if_match=1,
    )
    assert [e["seq"] for e in out["events"]] == [2, 3] and out["version"] == 3
    assert out["events"][0]["data"] == {"n": 1}
    assert (await hub.context_list(ALICE, sid))["entries"] == {"b": 2}
    with pytest.raises(HubError) as err:
        await hub.append_events(ALICE, sid, {"events": [{"type": "app.x"}]}, if_match=1)
    assert err.value.code == "version_conflict"
    page = await hub.read_events(ALICE, sid, {"type": "app.step_done"})
    assert [e["data"]["n"] for e in page["events"]] == [1, 2]
    assert (await hub.read_events(ALICE, sid, {"tail": "1"}))["events"][0]["seq"] == 3


async def test_slow_actor_does_not_stall_the_loop():
    """While one session's append is blocked, another session answers on the same loop."""
    log = GatedLog()
    async with Hub.running(log, config()) as hub:
        slow = await hub.create_session(OPERATOR, {"session_id": "slow"})
        await hub.create_session(OPERATOR, {"session_id": "fast"})
        log.gated_stream = slow["session_id"]
        blocked = asyncio.ensure_future(hub.context_set(OPERATOR, "slow", "k", 1))
        await asyncio.get_running_loop().run_in_executor(None, log.waiting.wait, 5)
        done = await asyncio.wait_for(hub.context_set(OPERATOR, "fast", "k", 1), 2)
        assert done["version"] == 2
        assert not blocked.done()
        log.gate.set()
        assert (await blocked)["version"] == 2


async def test_event_stream_resumes_without_gap(hub):
    """A stream resumed from a seq gets every later event once, then live ones."""
    s = await hub.create_session(ALICE, {})
    sid = s["session_id"]
    for i in range(3):
        await hub.context_set(ALICE, sid, "k", i)
    stream = await hub.open_event_stream(ALICE, sid, "2")
    seen = []

    async def consume():
        async for sse_id, _payload in stream:
            seen.append(sse_id)
            if sse_id == "6":
                return

    task = asyncio.ensure_future(consume())
    await hub.context_set(ALICE, sid, "k", 9)
    await hub.context_set(ALICE, sid, "k", 10)
    await asyncio.wait_for(task, 5)
    assert seen == ["3", "4", "5", "6"]


class _ScriptedAgent:
    """Streams words, records a tool call in the middle, waits on a gate before finishing."""

    gate: asyncio.Event

    def __init__(self, spec, settings) -> None:
        pass

    async def stream(self, turn):
        from actors.agents import TextDelta, ToolCall, ToolResult

        for word in ("a ", "b ", "c "):
            yield TextDelta(word)
        yield ToolCall("call-1", "lookup", {"q": "x"})
        yield ToolResult("call-1", "lookup", "found")
        for word in ("d ", "e "):
            yield TextDelta(word)
        await _ScriptedAgent.gate.wait()
        yield TextDelta("f")


async def test_resume_mid_turn_across_tool_events_has_no_gap_or_duplicate():
    """Chunk ids anchor on the last durable event; resuming from any id loses nothing."""
    _ScriptedAgent.gate = asyncio.Event()
    async with Hub.running(MemoryEventLog(), config()) as hub:
        hub.registry.register("scripted", _ScriptedAgent)
        s = await hub.create_session(ALICE, {"agent": {"kind": "scripted"}})
        sid = s["session_id"]
        turn = await hub.start_turn(ALICE, sid, {"message": "go"})
        ids = [i async for i, _ in _take(turn, 6)]
        assert ids == ["2", "2.1", "2.2", "2.3", "4.1", "4.2"]
        for resume_from in ("2", "2.2", "3", "4", "4.1"):
            stream = await hub.open_event_stream(ALICE, sid, resume_from)
            got = [i async for i, _ in _take(stream, 10, stop_after="4.2")]
            expected = ["2.1", "2.2", "2.3", "3", "4", "4.1", "4.2"]
            start = expected.index(resume_from) + 1 if resume_from in expected else 0
            assert got == expected[start:], (resume_from, got)
            await stream.aclose()
        _ScriptedAgent.gate.set()
        await turn.turn.done.wait()
        content = (await hub.messages(ALICE, sid, {}))["messages"][-1]["content"]
        assert content == "a b c d e f"


async def _take(stream, limit, stop_after=None):
    count = 0
    async for sse_id, payload in stream:
        yield sse_id, payload
        count += 1
        if count >= limit or sse_id == stop_after:
            return


async def test_answers_do_not_share_values_with_the_session(hub):
    """A Python API caller that changes an answer changes nothing in the session."""
    s = await hub.create_session(ALICE, {"metadata": {"team": {"name": "a"}}})
    sid = s["session_id"]
    answer = await hub.context_set(ALICE, sid, "plan", {"steps": [1, 2]})
    answer["value"]["steps"].append("mutated")
    got = await hub.context_get(ALICE, sid, "plan")
    got["value"]["steps"].append("mutated")
    listed = await hub.context_list(ALICE, sid)
    listed["entries"]["plan"]["steps"].append("mutated")
    session = await hub.get_session(ALICE, sid)
    session["metadata"]["team"]["name"] = "mutated"
    assert (await hub.context_get(ALICE, sid, "plan"))["value"] == {"steps": [1, 2]}
    assert (await hub.get_session(ALICE, sid))["metadata"] == {"team": {"name": "a"}}
