"""Drive a sessionhub session purely over NATS, with nothing but nats-py.

Start a server with NATS (``sessionhub serve --nats nats://127.0.0.1:4222``), then::

    python examples/nats_client.py --url nats://127.0.0.1:4222 [--key KEY] [--prefix sessionhub]

It creates a session, stores and reads context, runs one turn, runs a streamed turn
printing its chunks as they arrive on ``<prefix>.events.<session_id>.>``, and lists the
session's events. Every command is a NATS request on ``<prefix>.cmd.<command>``; a refusal
carries the header ``Sessionhub-Status`` and the API's error body.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from typing import Any

import nats


class SessionhubError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        error = body.get("error", {})
        super().__init__(f"{status} {error.get('code')}: {error.get('message')}")
        self.status = status
        self.body = body


class Client:
    """The commands of API.md "NATS transport" as one method."""

    def __init__(self, nc: Any, prefix: str, key: str | None) -> None:
        self.nc = nc
        self.prefix = prefix
        self.headers = {"Authorization": f"Bearer {key}"} if key else None

    async def call(self, command: str, **payload: Any) -> dict[str, Any]:
        msg = await self.nc.request(
            f"{self.prefix}.cmd.{command}",
            json.dumps(payload).encode(),
            timeout=30,
            headers=self.headers,
        )
        body = json.loads(msg.data)
        status = (msg.headers or {}).get("Sessionhub-Status")
        if status is not None:
            raise SessionhubError(int(status), body)
        return body


async def main(url: str, prefix: str, key: str | None) -> int:
    nc = await nats.connect(url, name="sessionhub-example")
    try:
        hub = Client(nc, prefix, key)
        session = await hub.call("session.create", name="nats example", tags=["example"])
        sid = session["session_id"]
        print(f"created session {sid} (status {session['status']}, version {session['version']})")

        await hub.call("context.set", session_id=sid, key="project", value={"name": "demo"})
        got = await hub.call("context.get", session_id=sid, key="project")
        print(f"context project = {json.dumps(got['value'])}")

        reply = await hub.call("run", session_id=sid, message="What is 2+2?")
        print(f"run -> {reply['message']['content']}")

        # A streamed run: subscribe to the session's events first, then start the turn.
        # The chunks may arrive before the reply with the turn id: note which turns ended.
        ended: dict[str, asyncio.Event] = {}

        def ended_event(turn_id: str) -> asyncio.Event:
            return ended.setdefault(turn_id, asyncio.Event())

        async def on_event(msg: Any) -> None:
            event = json.loads(msg.data)
            kind, data = event["type"], event["data"]
            if kind == "stream_start":
                print("stream: ", end="", flush=True)
            elif kind == "stream_chunk":
                print(data["content"], end="", flush=True)
            elif kind == "stream_end":
                print(f"\nstream ended: {data['complete_text']}")
                ended_event(data["turn_id"]).set()
            elif kind == "error":
                print(f"\nthe turn failed: {data}")
                for waiting in ended.values():
                    waiting.set()

        sub = await nc.subscribe(f"{prefix}.events.{sid}.>", cb=on_event)
        await nc.flush()
        started = await hub.call(
            "run", session_id=sid, message="tell me a short story", stream=True
        )
        await asyncio.wait_for(ended_event(started["turn_id"]).wait(), 60)
        await sub.unsubscribe()

        events = await hub.call("events.read", session_id=sid)
        print(f"events ({events['last_seq']}):")
        for event in events["events"]:
            print(f"  {event['seq']:>3} {event['type']}")

        try:
            await hub.call("session.get", session_id=f"missing-{uuid.uuid4().hex[:6]}")
        except SessionhubError as exc:
            print(f"an unknown session is refused: {exc}")
        return 0
    finally:
        await nc.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="nats://127.0.0.1:4222", help="NATS server URL")
    parser.add_argument("--prefix", default="sessionhub", help="sessionhub's subject prefix")
    parser.add_argument("--key", default=None, help="API key (sent as Authorization: Bearer)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.url, args.prefix, args.key)))
