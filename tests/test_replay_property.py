"""Rebuilding a session from its log gives exactly the state the live actor had."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.errors import HubError
from actors.hub import Hub
from actors.state import SessionState, replay
from eventlog.backends.memory import MemoryEventLog
from tests.hub_helpers import ALICE, config

keys = st.sampled_from(["a", "b", "c", "d"])
values = st.one_of(st.integers(), st.text(max_size=10), st.none(), st.lists(st.integers()))
chat_ids = st.sampled_from(["main", "c1", "c2"])

commands = st.one_of(
    st.tuples(st.just("context_set"), keys, values),
    st.tuples(st.just("context_delete"), keys),
    st.tuples(st.just("chat_create"), chat_ids),
    st.tuples(st.just("chat_switch"), chat_ids),
    st.tuples(st.just("chat_delete"), chat_ids),
    st.tuples(st.just("run"), st.text(min_size=1, max_size=20), st.one_of(st.none(), chat_ids)),
    st.tuples(st.just("update"), st.dictionaries(keys, values, max_size=2), st.lists(keys)),
    st.tuples(st.just("status"), st.sampled_from(["active", "working", "idle"])),
    st.tuples(st.just("pause")),
    st.tuples(st.just("resume")),
    st.tuples(st.just("heartbeat")),
    st.tuples(st.just("client"), keys, values),
    st.tuples(st.just("close")),
)


async def _play(script: list[tuple]) -> tuple[dict, SessionState]:
    log = MemoryEventLog()
    async with Hub.running(log, config()) as hub:
        sid = (await hub.create_session(ALICE, {"session_id": "s"}))["session_id"]
        for cmd in script:
            name, *args = cmd
            try:
                if name == "context_set":
                    await hub.context_set(ALICE, sid, args[0], args[1])
                elif name == "context_delete":
                    await hub.context_delete(ALICE, sid, args[0])
                elif name == "chat_create":
                    await hub.chat_create(ALICE, sid, {"chat_id": args[0]})
                elif name == "chat_switch":
                    await hub.chat_switch(ALICE, sid, args[0])
                elif name == "chat_delete":
                    await hub.chat_delete(ALICE, sid, args[0])
                elif name == "run":
                    await hub.run(ALICE, sid, {"message": args[0], "chat_id": args[1]})
                elif name == "update":
                    await hub.update_session(ALICE, sid, {"metadata": args[0], "tags": args[1]})
                elif name == "status":
                    await hub.update_session(ALICE, sid, {"status": args[0]})
                elif name == "pause":
                    await hub.pause_session(ALICE, sid)
                elif name == "resume":
                    await hub.resume_session(ALICE, sid)
                elif name == "heartbeat":
                    await hub.heartbeat(ALICE, sid)
                elif name == "client":
                    await hub.append_events(
                        ALICE,
                        sid,
                        {"events": [{"type": "app.step", "context_delta": {args[0]: args[1]}}]},
                    )
                elif name == "close":
                    await hub.close_session(ALICE, sid)
            except HubError:
                pass
        live = await hub._ask(sid, "snapshot", {})
    return live, replay(sid, log.read(sid))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(commands, max_size=25))
def test_replay_equals_live_state(script):
    """Whatever commands ran (accepted or refused), replay rebuilds the live state."""
    live, rebuilt = asyncio.run(_play(script))
    assert rebuilt.to_snapshot() == live
    assert SessionState.from_snapshot(live).to_snapshot() == live
