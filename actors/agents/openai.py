"""The ``openai`` agent: any OpenAI-compatible chat-completions server, over aiohttp.

Where it connects is server configuration (:class:`AgentSettings`), never the client's.
A turn is one or more ``POST {base_url}/chat/completions`` requests with ``stream: true``:

1. The request carries the model (``spec.model``, else ``params.model``, else
   ``gpt-4o-mini``), the system prompt then the chat's history, the sampling options
   of ``spec.params`` and the built-in tools the agent exposes.
2. Content deltas of the SSE stream are yielded as :class:`TextDelta` as they arrive;
   tool-call deltas (by ``index``: ``id``, ``function.name``, ``function.arguments``)
   are accumulated.
3. If the model asked for tools, each call is yielded as :class:`ToolCall`, run, and its
   :class:`ToolResult` yielded; the assistant's ``tool_calls`` message and the ``tool``
   messages are appended and the model is asked again. After ``max_tool_rounds`` rounds
   the last request says ``tool_choice: "none"`` so the model has to answer in text.

``params`` (checked when the session is created, so a typo is a 400, not a failed turn):

* sampling options forwarded as they are: ``temperature``, ``top_p``, ``max_tokens``,
  ``max_completion_tokens``, ``presence_penalty``, ``frequency_penalty``, ``stop``,
  ``seed``, ``logit_bias``, ``user``, ``response_format``, ``reasoning_effort``,
  ``parallel_tool_calls``, ``tool_choice``;
* ``model``: the model when ``spec.model`` is not set;
* ``tools``: names of built-in tools to expose (default ``["calculate"]``; ``[]`` for
  none, for servers that do not take tools);
* ``max_tool_rounds``: 1 to 10, default 5;
* ``extra_body``: an object merged into the request body for server-specific options.

Failure semantics. A request that gets 429, a 5xx or a connection error is retried
``settings.max_retries`` times with exponential backoff from ``settings.retry_backoff_s``
(a ``Retry-After`` header wins, capped at 30 s), but only while that request has not
yielded anything: text already shown is never repeated. A timeout is not retried (it has
already cost ``settings.timeout_s``). What is left becomes :class:`AgentError`:
``rate_limited`` (429), ``upstream_error`` (other statuses, a broken or malformed
stream), ``upstream_timeout``, ``upstream_unavailable`` (cannot connect). The
upstream status and message are in the error's text.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from actors.agents import calculator
from actors.agents.base import (
    ERR_RATE_LIMITED,
    ERR_TOO_MANY_TOOL_ROUNDS,
    ERR_UPSTREAM,
    ERR_UPSTREAM_TIMEOUT,
    ERR_UPSTREAM_UNAVAILABLE,
    AgentError,
    AgentOutput,
    AgentSettings,
    AgentSpec,
    InvalidAgentSpec,
    TextDelta,
    ToolCall,
    ToolResult,
    TurnInput,
)

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_TOOLS = ("calculate",)
DEFAULT_MAX_TOOL_ROUNDS = 5
MAX_TOOL_ROUNDS = 10
MAX_RETRY_AFTER_S = 30.0
MAX_CONNECT_TIMEOUT_S = 10.0
_ERROR_BODY_CHARS = 500

_NUMBER = (int, float)
_SAMPLING_PARAMS: dict[str, tuple[type, ...]] = {
    "temperature": _NUMBER,
    "top_p": _NUMBER,
    "max_tokens": (int,),
    "max_completion_tokens": (int,),
    "presence_penalty": _NUMBER,
    "frequency_penalty": _NUMBER,
    "stop": (str, list),
    "seed": (int,),
    "logit_bias": (dict,),
    "user": (str,),
    "response_format": (dict,),
    "reasoning_effort": (str,),
    "parallel_tool_calls": (bool,),
    "tool_choice": (str, dict),
}
_AGENT_OPTIONS = ("model", "tools", "max_tool_rounds", "extra_body")
_RESERVED_BODY_KEYS = ("model", "messages", "stream", "tools")
_MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")
_ROLES = ("system", "developer", "user", "assistant", "tool")


class ToolError(Exception):
    """A built-in tool refused its arguments; the message goes back to the model."""


@dataclass(frozen=True)
class BuiltinTool:
    """A tool the ``openai`` agent can expose to the model and run itself."""

    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any]], str]

    def schema(self) -> dict[str, Any]:
        """The entry of the request's ``tools`` list."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def _run_calculate(arguments: dict[str, Any]) -> str:
    expression = arguments.get("expression")
    if not isinstance(expression, str):
        raise ToolError("the argument 'expression' must be a string")
    try:
        return calculator.calculate(expression)
    except calculator.CalculationError as e:
        raise ToolError(f"cannot compute {expression}: {e}") from None


