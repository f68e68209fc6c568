"""``sessionhub events``: a stream's events as the API shows them, and ``--follow``."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading

import pytest

from eventlog import open_eventlog
from tests.test_ops_common import (
    ROOT,
    child_env,
    command,
    populated_sqlite,
    run_cli,
)


@pytest.fixture
async def url(tmp_path):
    return await populated_sqlite(tmp_path / "events.db")


def test_events_json_lines_are_the_api_event_objects(url):
    """``--json`` prints one API event object a line; --after and --type filter."""
    log = open_eventlog(url)
    try:
        expected = [e.to_api() for e in log.read("work")]
    finally:
        log.close()
    result = run_cli("events", "work", "--eventlog", url, "--json")
    assert result.status == 0, result
    assert [json.loads(line) for line in result.out.splitlines()] == expected
    after = run_cli("events", "work", "--eventlog", url, "--json", "--after", "3")
    assert [json.loads(line)["seq"] for line in after.out.splitlines()] == [
        e["seq"] for e in expected[3:]
    ]
    typed = run_cli("events", "work", "--eventlog", url, "--json", "--type", "app.step_done")
    assert [json.loads(line)["data"]["data"]["step"] for line in typed.out.splitlines()] == [
        1,
        2,
        3,
    ]
    table = run_cli("events", "work", "--eventlog", url)
    assert "session_created" in table.out and "turn_completed" in table.out
    missing = run_cli("events", "nope", "--eventlog", url)
    assert missing.status == 1 and "no events" in missing.err


_APPEND = """
import sys
from eventlog import NewEvent, open_eventlog
log = open_eventlog(sys.argv[1])
try:
    log.append("work", [NewEvent("app.from_elsewhere", {"n": 42}, "other-process")],
               log.last_seq("work"))
finally:
    log.close()
"""


def test_follow_sees_an_event_appended_by_another_process(url):
    """``events --follow`` prints what another process appends, and stops on SIGINT."""
    argv = ["events", "work", "--eventlog", url, "--json", "--follow", "--interval", "0.05"]
    proc = subprocess.Popen(
        [*command(), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    try:
        log = open_eventlog(url)
        try:
            existing = log.last_seq("work")
        finally:
            log.close()
        seen = [json.loads(lines.get(timeout=15)) for _ in range(existing)]
        assert seen[-1]["seq"] == existing
        appended = subprocess.run(
            [sys.executable, "-c", _APPEND, url],
            env=child_env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert appended.returncode == 0, appended.stderr
        new = json.loads(lines.get(timeout=15))
        assert new["seq"] == existing + 1 and new["type"] == "app.from_elsewhere"
        assert new["command_id"] == "other-process"
        proc.send_signal(subprocess.signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
