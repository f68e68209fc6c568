"""The client subcommands against a real server: tables, --json, errors and exit statuses."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from sessionhub.cli import main
from tests.http_helpers import free_port, running_server

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"ka": "alexa", "kb": "bob"}


@pytest.fixture
async def srv(monkeypatch):
    for name in ("SESSIONHUB_URL", "SESSIONHUB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    # The server's request logs would go to the captured stdout: keep them apart.
    with capture_logs():
        async with running_server(api_keys=KEYS) as server:
            yield server


class Cli:
    """Runs ``sessionhub <args>`` in a thread (the server runs on the test's loop)."""

    def __init__(self, srv, capsys) -> None:
        self.srv = srv
        self.capsys = capsys

    async def __call__(self, *args: str, key: str | None = "ka") -> tuple[int, str, str]:
        argv = [*args, "--url", self.srv.url]
        if key is not None:
            argv += ["--api-key", key]
        self.capsys.readouterr()
        code = await asyncio.to_thread(main, argv)
        out, err = self.capsys.readouterr()
        return code, out, err

    async def json(self, *args: str, key: str | None = "ka"):
        code, out, err = await self(*args, "--json", key=key)
        assert code == 0, (args, out, err)
        return json.loads(out)


@pytest.fixture
def cli(srv, capsys):
    return Cli(srv, capsys)


async def test_register_list_status_ping(cli, srv):
    """register creates agent sessions; list filters by status and capability; status and
    ping change them; tables by default, the API's JSON with --json."""
    code, out, err = await cli(
        "register", "cece-001", "Cece", "Claude", "--capabilities", "python,review,planning"
    )
    assert code == 0, err
    assert "registered" in out and "cece-001" in out and "Cece" in out and "Claude" in out
    dev = await cli.json("register", "Developer", "GPT-4", "--capabilities", "python")
    assert dev["agent_name"] == "Developer" and dev["agent_type"] == "GPT-4"
    assert dev["user_id"] == "alexa" and dev["capabilities"] == ["python"]
    cece = await srv.get("cece-001", key="ka")
    assert cece["capabilities"] == ["python", "review", "planning"]

    code, out, _ = await cli("list")
    assert code == 0
    header, rule, *rows = out.splitlines()
    assert header.split()[:4] == ["SESSION", "ID", "AGENT", "TYPE"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert any(r.startswith("cece-001") and "Cece" in r for r in rows)
    assert "2 sessions" in out and "active 2" in out
    listed = await cli.json("list", "--capability", "review")
    assert [s["session_id"] for s in listed["sessions"]] == ["cece-001"]

    code, out, _ = await cli("status", "cece-001", "working", "--task", "Code review")
    assert code == 0 and "working" in out and "Code review" in out
    listed = await cli.json("list", "--status", "working")
    assert [(s["session_id"], s["current_task"]) for s in listed["sessions"]] == [
        ("cece-001", "Code review")
    ]
    code, out, _ = await cli("list", "--status", "working", "--capability", "python")
    assert "Code review" in out and "Developer" not in out
    cleared = await cli.json("status", "cece-001", "idle", "--clear-task")
    assert cleared["status"] == "idle" and cleared["current_task"] is None

    before = (await srv.get("cece-001", key="ka"))["last_activity_at"]
    code, out, _ = await cli("ping", "cece-001")
    assert code == 0 and out.startswith("cece-001: idle, last activity ")
    after = (await srv.get("cece-001", key="ka"))["last_activity_at"]
    assert after >= before
    # Bob sees none of alexa's sessions.
    listed = await cli.json("list", key="kb")
    assert listed["sessions"] == [] and listed["total"] == 0


async def test_send_broadcast_inbox(cli, srv):
    """send delivers with type and data, --reply-to threads, broadcast reaches the user's
    other sessions, inbox shows them as a table or JSON."""
    a = (await srv.create(key="ka", agent_name="A"))["session_id"]
    b = (await srv.create(key="ka", agent_name="B"))["session_id"]
    c = (await srv.create(key="ka", agent_name="C"))["session_id"]
    sent = await cli.json(
        "send",
        a,
        b,
        "Need code review",
        "Can you review my Python changes?",
        "--type",
        "request",
        "--data",
        '{"pr": 123}',
    )
    assert sent["type"] == "request" and sent["delivered_to"] == [b]
    assert sent["data"] == {"pr": 123} and sent["body"] == "Can you review my Python changes?"
    code, out, _ = await cli(
        "send", b, a, "Re: review", "LGTM", "--type", "response", "--reply-to", sent["message_id"]
    )
    assert code == 0 and "sent" in out and sent["thread_id"] in out
    code, out, _ = await cli("broadcast", a, "Deployment starting", "in 5 minutes")
    assert code == 0 and "broadcast to 2 sessions" in out

    code, out, _ = await cli("inbox", b)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["SEQ", "TYPE", "FROM", "SUBJECT"]
    assert "Need code review" in out and "Deployment starting" in out and '{"pr":123}' in out
    assert "2 messages" in out
    only = await cli.json("inbox", b, "--type", "request")
    assert [m["subject"] for m in only["messages"]] == ["Need code review"]
    after = await cli.json("inbox", b, "--after", str(only["messages"][0]["seq"]))
    assert [m["subject"] for m in after["messages"]] == ["Deployment starting"]
    replies = await cli.json("inbox", a)
    assert [m["thread_id"] for m in replies["messages"]] == [sent["thread_id"]]
    code, out, _ = await cli("inbox", c, "--type", "handoff")
    assert code == 0 and "0 messages" in out


async def test_memory_set_get_search_and_stats(cli, srv):
    """memory-set stores JSON or text with type, tags and TTL; memory-get reads the latest or
    (--all) every version; memory-search filters; stats sums it all up."""
    a = (await srv.create(key="ka"))["session_id"]
    b = (await srv.create(key="ka"))["session_id"]
    code, out, _ = await cli(
        "memory-set",
        a,
        "current_task",
        "Building collaboration system",
        "--type",
        "state",
        "--tags",
        "task,active",
    )
    assert code == 0 and "stored" in out and "Building collaboration system" in out
    entry = await cli.json(
        "memory-set", b, "current_task", '{"name": "x", "n": 2}', "--type", "state", "--ttl", "60"
    )
    assert entry["value"] == {"name": "x", "n": 2} and entry["version"] == 2
    assert entry["expires_at"] is not None
    raw = await cli.json("memory-set", a, "answer", "42", "--raw", "--type", "fact")
    assert raw["value"] == "42"
    number = await cli.json("memory-set", a, "count", "42")
    assert number["value"] == 42 and number["type"] == "note"

    code, out, _ = await cli("memory-get", "current_task")
    assert code == 0 and '{"name":"x","n":2}' in out and "version: 2" in out
    got = await cli.json("memory-get", "current_task", "--session", b)
    assert got["value"] == {"name": "x", "n": 2}
    history = await cli.json("memory-get", "current_task", "--all")
    assert [e["value"] for e in history["entries"]] == [
        "Building collaboration system",
        {"name": "x", "n": 2},
    ]
    code, out, _ = await cli("memory-get", "current_task", "--all")
    assert "2 versions" in out and "Building collaboration system" in out

    found = await cli.json("memory-search", "--pattern", "c*")
    assert [e["key"] for e in found["entries"]] == ["count", "current_task"]
    found = await cli.json("memory-search", "--type", "fact")
    assert [e["key"] for e in found["entries"]] == ["answer"]
    found = await cli.json("memory-search", "--session", b)
    assert [e["key"] for e in found["entries"]] == ["current_task"]
    await cli.json("memory-set", a, "tagged", "1", "--tags", "task,active")
    found = await cli.json("memory-search", "--tags", "active,task")
    assert [e["key"] for e in found["entries"]] == ["tagged"]
    code, out, _ = await cli("memory-search")
    assert code == 0 and out.splitlines()[0].split()[:2] == ["KEY", "TYPE"]
    assert "4 entries" in out

    code, out, _ = await cli("stats")
    assert code == 0
    assert "user:     alexa" in out and "sessions: 2 (active 2)" in out
    assert "memory:   4 entries, 5 writes" in out
    stats = await cli.json("stats")
    assert stats["memory"]["entries"] == 4 and stats["sessions"]["total"] == 2


async def test_errors_are_one_line_and_a_nonzero_exit(cli, srv):
    """The server's refusals print its code and message and exit 1; usage errors exit 2."""
    a = (await srv.create(key="ka"))["session_id"]
    code, out, err = await cli("ping", "nope")
    assert code == 1 and out == ""
    assert err.strip() == "sessionhub ping: 404 session_not_found: session 'nope' not found"
    code, _, err = await cli("send", a, "nope", "subject")
    assert code == 1 and "404 session_not_found" in err
    code, _, err = await cli("memory-get", "missing")
    assert code == 1 and "404 not_found: memory key 'missing' not found" in err
    code, _, err = await cli("memory-search", "--pattern", "task_[1")
    assert code == 1 and "400 invalid_request" in err and "field: pattern" in err
    code, _, err = await cli("memory-set", a, "../etc", "1")
    assert code == 1 and "400 invalid_request" in err
    code, _, err = await cli("list", key="wrong")
    assert code == 1 and "401 unauthorized" in err
    code, _, err = await cli("list", key=None)
    assert code == 1 and "401 unauthorized" in err
    code, _, err = await cli("send", a, a, "s", "--data", "[1, 2]")
    assert code == 2 and "--data must be a JSON object" in err
    code, _, err = await cli("send", a, a, "s", "--data", "{nope")
    assert code == 2 and "--data must be a JSON object" in err
    code, _, err = await cli("list", "--limit", "0")
    assert code == 2
    with pytest.raises(SystemExit) as exit_:
        await cli("status", a, "paused")
    assert exit_.value.code == 2


async def test_connection_refused_and_bad_url(capsys, monkeypatch):
    """No server at the URL: a clear message and exit 1; a URL that is not http: exit 2."""
    monkeypatch.delenv("SESSIONHUB_URL", raising=False)
    url = f"http://127.0.0.1:{free_port()}"
    code = await asyncio.to_thread(main, ["list", "--url", url])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert f"sessionhub list: cannot reach the server at {url}" in err
    assert "is `sessionhub serve` running?" in err
    code = await asyncio.to_thread(main, ["stats", "--url", "ftp://example"])
    _, err = capsys.readouterr()
    assert code == 2 and "http(s)://" in err


def _command() -> list[str]:
    script = Path(sys.executable).parent / "sessionhub"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sessionhub"]


async def test_the_installed_command_reads_url_and_key_from_the_environment(srv):
    """``sessionhub register`` / ``list`` as processes: SESSIONHUB_URL and SESSIONHUB_API_KEY
    are enough, and --help names every client subcommand."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONHUB_")}
    env.update(SESSIONHUB_URL=srv.url, SESSIONHUB_API_KEY="ka", PYTHONPATH=str(ROOT))

    async def run(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *_command(),
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode(), err.decode()

    code, out, err = await run("register", "Reviewer", "Claude", "--capabilities", "review")
    assert code == 0, err
    code, out, err = await run("list", "--capability", "review", "--json")
    assert code == 0, err
    assert [s["agent_name"] for s in json.loads(out)["sessions"]] == ["Reviewer"]
    code, out, _ = await run("--help")
    assert code == 0
    for name in (
        "register",
        "list",
        "ping",
        "status",
        "send",
        "broadcast",
        "inbox",
        "memory-set",
        "memory-get",
        "memory-search",
        "stats",
    ):
        assert name in out, name