BUILTIN_TOOLS: dict[str, BuiltinTool] = {
    calculator.TOOL_NAME: BuiltinTool(
        name=calculator.TOOL_NAME,
        description=calculator.TOOL_DESCRIPTION,
        parameters=calculator.TOOL_PARAMETERS,
        run=_run_calculate,
    ),
}


# --- configuration ------------------------------------------------------------------------


def _check_params(params: dict[str, Any]) -> None:
    for name, value in params.items():
        where = f"agent.params.{name}"
        if name in _SAMPLING_PARAMS:
            types = _SAMPLING_PARAMS[name]
            bad_bool = isinstance(value, bool) and bool not in types
            if value is not None and (bad_bool or not isinstance(value, types)):
                kinds = " or ".join(sorted({t.__name__ for t in types}))
                raise InvalidAgentSpec(where, f"{where} must be of type {kinds}")
        elif name not in _AGENT_OPTIONS:
            known = ", ".join(sorted([*_SAMPLING_PARAMS, *_AGENT_OPTIONS]))
            raise InvalidAgentSpec(
                where, f"{where} is not an option of the openai agent; known: {known}"
            )
    model = params.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidAgentSpec("agent.params.model", "agent.params.model must be a string")
    tools = params.get("tools", list(DEFAULT_TOOLS))
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        raise InvalidAgentSpec("agent.params.tools", "agent.params.tools must be a list of names")
    unknown = [t for t in tools if t not in BUILTIN_TOOLS]
    if unknown:
        raise InvalidAgentSpec(
            "agent.params.tools",
            f"agent.params.tools names unknown tool {unknown[0]!r}; "
            f"built-in tools: {', '.join(sorted(BUILTIN_TOOLS))}",
        )
    rounds = params.get("max_tool_rounds", DEFAULT_MAX_TOOL_ROUNDS)
    if (
        isinstance(rounds, bool)
        or not isinstance(rounds, int)
        or not 1 <= rounds <= MAX_TOOL_ROUNDS
    ):
        raise InvalidAgentSpec(
            "agent.params.max_tool_rounds",
            f"agent.params.max_tool_rounds must be an integer from 1 to {MAX_TOOL_ROUNDS}",
        )
    extra = params.get("extra_body", {})
    if not isinstance(extra, dict):
        raise InvalidAgentSpec(
            "agent.params.extra_body", "agent.params.extra_body must be an object"
        )
    reserved = [k for k in extra if k in _RESERVED_BODY_KEYS]
    if reserved:
        raise InvalidAgentSpec(
            "agent.params.extra_body",
            f"agent.params.extra_body may not set {reserved[0]!r}",
        )


