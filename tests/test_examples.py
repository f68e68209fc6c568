"""``examples/``: each example runs against a real ``sessionhub serve`` started here.

The curl flows need ``curl`` and ``bash``; the browser page needs Debian's ``chromium``,
driven headless over the DevTools protocol. Without a tool the test skips with a
reason, except under CI (``CI=true``), where it fails: CI installs them. The NATS
example has its own test (``test_nats_example.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.test_ops_common import ROOT, child_env, command

EXAMPLES = ROOT / "examples"
CURL_SCRIPTS = sorted((EXAMPLES / "curl").glob("[0-9][0-9]_*.sh"))

#: Scripts whose routes a server may not serve yet: the API.md paths each one needs.
NEEDS_PATHS = {
    "06_collaboration.sh": ("/hub/messages", "/memory/{key}", "/hub/threads/{thread_id}"),
    "07_team.sh": ("/collaborations", "/collaborations/{collaboration_id}"),
}


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        reason = f"{tool} is not installed"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; CI must run the examples")
        pytest.skip(reason)
    return path


class Server:
    """``sessionhub serve`` in a child process, ready once it logged ``listening``."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*command(), "serve", "--port", "0", "--eventlog", "memory://", *args],
            cwd=workdir,
            env=child_env(SESSIONHUB_LOG_FORMAT="json"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        ready = threading.Event()
        self.url = ""

        def pump() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if record.get("event") == "listening":
                        self.url = f"http://127.0.0.1:{record['port']}"
                        ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(30) or not self.url:
            self.stop()
            raise AssertionError("sessionhub serve did not start: " + "".join(self.lines))

    def paths(self) -> set[str]:
        with urllib.request.urlopen(self.url + "/openapi.json", timeout=10) as resp:
            return set(json.load(resp)["paths"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="sessionhub-examples-") as tmp:
        srv = Server(Path(tmp))
        try:
            yield srv
        finally:
            srv.stop()


@pytest.mark.parametrize("script", CURL_SCRIPTS, ids=lambda p: p.name)
def test_curl_flow(script: Path, server: Server):
    """Each curl flow of the seeds runs end to end against the server (BASE_URL)."""
    _need("curl")
    bash = _need("bash")
    missing = [p for p in NEEDS_PATHS.get(script.name, ()) if p not in server.paths()]
    if missing:
        pytest.skip(f"the server does not serve {', '.join(missing)} yet")
    result = subprocess.run(
        [bash, str(script)],
        env={**os.environ, "BASE_URL": server.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert result.stdout.rstrip().endswith("done"), result.stdout[-2000:]


def test_curl_scripts_are_executable_and_strict():
    """Every flow is executable, uses the shared lib (strict mode, BASE_URL, API_KEY)."""
    assert len(CURL_SCRIPTS) >= 5
    lib = (EXAMPLES / "curl" / "lib.sh").read_text()
    assert "set -euo pipefail" in lib and "BASE_URL" in lib and "API_KEY" in lib
    for script in CURL_SCRIPTS:
        assert os.access(script, os.X_OK), script.name
        text = script.read_text()
        assert text.startswith("#!/usr/bin/env bash") and 'source "$(dirname "$0")/lib.sh"' in text


def test_curl_flow_with_an_api_key(tmp_path):
    """With API keys on, the flows send API_KEY as a bearer token and pass."""
    _need("curl")
    bash = _need("bash")
    srv = Server(tmp_path, "--api-keys", "k1=alice")
    try:
        result = subprocess.run(
            [bash, str(EXAMPLES / "curl" / "03_context.sh")],
            env={**os.environ, "BASE_URL": srv.url, "API_KEY": "k1", "USER_ID": "alice"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
        denied = subprocess.run(
            [bash, str(EXAMPLES / "curl" / "03_context.sh")],
            env={**os.environ, "BASE_URL": srv.url, "API_KEY": "", "USER_ID": "alice"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert denied.returncode != 0 and "401" in denied.stderr and "unauthorized" in denied.stderr
    finally:
        srv.stop()


def test_python_client_streams_and_resumes(server: Server):
    """examples/python_client.py runs, streams a turn, and resumes a dropped event stream
    with Last-Event-ID with nothing repeated or lost."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "python_client.py"), "--base-url", server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "run: Echo: What is 2+2?" in out
    assert "run_stream: Echo: stream this answer word by word (turn 2)" in out
    assert "reconnecting with Last-Event-ID" in out
    assert "resume: ok" in out


# --- the browser page in headless Chromium ----------------------------------------------------


class DevTools:
    """A minimal Chrome DevTools Protocol client over one WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.events: asyncio.Queue[dict] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            elif "method" in data:
                await self.events.put(data)

    async def send(self, method: str, **params: Any) -> dict:
        call_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[call_id] = future
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        answer = await asyncio.wait_for(future, 30)
        assert "error" not in answer, answer
        return answer["result"]

    async def wait_event(self, method: str) -> dict:
        while True:
            event = await asyncio.wait_for(self.events.get(), 30)
            if event["method"] == method:
                return event

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def close(self) -> None:
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader
        await self.ws.close()


async def _start_chromium(binary: str, profile: Path) -> tuple[asyncio.subprocess.Process, str]:
    """Headless Chromium with DevTools on a free port; answers its browser WebSocket URL."""
    proc = await asyncio.create_subprocess_exec(
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "about:blank",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    seen: list[str] = []

    async def devtools_url() -> str:
        assert proc.stderr is not None
        while True:
            line = (await proc.stderr.readline()).decode(errors="replace")
            if not line:
                raise AssertionError("chromium exited: " + "".join(seen))
            seen.append(line)
            if "DevTools listening on " in line:
                return line.split("DevTools listening on ", 1)[1].strip()

    try:
        url = await asyncio.wait_for(devtools_url(), 30)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise

    async def drain() -> None:  # keep its stderr pipe from filling up
        assert proc.stderr is not None
        while await proc.stderr.readline():
            pass

    proc._drain = asyncio.create_task(drain())  # type: ignore[attr-defined]
    return proc, url


async def test_browser_page_streams_a_run_in_headless_chromium(tmp_path):
    """examples/browser/index.html, served from its own origin, creates a session,
    follows it with EventSource and shows the run's answer as it streams: Chromium
    renders the streamed text, chunk by chunk, and the final answer."""
    binary = None
    for name in ("chromium", "chromium-browser"):
        binary = binary or shutil.which(name)
    if binary is None:
        _need("chromium")

    # The page's own origin: a static server for examples/browser.
    app = web.Application()
    app.router.add_static("/", EXAMPLES / "browser")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    page_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    origin = f"http://127.0.0.1:{page_port}"
    srv = await asyncio.to_thread(Server, tmp_path, "--cors-origins", origin)
    proc = None
    try:
        proc, browser_ws = await _start_chromium(binary, tmp_path / "profile")
        message = "hello from the browser"
        page = f"{origin}/index.html?api={srv.url}&autorun=1&message=" + urllib.request.quote(
            message
        )
        async with aiohttp.ClientSession() as http:
            browser = DevTools(await http.ws_connect(browser_ws, max_msg_size=0))
            target = await browser.send("Target.createTarget", url="about:blank")
            host = browser_ws.split("/devtools/")[0]
            tab = DevTools(
                await http.ws_connect(f"{host}/devtools/page/{target['targetId']}", max_msg_size=0)
            )
            try:
                await tab.send("Page.enable")
                await tab.send("Page.navigate", url=page)
                await tab.wait_event("Page.loadEventFired")
                final = await tab.evaluate("window.sessionhubDone")
                shown = await tab.evaluate(
                    "({output: document.getElementById('output').textContent,"
                    " chunks: Number(document.getElementById('chunks').textContent),"
                    " state: document.body.dataset.state,"
                    " log: document.getElementById('log').textContent})"
                )
            finally:
                await tab.close()
                await browser.close()
        assert final == f"Echo: {message}"
        assert shown["output"] == final and shown["state"] == "done", shown
        assert shown["chunks"] == len(final.split(" ")), shown  # streamed word by word
        assert "turn_completed" in shown["log"]
    finally:
        if proc is not None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            proc._drain.cancel()  # type: ignore[attr-defined]
        await asyncio.to_thread(srv.stop)
        await runner.cleanup()
