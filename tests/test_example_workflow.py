"""examples/multi_session_workflow.py runs to its end against a real ``sessionhub serve``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.http_helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "multi_session_workflow.py"


def _command() -> list[str]:
    script = Path(sys.executable).parent / "sessionhub"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sessionhub"]


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SESSIONHUB_") and not k.startswith("OPENAI_")
    }
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT), **extra)
    return env


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, *args: str) -> AsyncIterator[str]:
    """``sessionhub serve`` on a free port with a SQLite log (as ``make serve``); its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = await asyncio.create_subprocess_exec(
        *_command(),
        "serve",
        "--port",
        str(port),
        "--eventlog",
        f"sqlite:///{tmp_path}/events.db",
        "--log-format",
        "json",
        *args,
        cwd=tmp_path,
        env=_env(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while not await asyncio.to_thread(_healthy, url):
            if proc.returncode is not None:
                raise AssertionError((await proc.stderr.read()).decode())
            assert asyncio.get_running_loop().time() < deadline, "server did not start"
            await asyncio.sleep(0.1)
        yield url
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)


async def _run_example(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        *args,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


STEPS = [
    "== step 1: register three agent sessions",
    "registered planner: Planner (Claude)",
    "registered developer: Developer (GPT-4)",
    "registered reviewer: Reviewer (Claude)",
    'who can review?: ["Reviewer"]',
    "== step 2: the planner shares the project plan",
    'memory project_plan: version 1, {"phase": "design"',
    "broadcast 'Project started' reached: 2 sessions",
    "== step 3: the developer reads the plan and asks the planner a question",
    'developer read project_plan: {"phase": "design"',
    "request sent: msg-",
    'planner\'s inbox (requests): ["API design question"]',
    "thread: request: Should we use REST or GraphQL? -> response: REST",
    "== step 4: the developer offers the code review; the reviewer accepts",
    "task_offer sent: msg-",
    '"files": ["api.py"], "tests": "passing"',
    'code the developer marked ready: ["api_code"]',
    "task_accept: msg-",
    "== step 5: the developer hands the deployment off to the reviewer",
    'reviewer received handoff: {"task": "deploy-prod", "stage": "testing"}',
    'reviewer read the developer\'s deploy_state: {"stage": "testing"}',
    "message_received events in the reviewer's log: 3",
    "== step 6: stats",
    "Planner: active",
    "Developer: idle",
    "Reviewer: working, current task: Code review",
    "messages sent: 6",
    '"entries": 3, "writes": 3',
    'memory written by the developer: ["api_code", "deploy_state"]',
    "closed the three sessions",
    "workflow complete",
]


@pytest.mark.parametrize("auth", [False, True], ids=["open", "api-key"])
async def test_the_workflow_runs_to_the_end_and_prints_each_step(tmp_path, auth):
    """Every step of the planner / developer / reviewer scenario shows, in order; the
    sessions are closed at the end and their messages and memory stay on the server."""
    server_args = ("--api-keys", "k1=alexa") if auth else ()
    client_args = ("--api-key", "k1") if auth else ()
    async with serve(tmp_path, *server_args) as url:
        code, out, err = await _run_example("--url", url, *client_args)
        assert code == 0, (out, err)
        position = 0
        for line in STEPS:
            found = out.find(line, position)
            assert found >= 0, f"{line!r} missing (in order) from:\n{out}"
            position = found + len(line)
        request = urllib.request.Request(
            url + "/sessions?status=closed",
            headers={"Authorization": "Bearer k1"} if auth else {},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            closed = json.load(resp)
        assert sorted(s["agent_name"] for s in closed["sessions"]) == [
            "Developer",
            "Planner",
            "Reviewer",
        ]
        # A second run on the same server works too (the plan gets a new version).
        code, out, err = await _run_example("--url", url, *client_args)
        assert code == 0, err
        assert "memory project_plan: version 2" in out
        assert "broadcast 'Project started' reached: 2 sessions" in out


async def test_the_example_reports_an_unreachable_server():
    """Without a server the example says so and exits 1."""
    code, _, err = await _run_example("--url", f"http://127.0.0.1:{free_port()}")
    assert code == 1 and "cannot reach" in err