def build_messages(turn: TurnInput) -> list[dict[str, Any]]:
    """The request's messages: the system prompt, then the chat history.

    Only the keys the API knows are sent. A ``tool`` message whose call is not declared
    by an earlier assistant message, and a declared call without its result, are left
    out: the server would refuse the request, and the assistant's answer that followed
    them is in the history anyway.
    """
    system = turn.system_prompt if turn.system_prompt is not None else turn.spec.system_prompt
    out: list[dict[str, Any]] = []
    if system:
        out.append({"role": "system", "content": system})
    answered = {m.get("tool_call_id") for m in turn.messages if m.get("role") == "tool"} - {None}
    declared: set[str] = set()
    for message in turn.messages:
        role = message.get("role")
        if role not in _ROLES:
            continue
        msg = {k: message[k] for k in _MESSAGE_KEYS if k in message}
        if role == "tool":
            if msg.get("tool_call_id") not in declared:
                continue
            msg["content"] = _as_text(msg.get("content"))
        elif role == "assistant" and "tool_calls" in msg:
            calls = [
                c
                for c in msg.get("tool_calls") or []
                if isinstance(c, dict) and c.get("id") in answered
            ]
            declared.update(c["id"] for c in calls)
            if calls:
                msg["tool_calls"] = calls
            else:
                del msg["tool_calls"]
                if not msg.get("content"):
                    continue
        if msg.get("content") is None and "tool_calls" not in msg:
            msg["content"] = ""
        out.append(msg)
    return out


def _as_text(content: Any) -> str:
    if content is None:
        return ""
    return content if isinstance(content, str) else json.dumps(content)


# --- one completion -----------------------------------------------------------------------


@dataclass
class _PendingCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class _Completion:
    """What one request has produced so far."""

    text: str = ""
    tool_calls: dict[int, _PendingCall] = field(default_factory=dict)
    finish_reason: str | None = None
    yielded: bool = False
    done: bool = False

    def reset(self) -> None:
        """Forget what a failed attempt produced (it yielded nothing, see ``yielded``)."""
        self.text, self.tool_calls, self.finish_reason, self.done = "", {}, None, False

    def add_tool_call_delta(self, delta: dict[str, Any], position: int) -> None:
        index = delta.get("index", position)
        call = self.tool_calls.setdefault(
            index if isinstance(index, int) else position, _PendingCall()
        )
        if isinstance(delta.get("id"), str):
            call.id = delta["id"]
        function = delta.get("function") or {}
        if isinstance(function.get("name"), str):
            call.name += function["name"]
        if isinstance(function.get("arguments"), str):
            call.arguments += function["arguments"]
        elif isinstance(function.get("arguments"), dict):
            call.arguments += json.dumps(function["arguments"])


