"""``sessionhub sessions``: the HTTP list's filters, answered from the log alone."""

from __future__ import annotations

import pytest

from actors.config import HubConfig
from actors.hub import Hub
from eventlog import open_eventlog
from tests.test_ops_common import OPERATOR, populated_sqlite, run_cli


@pytest.fixture
async def url(tmp_path):
    return await populated_sqlite(tmp_path / "events.db")


def _ids(result) -> list[str]:
    assert result.status == 0, result
    return sorted(s["session_id"] for s in result.json()["sessions"])


@pytest.mark.parametrize(
    ("flags", "query", "expected"),
    [
        ((), {}, ["bobs", "review", "work"]),
        (("--user-id", "alice"), {"user_id": "alice"}, ["review", "work"]),
        (("--status", "closed"), {"status": "closed"}, ["done"]),
        (("--status", "paused"), {"status": "paused"}, ["bobs"]),
        (("--tag", "work"), {"tag": "work"}, ["bobs", "work"]),
        (("--capability", "review"), {"capability": "review"}, ["work"]),
        (("--agent-type", "GPT-4"), {"agent_type": "GPT-4"}, ["review"]),
        (("--user-id", "bob", "--tag", "work"), {"user_id": "bob", "tag": "work"}, ["bobs"]),
    ],
)
async def test_sessions_json_filters_as_the_http_list(url, flags, query, expected):
    """Each filter gives the sessions, and the very body, the hub's list gives."""
    result = run_cli("sessions", "--eventlog", url, "--json", *flags)
    assert _ids(result) == expected
    log = open_eventlog(url)
    try:
        async with Hub.running(log, HubConfig(sweep_interval_s=0)) as hub:
            assert result.json() == await hub.list_sessions(OPERATOR, query)
    finally:
        log.close()


def test_sessions_limit_cursor_and_table(url):
    """--limit pages with a cursor; without --json a table names each session."""
    first = run_cli("sessions", "--eventlog", url, "--json", "--limit", "2").json()
    assert len(first["sessions"]) == 2 and first["total"] == 3 and first["next_cursor"]
    rest = run_cli(
        "sessions", "--eventlog", url, "--json", "--limit", "2", "--cursor", first["next_cursor"]
    ).json()
    ids = [s["session_id"] for s in first["sessions"] + rest["sessions"]]
    assert sorted(ids) == ["bobs", "review", "work"] and rest["next_cursor"] is None
    table = run_cli("sessions", "--eventlog", url)
    assert table.status == 0
    header = table.out.splitlines()[0]
    assert header.split()[:3] == ["SESSION", "ID", "USER"]
    assert "work" in table.out and "3 of 3 sessions" in table.out
    assert run_cli("sessions", "--eventlog", url, "--status", "nope").status == 2
