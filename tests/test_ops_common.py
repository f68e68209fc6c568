"""The operator tools' shared ground: help, the event log flag, the progress bar.

Also the helpers the other ``test_ops_*`` modules use: :func:`populate` writes a
realistic log through the real :class:`~actors.hub.Hub`, :func:`run_cli` runs the
``sessionhub`` command in-process, :func:`cli_process` as a child process, and
:func:`serve_process` runs ``sessionhub serve`` for tests that need a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import pty
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from actors.config import HubConfig
from actors.hub import Caller, Hub
from eventlog import EventLog, open_eventlog
from sessionhub.cli import main
from sessionhub.ops.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
ALICE = Caller("alice")
BOB = Caller("bob")
OPERATOR = Caller()

TOOLS = ("sessions", "replay", "events", "export", "import", "verify", "snapshot", "compact")


@dataclass
class Result:
    status: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(*argv: str) -> Result:
    """``sessionhub ARGV`` in this process; stdout is real UTF-8 bytes, as in a pipe."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="\n")
    err = io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            status = main(list(argv))
        except SystemExit as exc:  # argparse: --help, usage errors
            status = int(exc.code or 0)
        out.flush()
    return Result(status, out.buffer.getvalue().decode("utf-8"), err.getvalue())


def command() -> list[str]:
    script = Path(sys.executable).parent / "sessionhub"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sessionhub"]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONHUB_")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def cli_process(*argv: str, **kwargs: Any) -> subprocess.CompletedProcess:
    """``sessionhub ARGV`` as a child process (text, captured, 30 s timeout)."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 30)
    kwargs.setdefault("env", child_env())
    return subprocess.run([*command(), *argv], **kwargs)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


async def populated_sqlite(path: Path) -> str:
    """A SQLite log at ``path`` filled by :func:`populate` and closed; returns its URL."""
    url = sqlite_url(path)
    log = open_eventlog(url)
    try:
        await populate(log)
    finally:
        log.close()
    return url


async def populate(log: EventLog, *, snapshot_every: int = 5) -> dict[str, Any]:
    """A log with what a real hub writes: sessions in every state, runs, chats, context,
    client events, hub messages, shared memory, a deleted and a purged session, and
    snapshots (every ``snapshot_every`` events). Returns the ids and session objects."""
    config = HubConfig(sweep_interval_s=0, snapshot_every=snapshot_every)
    async with Hub.running(log, config) as hub:
        work = await hub.create_session(
            ALICE,
            {
                "session_id": "work",
                "name": "My Work Session",
                "tags": ["work"],
                "capabilities": ["python", "review"],
                "agent_name": "Cece",
                "agent_type": "Claude",
                "metadata": {"user": "john", "note": "naïve ☃ \u2028 line"},
            },
        )
        sid = work["session_id"]
        await hub.context_set(ALICE, sid, "plan", {"steps": ["design", "build"]})
        await hub.run(ALICE, sid, {"message": "What is 2+2?"})
        await hub.run(ALICE, sid, {"message": "and once more"})
        await hub.update_session(ALICE, sid, {"status": "working", "current_task": "review"})
        await hub.append_events(
            ALICE,
            sid,
            {
                "events": [
                    {"type": "app.step_done", "data": {"step": 1}},
                    {"type": "app.step_done", "data": {"step": 2}, "context_delta": {"s": 2}},
                    {"type": "app.step_done", "data": {"step": 3}},
                ]
            },
        )
        review = await hub.create_session(
            ALICE, {"session_id": "review", "tags": ["review"], "agent_type": "GPT-4"}
        )
        await hub.send_message(
            ALICE,
            {"from_session": sid, "to_session": "review", "type": "request", "body": "look"},
        )
        await hub.memory_set(ALICE, "current_task", {"session_id": sid, "value": "build"})
        bobs = await hub.create_session(BOB, {"session_id": "bobs", "tags": ["work"]})
        await hub.pause_session(BOB, "bobs")
        closed = await hub.create_session(BOB, {"session_id": "done"})
        await hub.close_session(BOB, "done")
        await hub.create_session(BOB, {"session_id": "gone"})
        await hub.delete_session(BOB, "gone")
        await hub.create_session(BOB, {"session_id": "purged"})
        await hub.delete_session(BOB, "purged", purge=True)
        sessions = {
            s: await hub.get_session(OPERATOR, s) for s in ("work", "review", "bobs", "done")
        }
    del review, bobs, closed
    return {"sessions": sessions}


def test_every_tool_has_help_and_the_eventlog_flag():
    """Each operator subcommand answers --help (exit 0) naming --eventlog and its env."""
    for tool in TOOLS:
        result = run_cli(tool, "--help")
        assert result.status == 0, (tool, result)
        text = " ".join(result.out.split())
        assert "--eventlog" in text and "SESSIONHUB_EVENTLOG" in text, tool
    top = run_cli("--help")
    for tool in TOOLS:
        assert tool in top.out


def test_read_tools_refuse_a_missing_sqlite_file_and_create_nothing(tmp_path):
    """A mistyped SQLite path is an error (exit 1), not a new empty database."""
    url = sqlite_url(tmp_path / "nope" / "events.db")
    for argv in (
        ("sessions",),
        ("replay", "x"),
        ("events", "x"),
        ("export",),
        ("verify",),
        ("compact",),
    ):
        result = run_cli(*argv, "--eventlog", url)
        assert result.status == 1, (argv, result)
        assert "no event log at" in result.err
    assert not (tmp_path / "nope").exists()


async def test_the_event_log_comes_from_the_environment_like_serve(tmp_path, monkeypatch):
    """Without --eventlog, SESSIONHUB_EVENTLOG (as for ``serve``) names the log."""
    url = await populated_sqlite(tmp_path / "events.db")
    monkeypatch.setenv("SESSIONHUB_EVENTLOG", url)
    result = run_cli("sessions", "--json")
    assert result.status == 0, result
    assert {s["session_id"] for s in result.json()["sessions"]} == {"work", "review", "bobs"}
    config = tmp_path / "sessionhub.toml"
    config.write_text(f'eventlog = "{url}"\n')
    monkeypatch.delenv("SESSIONHUB_EVENTLOG")
    assert run_cli("sessions", "--json", "--config", str(config)).json()["total"] == 3


def test_progress_bar_draws_only_when_enabled():
    """The bar writes nothing unless enabled; enabled, it shows the fraction and ends its line."""
    quiet = io.StringIO()
    with Progress("working", 10, stream=quiet) as bar:  # a StringIO is not a terminal
        bar.advance(10)
    assert quiet.getvalue() == ""
    shown = io.StringIO()
    with Progress("working", 10, stream=shown, enabled=True) as bar:
        bar.advance(4)
        assert "40.0%" in bar.render()
        bar.advance(6)
    text = shown.getvalue()
    assert text.startswith("\rworking [") and "100.0% 10/10 events" in text
    assert text.endswith("\n")


async def test_long_work_draws_a_bar_on_a_terminal_and_stays_quiet_in_a_pipe(tmp_path):
    """``export`` with stderr a pipe prints nothing there; with stderr a terminal, a bar."""
    url = sqlite_url(tmp_path / "events.db")
    log = open_eventlog(url)
    try:
        await populate(log)
        count = log.count()
    finally:
        log.close()
    piped = cli_process("export", "--eventlog", url)
    assert piped.returncode == 0 and piped.stderr == ""
    assert len(piped.stdout.splitlines()) == count

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [*command(), "export", "--eventlog", url],
            stdout=subprocess.PIPE,
            stderr=follower,
            env=child_env(),
            timeout=30,
        )
        os.close(follower)
        follower = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child's end is closed
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert proc.returncode == 0
    assert len(proc.stdout.splitlines()) == count  # the data is untouched by the bar
    text = drawn.decode()
    assert "exporting [" in text and f"{count}/{count}" in text


@pytest.mark.parametrize("tool", ["sessions", "verify"])
def test_a_bad_setting_is_a_usage_error(tool, tmp_path):
    """A config file that does not parse is reported with exit status 2."""
    config = tmp_path / "bad.toml"
    config.write_text("eventlog = [\n")
    result = run_cli(tool, "--config", str(config))
    assert result.status == 2 and result.err


class ServeProcess:
    """A ``sessionhub serve`` child process on a free port, ready once it logged ``listening``."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.url = ""
        self.port = 0
        self.log_lines: list[str] = []

    async def _ready(self, timeout: float) -> None:
        async def read() -> None:
            while True:
                line = await self.proc.stderr.readline()
                if not line:
                    raise AssertionError(f"sessionhub serve ended early: {self.log_lines}")
                text = line.decode(errors="replace").strip()
                self.log_lines.append(text)
                try:
                    record = json.loads(text)
                except ValueError:
                    continue
                if record.get("event") == "listening":
                    self.port = int(record["port"])
                    self.url = f"http://127.0.0.1:{self.port}"
                    return

        await asyncio.wait_for(read(), timeout)

    async def _drain(self) -> None:
        while await self.proc.stderr.readline():
            pass

    async def stop(self, timeout: float = 20.0) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
        return await self.proc.wait()


@contextlib.asynccontextmanager
async def serve_process(*args: str, cwd: Path, **env: str) -> AsyncIterator[ServeProcess]:
    """Run ``sessionhub serve --port 0 ARGS`` (JSON logs) for the duration of the block."""
    proc = await asyncio.create_subprocess_exec(
        *command(),
        "serve",
        "--port",
        "0",
        *args,
        cwd=cwd,
        env=child_env(SESSIONHUB_LOG_FORMAT="json", **env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    server = ServeProcess(proc)
    drain: asyncio.Task | None = None
    try:
        await server._ready(30)
        drain = asyncio.create_task(server._drain())  # keep the pipe from filling up
        yield server
    finally:
        await server.stop()
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
