"""``sessionhub serve`` as a process: help, env configuration, signals, the curl flows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.http_helpers import free_port

ROOT = Path(__file__).resolve().parents[1]


def _command() -> list[str]:
    script = Path(sys.executable).parent / "sessionhub"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sessionhub"]


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SESSIONHUB_") and not k.startswith("OPENAI_")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


class Process:
    """A ``sessionhub serve`` child process and the JSON lines it logged."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict] = []
        self.raw: list[str] = []

    async def wait_for(self, event: str, timeout: float = 20.0) -> dict:
        async def read():
            while True:
                line = await self.proc.stderr.readline()
                if not line:
                    raise AssertionError(f"process ended before {event!r}: {self.raw}")
                text = line.decode().strip()
                self.raw.append(text)
                try:
                    record = json.loads(text)
                except ValueError:
                    continue
                self.lines.append(record)
                if record.get("event") == event:
                    return record

        return await asyncio.wait_for(read(), timeout)

    async def finish(self, timeout: float = 20.0) -> int:
        out = await asyncio.wait_for(self.proc.stderr.read(), timeout)
        self.raw += out.decode().splitlines()
        for text in out.decode().splitlines():
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(text))
        return await asyncio.wait_for(self.proc.wait(), timeout)


async def _start(*args: str, cwd: Path, **env: str) -> Process:
    proc = await asyncio.create_subprocess_exec(
        *_command(),
        "serve",
        *args,
        cwd=cwd,
        env=_env(**env),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    return Process(proc)


def test_serve_help_documents_flags_and_env():
    """``sessionhub serve --help`` exits 0 and names the flags and their env variables."""
    out = subprocess.run(
        [*_command(), "serve", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=30,
        check=True,
    ).stdout
    text = " ".join(out.split())
    for flag, env in [
        ("--host", "SESSIONHUB_HOST"),
        ("--port", "SESSIONHUB_PORT"),
        ("--eventlog", "SESSIONHUB_EVENTLOG"),
        ("--config", "SESSIONHUB_CONFIG"),
        ("--api-keys", "SESSIONHUB_API_KEYS"),
        ("--api-keys-file", "SESSIONHUB_API_KEYS_FILE"),
        ("--insecure", "SESSIONHUB_INSECURE"),
        ("--cors-origins", "SESSIONHUB_CORS_ORIGINS"),
        ("--max-body-bytes", "SESSIONHUB_MAX_BODY_BYTES"),
        ("--openai-base-url", "OPENAI_BASE_URL"),
        ("--max-sessions-per-user", "SESSIONHUB_MAX_SESSIONS_PER_USER"),
        ("--idle-timeout-s", "SESSIONHUB_IDLE_TIMEOUT_S"),
        ("--log-level", "SESSIONHUB_LOG_LEVEL"),
        ("--log-format", "SESSIONHUB_LOG_FORMAT"),
    ]:
        assert flag in text and env in text, flag
    top = subprocess.run(
        [*_command(), "--help"], capture_output=True, text=True, env=_env(), timeout=30, check=True
    ).stdout
    assert "serve" in top


def test_refuses_a_non_loopback_address_without_keys(tmp_path):
    """An open server on 0.0.0.0 exits with status 2 and says why."""
    result = subprocess.run(
        [*_command(), "serve", "--host", "0.0.0.0", "--eventlog", "memory://"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "--insecure" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_port_from_env_and_clean_stop_on_signal(tmp_path, sig):
    """SESSIONHUB_PORT=... serves on that port; SIGINT/SIGTERM stop it cleanly, streams too."""
    port = free_port()
    proc = await _start(
        "--eventlog",
        "memory://",
        cwd=tmp_path,
        SESSIONHUB_PORT=str(port),
        SESSIONHUB_LOG_FORMAT="json",
    )
    try:
        listening = await proc.wait_for("listening")
        assert listening["port"] == port and listening["host"] == "127.0.0.1"
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as client:
            async with client.get(base + "/health") as resp:
                assert resp.status == 200
            async with client.post(
                base + "/sessions", json={"agent": {"kind": "echo", "params": {"delay_s": 1}}}
            ) as resp:
                sid = (await resp.json())["session_id"]
            async with client.post(
                base + "/sessions", json={"agent": {"kind": "echo", "params": {"delay_s": 1}}}
            ) as resp:
                sid2 = (await resp.json())["session_id"]
            stream = await client.get(f"{base}/sessions/{sid}/events/stream")
            assert stream.status == 200
            run = asyncio.create_task(
                client.post(f"{base}/sessions/{sid}/run", json={"message": "a b c d e"})
            )
            run_stream = await client.post(
                f"{base}/sessions/{sid2}/run_stream", json={"message": "f g h i j"}
            )
            assert run_stream.status == 200
            await asyncio.sleep(0.5)
            proc.proc.send_signal(sig)
            body = await asyncio.wait_for(stream.read(), 15)  # the stream is ended, not cut
            assert b"turn_started" in body and b"turn_completed" in body
            resp = await asyncio.wait_for(run, 15)
            assert resp.status == 200
            assert (await resp.json())["status"] == "cancelled"
            sse = (await asyncio.wait_for(run_stream.read(), 15)).decode()
            datas = [line[6:] for line in sse.splitlines() if line.startswith("data: ")]
            last = json.loads(datas[-1])
            assert last["type"] == "stream_end" and last["data"]["status"] == "cancelled"
        code = await proc.finish()
        assert code == 0, proc.raw
        events = [line.get("event") for line in proc.lines]
        assert "shutting_down" in events and events[-1] == "stopped"
    finally:
        if proc.proc.returncode is None:
            proc.proc.kill()
            await proc.proc.wait()


def _curl(*args: str) -> str:
    result = subprocess.run(
        ["curl", "-sS", "--fail-with-body", *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_flows_of_the_api(tmp_path):
    """The curl flows of API.md against ``sessionhub serve`` with its default SQLite log:
    create, save context, run, run_stream, follow-up run, list, stats, delete."""
    port = free_port()
    proc = await _start("--port", str(port), cwd=tmp_path, SESSIONHUB_LOG_FORMAT="json")
    try:
        await proc.wait_for("listening")
        base = f"http://127.0.0.1:{port}"
        j = ["-H", "Content-Type: application/json"]
        loop = asyncio.get_running_loop()

        async def curl(*args):
            return await loop.run_in_executor(None, lambda: _curl(*args))

        session = json.loads(
            await curl(
                "-X",
                "POST",
                f"{base}/sessions",
                *j,
                "-d",
                '{"user_id": "user123", "name": "My Work Session"}',
            )
        )
        sid = session["session_id"]
        assert session["status"] == "active" and session["user_id"] == "user123"
        saved = json.loads(
            await curl(
                "-X",
                "PUT",
                f"{base}/sessions/{sid}/context/project",
                *j,
                "-d",
                '{"name": "sessionhub", "stage": "alpha"}',
            )
        )
        assert saved["key"] == "project" and saved["value"]["stage"] == "alpha"
        ran = json.loads(
            await curl(
                "-X", "POST", f"{base}/sessions/{sid}/run", *j, "-d", '{"message": "What is 2+2?"}'
            )
        )
        assert ran["message"]["role"] == "assistant" and ran["turn_id"]
        sse = await curl(
            "-N",
            "-X",
            "POST",
            f"{base}/sessions/{sid}/run_stream",
            *j,
            "-d",
            '{"message": "Tell me more"}',
        )
        assert "event:" not in sse
        datas = [json.loads(line[6:]) for line in sse.splitlines() if line.startswith("data: ")]
        assert datas[0]["type"] == "stream_start" and datas[-1]["type"] == "stream_end"
        assert sse.startswith("id: ")
        follow = json.loads(
            await curl(
                "-X",
                "POST",
                f"{base}/sessions/{sid}/run",
                *j,
                "-d",
                '{"message": "And the first question?"}',
            )
        )
        assert "(turn 3)" in follow["message"]["content"]
        listing = json.loads(await curl(f"{base}/sessions?user_id=user123"))
        assert [s["session_id"] for s in listing["sessions"]] == [sid]
        stats = json.loads(await curl(f"{base}/sessions/{sid}/stats"))
        assert stats["total_turns"] == 3 and stats["message_count"] == 6
        deleted = json.loads(await curl("-X", "DELETE", f"{base}/sessions/{sid}"))
        assert deleted == {"success": True, "message": f"Session {sid} deleted"}
        result = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{base}/sessions/{sid}"],
            capture_output=True,
            text=True,
        )
        assert result.stdout == "404"
        proc.proc.send_signal(signal.SIGTERM)
        assert await proc.finish() == 0
        assert (tmp_path / "data" / "events.db").exists()
    finally:
        if proc.proc.returncode is None:
            proc.proc.kill()
            await proc.proc.wait()