class _Retryable(Exception):
    """A failure worth another attempt, if this request has not yielded anything yet."""

    def __init__(self, error: AgentError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


async def _error_detail(resp: aiohttp.ClientResponse) -> str:
    try:
        body = await resp.text()
    except (aiohttp.ClientError, UnicodeDecodeError):
        body = ""
    try:
        error = json.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            return str(message)[:_ERROR_BODY_CHARS]
    except (ValueError, AttributeError):
        pass
    return body.strip()[:_ERROR_BODY_CHARS] or (resp.reason or "")


class OpenAIAgent:
    """Streams a chat completion from an OpenAI-compatible server, running built-in tools."""

    def __init__(self, spec: AgentSpec, settings: AgentSettings) -> None:
        base_url = settings.openai_base_url
        if not base_url:
            raise InvalidAgentSpec(
                "agent.kind",
                "the openai agent needs an OpenAI-compatible server and none is configured "
                "(start the server with --openai-base-url or SESSIONHUB_OPENAI_BASE_URL)",
            )
        if not base_url.startswith(("http://", "https://")):
            raise InvalidAgentSpec(
                "agent.kind", f"the configured OpenAI base URL {base_url!r} is not http(s)"
            )
        _check_params(spec.params)
        params = spec.params
        self.spec = spec
        self.settings = settings
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = spec.model or params.get("model") or DEFAULT_MODEL
        self.sampling = {k: v for k, v in params.items() if k in _SAMPLING_PARAMS}
        self.tools = [BUILTIN_TOOLS[name] for name in params.get("tools", DEFAULT_TOOLS)]
        self.max_tool_rounds: int = params.get("max_tool_rounds", DEFAULT_MAX_TOOL_ROUNDS)
        self.extra_body: dict[str, Any] = dict(params.get("extra_body", {}))

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "User-Agent": "sessionhub"}
        if self.settings.openai_api_key:
            headers["Authorization"] = f"Bearer {self.settings.openai_api_key}"
        return headers

    def _body(self, messages: list[dict[str, Any]], last_round: bool) -> dict[str, Any]:
        body: dict[str, Any] = {**self.extra_body, **self.sampling}
        body.update(model=self.model, messages=messages, stream=True)
        if self.tools:
            body["tools"] = [tool.schema() for tool in self.tools]
            if last_round:
                body["tool_choice"] = "none"
        return body

    async def stream(self, turn: TurnInput) -> AsyncIterator[AgentOutput]:
        """Yield the model's text, and the tool calls it makes and their results."""
        messages = build_messages(turn)
        s = self.settings
        timeout = aiohttp.ClientTimeout(
            total=s.timeout_s,
            sock_read=s.timeout_s,
            sock_connect=min(s.timeout_s, MAX_CONNECT_TIMEOUT_S),
        )
        async with aiohttp.ClientSession(timeout=timeout) as http:
            for round_no in range(self.max_tool_rounds + 1):
                last_round = round_no == self.max_tool_rounds
                completion = _Completion()
                body = self._body(messages, last_round)
                async for output in self._complete(http, body, completion):
                    yield output
                if not completion.tool_calls:
                    return
                if last_round:
                    raise AgentError(
                        ERR_TOO_MANY_TOOL_ROUNDS,
                        f"the model still asked for tools after {self.max_tool_rounds} rounds",
                    )
                calls = [completion.tool_calls[i] for i in sorted(completion.tool_calls)]
                for n, call in enumerate(calls):
                    call.id = call.id or f"call_{turn.turn_id}_{round_no}_{n}"
                messages.append(
                    {
                        "role": "assistant",
                        "content": completion.text or None,
                        "tool_calls": [
                            {
                                "id": c.id,
                                "type": "function",
                                "function": {"name": c.name, "arguments": c.arguments},
                            }
                            for c in calls
                        ],
                    }
                )
                for call in calls:
                    arguments, result = self._run_tool(call)
                    yield ToolCall(call.id, call.name, arguments)
                    yield result
                    messages.append(
                        {"role": "tool", "tool_call_id": call.id, "content": result.content}
                    )

    def _run_tool(self, call: _PendingCall) -> tuple[dict[str, Any], ToolResult]:
        try:
            arguments = json.loads(call.arguments) if call.arguments.strip() else {}
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            bad = {"arguments": call.arguments}
            return bad, ToolResult(call.id, call.name, "the arguments are not a JSON object", True)
        tool = next((t for t in self.tools if t.name == call.name), None)
        if tool is None:
            return arguments, ToolResult(call.id, call.name, f"unknown tool {call.name!r}", True)
        try:
            return arguments, ToolResult(call.id, call.name, tool.run(arguments))
        except ToolError as e:
            return arguments, ToolResult(call.id, call.name, str(e), True)

    async def _complete(
        self, http: aiohttp.ClientSession, body: dict[str, Any], completion: _Completion
    ) -> AsyncIterator[TextDelta]:
        """One request, retried while it has yielded nothing."""
        s = self.settings
        attempt = 0
        while True:
            try:
                async for delta in self._attempt(http, body, completion):
                    yield delta
                return
            except _Retryable as e:
                if completion.yielded or attempt >= s.max_retries:
                    raise e.error from None
                delay = e.retry_after
            if delay is None:
                delay = s.retry_backoff_s * 2**attempt
            attempt += 1
            completion.reset()
            await asyncio.sleep(delay)

    async def _attempt(
        self, http: aiohttp.ClientSession, body: dict[str, Any], completion: _Completion
    ) -> AsyncIterator[TextDelta]:
        try:
            async with http.post(self.url, json=body, headers=self._headers()) as resp:
                if resp.status >= 400:
                    await self._raise_for_status(resp)
                if "application/json" in resp.headers.get("Content-Type", ""):
                    async for delta in self._read_json(resp, completion):
                        yield delta
                else:
                    async for delta in self._read_sse(resp, completion):
                        yield delta
        except TimeoutError:
            raise AgentError(
                ERR_UPSTREAM_TIMEOUT,
                f"the model server timed out (limit: {self.settings.timeout_s:g} s per request)",
            ) from None
        except aiohttp.ClientConnectorError as e:
            raise _Retryable(
                AgentError(ERR_UPSTREAM_UNAVAILABLE, f"cannot connect to the model server: {e}")
            ) from None
        except aiohttp.ClientError as e:
            raise _Retryable(
                AgentError(ERR_UPSTREAM, f"the connection to the model server broke: {e}")
            ) from None
        if not completion.done:
            raise _Retryable(
                AgentError(ERR_UPSTREAM, "the model server closed the stream before it ended")
            )

    async def _raise_for_status(self, resp: aiohttp.ClientResponse) -> None:
        detail = await _error_detail(resp)
        status = resp.status
        message = f"the model server answered {status}: {detail}"
        if status == 429:
            raise _Retryable(
                AgentError(ERR_RATE_LIMITED, message),
                _retry_after(resp.headers.get("Retry-After")),
            )
        if status >= 500:
            raise _Retryable(
                AgentError(ERR_UPSTREAM, message), _retry_after(resp.headers.get("Retry-After"))
            )
        raise AgentError(ERR_UPSTREAM, message)

    async def _read_sse(
        self, resp: aiohttp.ClientResponse, completion: _Completion
    ) -> AsyncIterator[TextDelta]:
        data: list[str] = []
        buffer = b""
        async for chunk in resp.content.iter_any():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", errors="replace").rstrip("\r")
                if line.startswith("data:"):
                    value = line[5:]
                    data.append(value[1:] if value.startswith(" ") else value)
                    continue
                if line or not data:
                    continue  # a comment, another field, or a blank line between events
                payload, data = "\n".join(data), []
                for delta in self._on_event(payload, completion):
                    yield delta
                if completion.done:
                    return
        if data:
            for delta in self._on_event("\n".join(data), completion):
                yield delta
        if completion.finish_reason is not None:
            completion.done = True

    def _on_event(self, payload: str, completion: _Completion) -> list[TextDelta]:
        if payload.strip() == "[DONE]":
            completion.done = True
            return []
        try:
            chunk = json.loads(payload)
        except ValueError:
            raise AgentError(
                ERR_UPSTREAM, f"the model server sent a chunk that is not JSON: {payload[:200]}"
            ) from None
        if not isinstance(chunk, dict):
            return []
        if chunk.get("error"):
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise AgentError(ERR_UPSTREAM, f"the model server failed mid-stream: {message}")
        out = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                completion.text += content
                completion.yielded = True
                out.append(TextDelta(content))
            for position, call in enumerate(delta.get("tool_calls") or []):
                if isinstance(call, dict):
                    completion.add_tool_call_delta(call, position)
            if choice.get("finish_reason"):
                completion.finish_reason = choice["finish_reason"]
        return out

    async def _read_json(
        self, resp: aiohttp.ClientResponse, completion: _Completion
    ) -> AsyncIterator[TextDelta]:
        """A server that ignored ``stream: true`` and sent the whole completion at once."""
        try:
            answer = await resp.json(content_type=None)
            choice = answer["choices"][0]
            message = choice.get("message") or {}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise AgentError(ERR_UPSTREAM, "the model server sent an unreadable answer") from None
        for position, call in enumerate(message.get("tool_calls") or []):
            if isinstance(call, dict):
                completion.add_tool_call_delta({**call, "index": position}, position)
        completion.finish_reason = choice.get("finish_reason") or "stop"
        completion.done = True
        content = message.get("content")
        if isinstance(content, str) and content:
            completion.text = content
            completion.yielded = True
            yield TextDelta(content)


def create_openai_agent(spec: AgentSpec, settings: AgentSettings) -> OpenAIAgent:
    """The ``openai`` factory; refuses a server with no OpenAI base URL configured."""
    return OpenAIAgent(spec, settings)
