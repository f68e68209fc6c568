"""A streamed run on a node of several: the turn runs on the session's owner node.

The run is started through the NATS transport's ``dispatch`` (relayed to the owner if
that is another node) and its stream is rebuilt here from this node's own event
stream of the session, which sees the owner's durable events (through JetStream) and
its chunks (through the NATS events subjects), into the shape of ``run_stream``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from actors.bus import stream_message
from actors.caller import Caller
from actors.errors import HubError
from actors.hub import Hub


async def relayed_turn(
    hub: Hub, nats: Any, caller: Caller, session_id: str, body: dict[str, Any], auth: str | None
) -> AsyncIterator[tuple[str | None, dict[str, Any]]]:
    """Start the turn where its session lives; raises ``HubError`` before streaming."""
    last = (await hub.read_events(caller, session_id, {"tail": "1"}))["last_seq"]
    events = await hub.open_event_stream(caller, session_id, str(last))
    status, reply = await nats.dispatch(
        "run", {**body, "session_id": session_id, "stream": True}, auth
    )
    if status >= 300:
        await events.aclose()
        error = reply.get("error", {})
        raise HubError(
            error.get("message", "the run was refused"),
            code=error.get("code"),
            status=status,
            details=error.get("details"),
        )
    return _follow(events, reply["turn_id"])


#: Chunks held while their anchor event has not arrived yet (they travel over NATS core,
#: the durable events through JetStream, so a chunk can overtake its turn's start).
MAX_EARLY_CHUNKS = 10_000
#: After the turn's end arrived, how long its last chunks may still take.
TAIL_WAIT_S = 2.0


async def _follow(events: Any, turn_id: str) -> AsyncIterator[tuple[str | None, dict[str, Any]]]:
    anchors: set[int] = set()
    early: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    parts: list[str] = []
    end: tuple[str | None, dict[str, Any]] | None = None
    stream = aiter(events)
    try:
        while True:
            if end is not None:
                if "".join(parts) == end[1]["data"].get("complete_text", ""):
                    break
                try:
                    sse_id, payload = await asyncio.wait_for(anext(stream), TAIL_WAIT_S)
                except (TimeoutError, StopAsyncIteration):
                    break
            else:
                try:
                    sse_id, payload = await anext(stream)
                except StopAsyncIteration:
                    return
            kind, data = payload.get("type"), payload.get("data") or {}
            if kind == "stream_chunk":
                anchor = int(sse_id.split(".", 1)[0])
                if anchor in anchors:
                    parts.append(data.get("content", ""))
                    yield sse_id, payload
                elif sum(len(v) for v in early.values()) < MAX_EARLY_CHUNKS:
                    early.setdefault(anchor, []).append((sse_id, payload))
                continue
            if data.get("turn_id") != turn_id:
                continue
            if kind == "turn_started":
                yield (
                    sse_id,
                    stream_message("stream_start", payload["created_at"], {"turn_id": turn_id}),
                )
            if kind in ("turn_started", "tool_called", "tool_result"):
                anchors.add(payload["seq"])
                for held_id, held in early.pop(payload["seq"], []):
                    parts.append(held["data"].get("content", ""))
                    yield held_id, held
            elif kind == "turn_completed":
                message = data["message"]
                if message["status"] == "failed":
                    error = data.get("error") or {"code": "agent_error", "message": "failed"}
                    end = (None, stream_message("error", payload["created_at"], error))
                    break
                done = {
                    "complete_text": message["content"],
                    "turn_id": turn_id,
                    "status": message["status"],
                    "message_id": message["id"],
                }
                end = (None, stream_message("stream_end", payload["created_at"], done))
        if end is not None:
            yield end
    finally:
        await events.aclose()
