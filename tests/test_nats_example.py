"""examples/nats_client.py drives a real server over a real nats-server, end to end."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from actors.catalog import ListQuery
from actors.hub import Hub
from eventlog.backends.memory import MemoryEventLog
from tests.nats_fixtures import NatsServer, nats_server
from transports.nats import start_nats_transport

__all__ = ["nats_server"]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "nats_client.py"


async def test_example_runs_a_session_over_nats(nats_server: NatsServer) -> None:
    """The example creates, stores context, runs, streams a run and lists events."""
    async with Hub.running(MemoryEventLog()) as hub:
        transport = await start_nats_transport(hub, nats_server.url, "ex", {"k1": "alice"})
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(EXAMPLE), "--url", nats_server.url,
                "--prefix", "ex", "--key", "k1",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            await transport.stop()
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "created session" in text
    assert 'context project = {"name": "demo"}' in text
    assert "run -> " in text and "2+2" in text
    assert "stream: Echo: tell me a short story" in text
    assert "stream ended: Echo: tell me a short story" in text
    assert "turn_completed" in text
    assert "an unknown session is refused: 404 session_not_found" in text
    sessions = hub.catalog.list(ListQuery(user_id="alice"))
    assert len(sessions["sessions"]) == 1
