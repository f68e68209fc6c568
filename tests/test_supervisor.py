"""Expiry, passivation, rehydration, limits and crash restart, driven by injected clocks."""

from __future__ import annotations

import pytest

from actors import decide
from actors.clock import ManualClock
from actors.config import Limits
from actors.errors import HubError
from actors.hub import Hub
from eventlog.backends.memory import MemoryEventLog
from tests.hub_helpers import ALICE, BOB, OPERATOR, config


class Monotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def mono():
    return Monotonic()


async def test_ttl_expiry_swept_on_the_clock(clock):
    """A session with ttl_seconds expires when the clock passes expires_at, not before."""
    async with Hub.running(MemoryEventLog(), config(), clock) as hub:
        s = await hub.create_session(ALICE, {"ttl_seconds": 60})
        assert s["expires_at"] is not None
        clock.advance(59)
        assert (await hub.sweep())["expired"] == 0
        clock.advance(2)
        assert (await hub.sweep())["expired"] == 1
        s = await hub.get_session(ALICE, s["session_id"])
        assert s["status"] == "expired"
        events = await hub.read_events(ALICE, s["session_id"], {"type": "expired"})
        assert events["events"][0]["data"] == {"reason": "expires_at"}
        with pytest.raises(HubError) as err:
            await hub.context_set(ALICE, s["session_id"], "k", 1)
        assert err.value.code == "session_closed"


async def test_idle_and_lifetime_expiry(clock):
    """Idle time counts from the last activity; lifetime from creation."""
    cfg = config(idle_timeout_s=100, max_lifetime_s=1000)
    async with Hub.running(MemoryEventLog(), cfg, clock) as hub:
        idle = await hub.create_session(ALICE, {"session_id": "idle"})
        busy = await hub.create_session(ALICE, {"session_id": "busy"})
        for _ in range(12):
            clock.advance(90)
            await hub.heartbeat(ALICE, busy["session_id"])
            await hub.sweep()
        assert (await hub.get_session(ALICE, idle["session_id"]))["status"] == "expired"
        assert (await hub.get_session(ALICE, busy["session_id"]))["status"] == "expired"
        reasons = {
            sid: (await hub.read_events(ALICE, sid, {"type": "expired"}))["events"][0]["data"]
            for sid in ("idle", "busy")
        }
        assert reasons == {"idle": {"reason": "idle"}, "busy": {"reason": "lifetime"}}


async def test_passivation_and_rehydration(clock, mono):
    """An idle actor is stopped; the next request rebuilds the same state from the log."""
    cfg = config(passivate_after_s=30)
    async with Hub.running(MemoryEventLog(), cfg, clock, monotonic=mono) as hub:
        s = await hub.create_session(ALICE, {})
        sid = s["session_id"]
        await hub.context_set(ALICE, sid, "k", {"v": 1})
        await hub.run(ALICE, sid, {"message": "hello"})
        before = await hub.get_session(ALICE, sid)
        mono.t += 29
        assert (await hub.sweep())["passivated"] == 0
        mono.t += 2
        assert (await hub.sweep())["passivated"] == 1
        assert not hub.supervisor.is_live(sid)
        assert await hub.get_session(ALICE, sid) == before
        assert (await hub.context_get(ALICE, sid, "k"))["value"] == {"v": 1}
        assert hub.supervisor.is_live(sid)


async def test_live_actor_cap_passivates_least_recently_used():
    """Past the cap, the least recently used actor is stopped, the session kept."""
    async with Hub.running(MemoryEventLog(), config(max_live_actors=3)) as hub:
        ids = [(await hub.create_session(OPERATOR, {}))["session_id"] for _ in range(5)]
        assert hub.supervisor.live_actors() <= 3
        assert not hub.supervisor.is_live(ids[0])
        assert (await hub.get_session(OPERATOR, ids[0]))["session_id"] == ids[0]


@pytest.mark.parametrize(
    ("limits", "action", "limit_name"),
    [
        (Limits(max_sessions_per_user=2), "sessions", "max_sessions_per_user"),
        (Limits(max_sessions_total=2), "sessions_two_users", "max_sessions_total"),
        (Limits(max_chats_per_session=2), "chats", "max_chats_per_session"),
        (Limits(max_context_entries=2), "context", "max_context_entries"),
        (Limits(max_message_bytes=100), "message", "max_message_bytes"),
        (Limits(max_messages_per_chat=4), "messages", "max_messages"),
    ],
)
async def test_limits_name_themselves(limits, action, limit_name):
    """Each limit refuses with 429 limit_exceeded naming it, and changes nothing."""
    async with Hub.running(MemoryEventLog(), config(limits=limits)) as hub:
        s = await hub.create_session(ALICE, {})
        sid = s["session_id"]

        async def attempt():
            if action == "sessions":
                await hub.create_session(ALICE, {})
                await hub.create_session(ALICE, {})
            elif action == "sessions_two_users":
                await hub.create_session(BOB, {})
                await hub.create_session(BOB, {})
            elif action == "chats":
                await hub.chat_create(ALICE, sid, {})
                await hub.chat_create(ALICE, sid, {})
            elif action == "context":
                for i in range(3):
                    await hub.context_set(ALICE, sid, f"k{i}", i)
            elif action == "message":
                await hub.context_set(ALICE, sid, "k", "x" * 200)
            elif action == "messages":
                for _ in range(3):
                    await hub.run(ALICE, sid, {"message": "hi"})

        with pytest.raises(HubError) as err:
            await attempt()
        assert (err.value.status, err.value.code) == (429, "limit_exceeded")
        assert err.value.details["limit"] == limit_name
        version = (await hub.get_session(ALICE, sid))["version"]
        with pytest.raises(HubError):
            await attempt()
        assert (await hub.get_session(ALICE, sid))["version"] >= version


