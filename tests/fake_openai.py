"""A scriptable OpenAI-compatible server for tests, on a loopback port.

It speaks the chat-completions protocol the ``openai`` agent uses: with
``"stream": true`` a ``text/event-stream`` of ``data: {chat.completion.chunk}`` messages
ending in ``data: [DONE]``; otherwise one ``chat.completion`` JSON object. It records
every request, and answers each one with the next scripted :class:`FakeReply`::

    async with FakeOpenAI() as server:
        server.enqueue(
            FakeReply.failure(429, retry_after=0),           # first request
            FakeReply.tool_call("calculate", {"expression": "6*7"}),
            FakeReply(text="It is 42."),                     # third request
        )
        settings = AgentSettings(openai_base_url=server.base_url)   # ".../v1"
        ...
        assert len(server.chat_requests) == 3
        assert server.last_request.json["messages"][-1]["role"] == "tool"

When the queue is empty, ``responder(request_json)`` answers if set, else ``default``
(the text ``"Hello from FakeOpenAI."``). Routes: ``POST /v1/chat/completions`` and
``GET /v1/models``. With ``api_key`` set, a request without ``Authorization: Bearer
<api_key>`` gets 401.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FakeOpenAI", "FakeReply", "FakeToolCall", "RecordedRequest"]

_WORD = re.compile(r"\s*\S+\s*")


@dataclass(frozen=True)
class FakeToolCall:
    """A tool call the fake model makes; ``arguments`` is sent as a JSON string."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        """The arguments as the wire carries them."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


@dataclass(frozen=True)
class FakeReply:
    """How the fake answers one chat-completions request.

    Attributes:
        text: The assistant's text, streamed one word per chunk (unless ``chunks``).
        chunks: Explicit content pieces, one chunk each, instead of splitting ``text``.
        tool_calls: Tool calls streamed after the text; their arguments are sent in
            pieces of ``argument_piece`` characters, as real servers do.
        status: An HTTP status >= 400 answers with an OpenAI error body instead.
        error_message: The ``error.message`` of that body.
        headers: Extra response headers (e.g. ``Retry-After``).
        delay_s: Seconds to wait before sending anything (to trigger timeouts).
        chunk_delay_s: Seconds to wait before each chunk after the first.
        disconnect_after: Cut the connection after this many chunks (0: right after the
            response headers) instead of finishing the stream.
        finish_reason: Defaults to ``tool_calls`` when there are tool calls, else ``stop``.
        stream: ``None`` follows the request's ``stream``; ``False`` always answers JSON.
        send_done: Whether to end the stream with ``data: [DONE]``.
    """

    text: str = ""
    chunks: list[str] | None = None
    tool_calls: list[FakeToolCall] = field(default_factory=list)
    status: int = 200
    error_message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    disconnect_after: int | None = None
    finish_reason: str | None = None
    stream: bool | None = None
    send_done: bool = True
    argument_piece: int = 7

    @classmethod
    def failure(
        cls, status: int, message: str | None = None, *, retry_after: float | str | None = None
    ) -> FakeReply:
        """An error answer, e.g. ``FakeReply.failure(429, retry_after=0)``."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return cls(status=status, error_message=message, headers=headers)

    @classmethod
    def tool_call(
        cls, name: str, arguments: dict[str, Any] | str, *, id: str | None = None, text: str = ""
    ) -> FakeReply:
        """An answer that calls one tool (after optional ``text``)."""
        return cls(text=text, tool_calls=[FakeToolCall(name, arguments, id)])

    def content_pieces(self) -> list[str]:
        """The content chunks this reply streams."""
        if self.chunks is not None:
            return list(self.chunks)
        return _WORD.findall(self.text) or ([self.text] if self.text else [])


@dataclass(frozen=True)
class RecordedRequest:
    """A request the fake received; ``json`` is its parsed body (``None`` if not JSON)."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    received_at: float

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages of a chat-completions request."""
        return list((self.json or {}).get("messages") or [])


class FakeOpenAI:
    """An OpenAI-compatible server on ``127.0.0.1`` and a free port.

    Use it as an async context manager, or call :meth:`start` and :meth:`close`.

    Attributes:
        requests: Every request received, oldest first.
        default: The reply when the queue is empty and there is no ``responder``.
        responder: ``request_json -> FakeReply`` for replies that depend on the request.
        disconnects: How many streams the client abandoned before they ended.
        model: The model name echoed when a request names none.
    """

    def __init__(
        self,
        *replies: FakeReply,
        default: FakeReply | None = None,
        responder: Callable[[dict[str, Any]], FakeReply] | None = None,
        api_key: str | None = None,
        model: str = "fake-model",
    ) -> None:
        self.requests: list[RecordedRequest] = []
        self.default = default or FakeReply(text="Hello from FakeOpenAI.")
        self.responder = responder
        self.api_key = api_key
        self.model = model
        self.disconnects = 0
        self._queue: list[FakeReply] = list(replies)
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> FakeOpenAI:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=0.1,
            handler_cancellation=True,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        """Stop listening and drop open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- the test's view ------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port it listens on."""
        if self._port is None:
            raise RuntimeError("FakeOpenAI is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """What to configure as the OpenAI base URL: ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, *replies: FakeReply) -> None:
        """Answer the next chat-completions requests with these replies, in order."""
        self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """Replies still queued."""
        return len(self._queue)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The chat-completions requests received, oldest first."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def last_request(self) -> RecordedRequest:
        """The latest chat-completions request."""
        requests = self.chat_requests
        if not requests:
            raise AssertionError("FakeOpenAI received no chat-completions request")
        return requests[-1]

    # --- handlers -------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        return self.api_key is None or (
            request.headers.get("Authorization") == f"Bearer {self.api_key}"
        )

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.headers), None, time.time())
        )
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.", "invalid_request_error")
        return web.json_response(
            {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "fake"}]}
        )

    def _next_reply(self, body: dict[str, Any]) -> FakeReply:
        if self._queue:
            return self._queue.pop(0)
        if self.responder is not None:
            return self.responder(body)
        return self.default

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.headers), body, time.time())
        )
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' is a required property", "invalid_request_error")
        reply = self._next_reply(body)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.status >= 400:
            kind = "rate_limit_error" if reply.status == 429 else "server_error"
            message = reply.error_message or f"fake failure {reply.status}"
            return _error(reply.status, message, kind, reply.headers)
        model = body.get("model") or self.model
        completion_id = f"chatcmpl-fake-{next(self._ids)}"
        streaming = bool(body.get("stream")) if reply.stream is None else reply.stream
        if not streaming:
            return web.json_response(
                _completion(completion_id, model, reply), headers=reply.headers
            )
        return await self._stream(request, completion_id, model, reply)

    async def _stream(
        self, request: web.Request, completion_id: str, model: str, reply: FakeReply
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                **reply.headers,
            }
        )
        await response.prepare(request)
        try:
            for n, chunk in enumerate(_chunks(completion_id, model, reply)):
                if reply.disconnect_after is not None and n >= reply.disconnect_after:
                    _cut(request)
                    return response
                if n and reply.chunk_delay_s:
                    await asyncio.sleep(reply.chunk_delay_s)
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if reply.send_done:
                await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            self.disconnects += 1
            raise
        return response


