"""``sessionhub replay``: the state rebuilt from the log is the hub's, at every seq."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from actors.config import HubConfig
from actors.hub import Hub
from eventlog import Snapshot, open_eventlog
from tests.test_ops_common import (
    ALICE,
    OPERATOR,
    populate,
    populated_sqlite,
    run_cli,
    serve_process,
    sqlite_url,
)


async def test_replay_to_seq_equals_the_hubs_get_session_at(tmp_path):
    """For every seq N, ``replay --to-seq N --json`` is ``hub.get_session(at=N)``; run
    beside the hub that holds the same SQLite file open."""
    url = sqlite_url(tmp_path / "events.db")
    log = open_eventlog(url)
    try:
        await populate(log)
        async with Hub.running(log, HubConfig(sweep_interval_s=0)) as hub:
            last = (await hub.get_session(OPERATOR, "work"))["version"]
            assert last > 5
            for n in range(1, last + 1):
                result = run_cli("replay", "work", "--eventlog", url, "--to-seq", str(n), "--json")
                assert result.status == 0, result
                assert result.json() == await hub.get_session(ALICE, "work", at=n), n
            full = run_cli("replay", "work", "--eventlog", url, "--json").json()
            assert full == await hub.get_session(ALICE, "work")
    finally:
        log.close()


async def test_replay_verify_checks_the_snapshot(tmp_path):
    """--verify passes against the hub's snapshot and fails (exit 1) on a doctored one."""
    url = sqlite_url(tmp_path / "events.db")
    log = open_eventlog(url)
    try:
        await populate(log)
        good = run_cli("replay", "work", "--eventlog", url, "--verify")
        assert good.status == 0, good
        assert "matches the replay" in good.err
        snap = log.load_snapshot("work")
        assert snap is not None
        log.save_snapshot(Snapshot("work", snap.seq, {**snap.state, "total_requests": 99}))
    finally:
        log.close()
    bad = run_cli("replay", "work", "--eventlog", url, "--verify")
    assert bad.status == 1
    assert "disagrees" in bad.err and "total_requests" in bad.err and "99" in bad.err


async def test_replay_refuses_what_is_not_there(tmp_path):
    """An unknown session, a seq past the end, a system stream: exit 1 with a reason."""
    url = await populated_sqlite(tmp_path / "events.db")
    unknown = run_cli("replay", "nope", "--eventlog", url)
    assert unknown.status == 1 and "no events" in unknown.err
    past = run_cli("replay", "work", "--eventlog", url, "--to-seq", "1000")
    assert past.status == 1 and "after the session's last event" in past.err
    assert run_cli("replay", "work", "--eventlog", url, "--to-seq", "0").status == 2
    table = run_cli("replay", "gone", "--eventlog", url)
    assert table.status == 0 and "deleted" in table.out


async def test_tools_beside_a_running_server_agree_with_its_http_api(tmp_path):
    """With ``sessionhub serve`` running on a SQLite file, the tools read the same file:
    ``replay --to-seq N`` is ``GET /sessions/{id}?at=N``, ``events`` is the events list,
    ``sessions`` is the list; a snapshot written beside it leaves the server working."""
    url = sqlite_url(tmp_path / "events.db")
    async with serve_process("--eventlog", url, cwd=tmp_path) as server:
        base = server.url
        async with aiohttp.ClientSession() as client:

            async def call(method: str, path: str, body=None):
                async with client.request(method, base + path, json=body) as resp:
                    assert resp.status < 300, (resp.status, await resp.text())
                    return await resp.json()

            created = await call("POST", "/sessions", {"user_id": "user123", "tags": ["work"]})
            sid = created["session_id"]
            await call("PUT", f"/sessions/{sid}/context/plan", {"steps": 3})
            await call("POST", f"/sessions/{sid}/run", {"message": "What is 2+2?"})
            await call("PATCH", f"/sessions/{sid}", {"current_task": "review"})
            now = await call("GET", f"/sessions/{sid}")

            def cli(*argv: str):
                return asyncio.to_thread(run_cli, *argv, "--eventlog", url)

            for n in range(1, now["version"] + 1):
                at = await call("GET", f"/sessions/{sid}?at={n}")
                replayed = await cli("replay", sid, "--to-seq", str(n), "--json")
                assert replayed.status == 0, replayed
                assert replayed.json() == at, n

            listed = await call("GET", "/sessions?user_id=user123")
            assert (await cli("sessions", "--user-id", "user123", "--json")).json() == listed

            events = (await call("GET", f"/sessions/{sid}/events"))["events"]
            lines = (await cli("events", sid, "--json")).out.splitlines()
            assert [json.loads(line) for line in lines] == events

            written = await cli("snapshot", sid, "--json")
            assert written.status == 0 and written.json()["seq"] == now["version"]
            assert (await cli("verify")).status == 0
            reply = await call("POST", f"/sessions/{sid}/run", {"message": "again"})
            assert reply["message"]["role"] == "assistant"
            assert (await call("GET", f"/sessions/{sid}"))["version"] == now["version"] + 2