async def test_closed_sessions_free_the_per_user_limit():
    """Only open sessions count towards max_sessions_per_user."""
    async with Hub.running(MemoryEventLog(), config(limits=Limits(max_sessions_per_user=1))) as hub:
        s = await hub.create_session(ALICE, {})
        await hub.close_session(ALICE, s["session_id"])
        await hub.create_session(ALICE, {})


async def test_crashed_actor_restarts_from_its_log(monkeypatch):
    """An actor that crashes answers 503; the next request runs on a fresh one from the log."""
    async with Hub.running(MemoryEventLog(), config()) as hub:
        s = await hub.create_session(ALICE, {})
        sid = s["session_id"]
        await hub.context_set(ALICE, sid, "k", 1)

        def boom(state, args, ctx):
            raise RuntimeError("bug in a decider")

        monkeypatch.setitem(decide.DECIDERS, "heartbeat", boom)
        with pytest.raises(HubError) as err:
            await hub.heartbeat(ALICE, sid)
        assert err.value.status == 503
        monkeypatch.undo()
        assert (await hub.context_get(ALICE, sid, "k"))["value"] == 1
        assert (await hub.heartbeat(ALICE, sid))["version"] == 3


async def test_catalog_rebuilt_from_the_log_at_start():
    """A new hub on the same log lists the same sessions with the same fields."""
    log = MemoryEventLog()
    async with Hub.running(log, config()) as hub:
        for i in range(3):
            await hub.create_session(ALICE, {"tags": ["x"] if i else [], "agent_type": "Claude"})
        s = await hub.create_session(BOB, {"capabilities": ["python"]})
        await hub.close_session(BOB, s["session_id"])
        before = await hub.list_sessions(OPERATOR, {"status": "closed"})
        tagged = await hub.list_sessions(ALICE, {"tag": "x"})
    async with Hub.running(log, config()) as hub:
        assert await hub.list_sessions(OPERATOR, {"status": "closed"}) == before
        assert await hub.list_sessions(ALICE, {"tag": "x"}) == tagged
        assert (await hub.list_sessions(ALICE, {"agent_type": "Claude"}))["total"] == 3
        assert (await hub.list_sessions(OPERATOR, {"capability": "python"}))["total"] == 0
        page = await hub.list_sessions(ALICE, {"limit": "2"})
        rest = await hub.list_sessions(ALICE, {"limit": "2", "cursor": page["next_cursor"]})
        assert len(page["sessions"]) == 2 and len(rest["sessions"]) == 1
        assert rest["next_cursor"] is None


async def test_dangling_turn_is_failed_after_restart():
    """A turn the log shows running when the process died is recorded as failed."""
    log = MemoryEventLog()
    async with Hub.running(log, config()) as hub:
        s = await hub.create_session(ALICE, {})
        await hub._ask(s["session_id"], "start_turn", {"message": "hi", "chat_id": None})
        hub.runner = None  # the process "dies" before the agent ran
        hub._stopping = True
        hub.supervisor.stop_all()
    async with Hub.running(log, config()) as hub:
        msgs = (await hub.messages(ALICE, s["session_id"], {}))["messages"]
        assert [m["status"] for m in msgs] == ["complete", "failed"]


async def test_start_up_starts_no_actor_for_idle_sessions():
    """A restart rebuilds the catalog only: sessions without a running turn stay asleep."""
    log = MemoryEventLog()
    async with Hub.running(log, config()) as hub:
        for _ in range(5):
            await hub.create_session(ALICE, {})
    async with Hub.running(log, config()) as hub:
        assert hub.supervisor.live_actors() == 0
        assert (await hub.list_sessions(ALICE, {}))["total"] == 5


async def test_a_turn_orphaned_by_a_dead_node_is_failed_when_its_chat_is_used():
    """A turn open in the log that no runner runs does not block its chat forever."""
    async with Hub.running(MemoryEventLog(), config()) as hub:
        s = await hub.create_session(ALICE, {})
        sid = s["session_id"]
        await hub._ask(sid, "start_turn", {"message": "lost", "chat_id": None})
        reply = await hub.run(ALICE, sid, {"message": "again"})
        assert reply["message"]["content"].startswith("Echo: again")
        msgs = (await hub.messages(ALICE, sid, {}))["messages"]
        assert [(m["role"], m["status"]) for m in msgs] == [
            ("user", "complete"),
            ("assistant", "failed"),
            ("user", "complete"),
            ("assistant", "complete"),
        ]