def _cut(request: web.Request) -> None:
    """Drop the connection mid-response, as a crashing upstream would."""
    if request.transport is not None:
        with contextlib.suppress(Exception):
            request.transport.abort()


def _error(
    status: int, message: str, kind: str, headers: dict[str, str] | None = None
) -> web.Response:
    code = "rate_limit_exceeded" if status == 429 else None
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": None, "code": code}},
        status=status,
        headers=headers or {},
    )


def _chunk(
    completion_id: str, model: str, delta: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def _finish_reason(reply: FakeReply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def _call_id(completion_id: str, index: int, call: FakeToolCall) -> str:
    return call.id or f"call_{completion_id.rsplit('-', 1)[-1]}_{index}"


def _chunks(completion_id: str, model: str, reply: FakeReply) -> list[dict[str, Any]]:
    """Every ``chat.completion.chunk`` of a streamed reply, in order."""
    out = [_chunk(completion_id, model, {"role": "assistant", "content": ""})]
    out += [_chunk(completion_id, model, {"content": piece}) for piece in reply.content_pieces()]
    for index, call in enumerate(reply.tool_calls):
        head = {
            "index": index,
            "id": _call_id(completion_id, index, call),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        out.append(_chunk(completion_id, model, {"tool_calls": [head]}))
        arguments = call.arguments_json()
        step = max(1, reply.argument_piece)
        for start in range(0, len(arguments), step):
            piece = {"index": index, "function": {"arguments": arguments[start : start + step]}}
            out.append(_chunk(completion_id, model, {"tool_calls": [piece]}))
    out.append(_chunk(completion_id, model, {}, _finish_reason(reply)))
    return out


def _completion(completion_id: str, model: str, reply: FakeReply) -> dict[str, Any]:
    """The non-streaming ``chat.completion`` object of a reply."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": _call_id(completion_id, index, call),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json()},
            }
            for index, call in enumerate(reply.tool_calls)
        ]
    words = len(reply.text.split())
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_reason(reply),
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": words, "total_tokens": words + 1},
    }
