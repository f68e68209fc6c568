"""``sessionhub snapshot`` / ``compact``: snapshots that the hub then starts from."""

from __future__ import annotations

from actors.config import HubConfig
from actors.hub import Hub
from actors.session_actor import load_state
from eventlog import open_eventlog
from tests.test_ops_common import OPERATOR, populate, run_cli, sqlite_url


async def _log_without_snapshots(tmp_path) -> str:
    url = sqlite_url(tmp_path / "events.db")
    log = open_eventlog(url)
    try:
        await populate(log, snapshot_every=10_000)  # the hub writes none
    finally:
        log.close()
    return url


async def test_snapshot_writes_the_replayed_state(tmp_path):
    """``snapshot S`` stores the state at the last seq; the hub starts from it unchanged."""
    url = await _log_without_snapshots(tmp_path)
    result = run_cli("snapshot", "work", "--eventlog", url, "--json")
    assert result.status == 0, result
    written = result.json()
    assert written["written"] and written["previous_seq"] is None
    again = run_cli("snapshot", "work", "--eventlog", url, "--json").json()
    assert not again["written"] and again["seq"] == written["seq"]
    assert run_cli("replay", "work", "--eventlog", url, "--verify").status == 0
    log = open_eventlog(url)
    try:
        snap = log.load_snapshot("work")
        assert snap is not None and snap.seq == written["seq"] == log.last_seq("work")
        replayed = run_cli("replay", "work", "--eventlog", url, "--json").json()
        assert load_state(log, "work").to_api() == replayed
        async with Hub.running(log, HubConfig(sweep_interval_s=0)) as hub:
            assert await hub.get_session(OPERATOR, "work") == replayed
    finally:
        log.close()


async def test_compact_snapshots_only_long_sessions(tmp_path):
    """``compact --min-events N`` snapshots sessions with N events past their snapshot;
    ``--dry-run`` writes nothing."""
    url = await _log_without_snapshots(tmp_path)
    log = open_eventlog(url)
    try:
        lengths = {s: log.last_seq(s) for s in ("work", "review", "bobs", "done", "gone")}
    finally:
        log.close()
    long = sorted(s for s, n in lengths.items() if n >= 3)
    assert "work" in long and "review" not in long
    dry = run_cli("compact", "--eventlog", url, "--min-events", "3", "--dry-run", "--json")
    assert dry.status == 0, dry
    assert sorted(i["session_id"] for i in dry.json()["sessions"]) == long
    log = open_eventlog(url)
    try:
        assert all(log.load_snapshot(s) is None for s in lengths)
    finally:
        log.close()
    done = run_cli("compact", "--eventlog", url, "--min-events", "3", "--json").json()
    assert sorted(i["session_id"] for i in done["sessions"] if i["written"]) == long
    log = open_eventlog(url)
    try:
        for sid, n in lengths.items():
            snap = log.load_snapshot(sid)
            assert (snap.seq if snap else None) == (n if sid in long else None), sid
    finally:
        log.close()
    assert (
        run_cli("compact", "--eventlog", url, "--min-events", "3", "--json").json()["sessions"]
        == []
    )
    assert run_cli("verify", "--eventlog", url).status == 0
