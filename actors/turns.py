"""Agent turns, run on the asyncio loop (never inside an actor thread).

A turn: the actor records ``turn_started`` (the user's message); the runner
streams the agent's output to live subscribers and to a short buffer for
reconnecting clients; tool calls are recorded as events; the end is one durable
``turn_completed`` event holding the assistant's message, whether the turn
completed, was cancelled (its partial text is kept) or failed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog

from actors import metrics
from actors.agents import (
    AgentError,
    AgentRegistry,
    AgentSettings,
    AgentSpec,
    TextDelta,
    ToolCall,
    ToolResult,
    TurnInput,
)
from actors.bus import EventBus, Item, stream_message
from actors.clock import Clock, iso

log = structlog.get_logger("sessionhub.turns")

#: ``ask(session_id, command, args)``: a command to the session's actor.
Ask = Callable[[str, str, dict[str, Any]], Awaitable[Any]]


class Turn:
    """A running (or just finished) turn and its stream of API messages."""

    def __init__(self, session_id: str, ctx: dict[str, Any], buffer: int, now: float) -> None:
        self.session_id = session_id
        self.turn_id: str = ctx["turn_id"]
        self.chat_id: str = ctx["chat_id"]
        self.start_seq: int = ctx["seq"]
        self.ctx = ctx
        #: Recent chunks as (anchor, n, payload): the n-th chunk after durable event
        #: ``anchor`` (the turn's start, then each tool event it recorded).
        self.chunks: deque[tuple[int, int, dict[str, Any]]] = deque(maxlen=buffer)
        self.anchor = self.start_seq
        self.anchor_n = 0
        self.parts: list[str] = []
        self.listeners: list[asyncio.Queue[tuple[str | None, dict[str, Any]] | None]] = []
        self.done = asyncio.Event()
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.status = "running"
        self.task: asyncio.Task[None] | None = None
        self.start_payload = stream_message("stream_start", iso(now), {"turn_id": self.turn_id})

    def listen(self) -> asyncio.Queue[tuple[str | None, dict[str, Any]] | None]:
        q: asyncio.Queue[tuple[str | None, dict[str, Any]] | None] = asyncio.Queue()
        self.listeners.append(q)
        return q

    def unlisten(self, q: asyncio.Queue[Any]) -> None:
        if q in self.listeners:
            self.listeners.remove(q)

    def emit(self, sse_id: str | None, payload: dict[str, Any]) -> None:
        for q in self.listeners:
            q.put_nowait((sse_id, payload))

    def finish(self) -> None:
        for q in self.listeners:
            q.put_nowait(None)
        self.done.set()


class TurnStream:
    """What ``Hub.start_turn`` returns: iterate it for the run_stream messages.

    Leaving the iteration early (a client gone) does not stop the turn.
    """

    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self.turn_id = turn.turn_id
        self._queue = turn.listen()

    async def __aiter__(self) -> AsyncIterator[tuple[str | None, dict[str, Any]]]:
        try:
            yield str(self.turn.start_seq), self.turn.start_payload
            while True:
                item = await self._queue.get()
                if item is None:
                    return
                yield item
        finally:
            self.turn.unlisten(self._queue)

    async def aclose(self) -> None:
        """Stop reading (the turn goes on); nothing more is queued for this reader."""
        self.turn.unlisten(self._queue)


class TurnRunner:
    def __init__(
        self,
        ask: Ask,
        bus: EventBus,
        registry: AgentRegistry,
        settings: AgentSettings,
        clock: Clock,
        buffer: int,
        on_start: Callable[[str], None],
        on_end: Callable[[str], None],
    ) -> None:
        self.ask = ask
        self.bus = bus
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self.buffer = buffer
        self.on_start = on_start
        self.on_end = on_end
        self.turns: dict[str, Turn] = {}

    def running(self, session_id: str) -> list[Turn]:
        return [t for t in self.turns.values() if t.session_id == session_id]

    def get(self, turn_id: str) -> Turn | None:
        return self.turns.get(turn_id)

    def start(self, session_id: str, ctx: dict[str, Any]) -> Turn:
        turn = Turn(session_id, ctx, self.buffer, self.clock.now())
        self.turns[turn.turn_id] = turn
        self.on_start(session_id)
        turn.task = asyncio.get_running_loop().create_task(self._run(turn))
        return turn

    async def cancel(self, turn: Turn) -> None:
        if turn.task is not None and not turn.task.done():
            turn.task.cancel()
        await turn.done.wait()

    async def stop(self) -> None:
        """Cancel every running turn and wait until each end is recorded."""
        turns = list(self.turns.values())
        for turn in turns:
            if turn.task is not None and not turn.task.done():
                turn.task.cancel()
        for turn in turns:
            if turn.task is not None:
                await asyncio.gather(turn.task, return_exceptions=True)

    async def _run(self, turn: Turn) -> None:
        spec = AgentSpec.from_dict(turn.ctx["agent"])
        started = time.monotonic()
        status, error = "complete", None
        try:
            agent = self.registry.create(spec, self.settings)
            turn_input = TurnInput(
                session_id=turn.session_id,
                turn_id=turn.turn_id,
                chat_id=turn.chat_id,
                messages=turn.ctx["messages"],
                spec=spec,
                system_prompt=turn.ctx["system_prompt"],
            )
            async for out in agent.stream(turn_input):
                if isinstance(out, TextDelta):
                    if not out.text:
                        continue
                    if not turn.parts:
                        metrics.TIME_TO_FIRST_CHUNK.labels(spec.kind).observe(
                            time.monotonic() - started
                        )
                    self._chunk(turn, out.text)
                elif isinstance(out, ToolCall | ToolResult):
                    await self._record_tool(turn, out)
        except asyncio.CancelledError:
            status = "cancelled"
        except AgentError as exc:
            status, error = "failed", {"code": exc.code, "message": exc.message}
        except Exception as exc:
            log.exception("turn_failed", session_id=turn.session_id, turn_id=turn.turn_id)
            status, error = "failed", {"code": "agent_error", "message": str(exc)}
        await self._complete(turn, status, error, started, spec.kind)

    def _chunk(self, turn: Turn, text: str) -> None:
        turn.parts.append(text)
        payload = stream_message(
            "stream_chunk", iso(self.clock.now()), {"content": text, "sequence": len(turn.parts)}
        )
        turn.anchor_n += 1
        anchor, n = turn.anchor, turn.anchor_n
        turn.chunks.append((anchor, n, payload))
        sse_id = f"{anchor}.{n}"
        turn.emit(sse_id, payload)
        self.bus.publish(Item("chunk", turn.session_id, "stream_chunk", sse_id, payload, anchor, n))

    async def _record_tool(self, turn: Turn, out: ToolCall | ToolResult) -> None:
        if isinstance(out, ToolCall):
            args = {"type": "tool_called", "name": out.name, "arguments": out.arguments}
        else:
            args = {
                "type": "tool_result",
                "name": out.name,
                "content": out.content,
                "is_error": out.is_error,
            }
        args.update(turn_id=turn.turn_id, call_id=out.call_id)
        seq = await self.ask(turn.session_id, "record_tool", args)
        if seq:
            turn.anchor, turn.anchor_n = seq, 0

    async def _complete(
        self, turn: Turn, status: str, error: dict[str, Any] | None, started: float, kind: str
    ) -> None:
        text = "".join(turn.parts)
        duration_ms = (time.monotonic() - started) * 1000
        args: dict[str, Any] = {
            "turn_id": turn.turn_id,
            "content": text,
            "status": status,
            "duration_ms": round(duration_ms, 3),
        }
        if error:
            args["error"] = error
        try:
            for attempt in range(5):
                try:
                    turn.result = await self.ask(turn.session_id, "complete_turn", args)
                    break
                except asyncio.CancelledError:
                    if attempt == 4:
                        raise
        except Exception as exc:
            log.error("turn_not_recorded", turn_id=turn.turn_id, error=str(exc))
            status, error = "failed", {"code": "unavailable", "message": str(exc)}
        turn.status, turn.error = status, error
        metrics.TURN_LATENCY.labels(kind, status).observe(duration_ms / 1000)
        now = self.clock.now()
        if status == "failed":
            turn.emit(None, stream_message("error", iso(now), error or {}))
        else:
            data = {"complete_text": text, "turn_id": turn.turn_id, "status": status}
            if turn.result:
                data["message_id"] = turn.result["message"]["id"]
            turn.emit(None, stream_message("stream_end", iso(now), data))
        self.turns.pop(turn.turn_id, None)
        self.on_end(turn.session_id)
        turn.finish()
