"""The agent interface: what a session turn hands an agent and what it streams back.

An agent is anything with an async-generator ``stream(turn)`` method. The session actor
builds a :class:`TurnInput` (the chat's whole history plus the effective
:class:`AgentSpec`), iterates the agent's outputs and records them as events:

* :class:`TextDelta` - a piece of the assistant's answer; the answer is their concatenation.
* :class:`ToolCall` / :class:`ToolResult` - a tool the agent ran, recorded for audit.

Failure semantics: an agent that cannot answer raises :class:`AgentError` with a stable
``code``; the stream then ends with ``{"type": "error", "data": {"code", "message"}}``.
Any other exception is a bug in the agent and is reported as ``agent_error`` by the
caller. ``asyncio.CancelledError`` is never swallowed: a cancelled turn stops at the next
``await`` and keeps only the text already streamed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# Error codes an agent may raise (AgentError.code).
ERR_AGENT = "agent_error"
ERR_UPSTREAM = "upstream_error"
ERR_UPSTREAM_TIMEOUT = "upstream_timeout"
ERR_UPSTREAM_UNAVAILABLE = "upstream_unavailable"
ERR_RATE_LIMITED = "rate_limited"
ERR_TOO_MANY_TOOL_ROUNDS = "too_many_tool_rounds"

#: The kind of a storage-only session: it has no agent and refuses runs.
NO_AGENT_KIND = "none"

_SPEC_FIELDS = ("kind", "model", "system_prompt", "params")


class InvalidAgentSpec(ValueError):
    """A bad agent object or configuration; ``field`` names the offending field.

    It is a ``ValueError`` so callers that only know the interface can catch that.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class AgentSpec:
    """The agent object of a session or a chat: ``{"kind", "model", "system_prompt", "params"}``.

    ``params`` holds sampling and agent options; what each kind accepts is checked by the
    kind's factory (see :meth:`AgentRegistry.validate`), not here.
    """

    kind: str = "echo"
    model: str | None = None
    system_prompt: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict | None) -> AgentSpec:
        """Build a spec from its JSON object; ``None`` gives the default (echo) agent.

        Raises:
            InvalidAgentSpec: (a ``ValueError``) naming the field, e.g. ``agent.params``,
                when a field has the wrong type or is unknown.
        """
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise InvalidAgentSpec("agent", "agent must be a JSON object")
        unknown = sorted(str(k) for k in d if k not in _SPEC_FIELDS)
        if unknown:
            raise InvalidAgentSpec(
                f"agent.{unknown[0]}",
                f"agent.{unknown[0]} is not a known field; expected {', '.join(_SPEC_FIELDS)}",
            )
        kind = d.get("kind")
        if kind is None:
            kind = "echo"
        if not isinstance(kind, str) or not kind.strip():
            raise InvalidAgentSpec("agent.kind", "agent.kind must be a non-empty string")
        for name in ("model", "system_prompt"):
            value = d.get(name)
            if value is not None and not isinstance(value, str):
                raise InvalidAgentSpec(f"agent.{name}", f"agent.{name} must be a string or null")
        params = d.get("params")
        if params is None:
            params = {}
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            raise InvalidAgentSpec("agent.params", "agent.params must be a JSON object")
        return cls(
            kind=kind.strip(),
            model=d.get("model"),
            system_prompt=d.get("system_prompt"),
            params=dict(params),
        )

    def to_dict(self) -> dict:
        """The JSON object of this spec, every field present."""
        return {
            "kind": self.kind,
            "model": self.model,
            "system_prompt": self.system_prompt,
            "params": dict(self.params),
        }


@dataclass(frozen=True)
class AgentSettings:
    """Server configuration for agents; never a client's choice.

    Attributes:
        openai_base_url: Base URL of an OpenAI-compatible server, e.g.
            ``http://127.0.0.1:8080/v1``. The ``openai`` kind is refused without it.
        openai_api_key: Sent as ``Authorization: Bearer`` when set.
        timeout_s: Total time allowed for one upstream request (and for a read).
        max_retries: Retries after a 429, a 5xx or a connection error.
        retry_backoff_s: First retry delay; it doubles with each retry.
    """

    openai_base_url: str | None = None
    openai_api_key: str | None = None
    timeout_s: float = 60.0
    max_retries: int = 3
    retry_backoff_s: float = 0.5


@dataclass(frozen=True)
class TurnInput:
    """Everything an agent sees for one turn.

    ``messages`` is the chat's whole history, oldest first, the new user message last:
    ``[{"role": "user" | "assistant" | "tool" | "system", "content": str, ...}]``.
    ``spec`` is the effective spec (a chat's agent overrides the session's) and
    ``system_prompt`` the effective system prompt.
    """

    session_id: str
    turn_id: str
    chat_id: str
    messages: list[dict[str, Any]]
    spec: AgentSpec
    system_prompt: str | None


@dataclass(frozen=True)
class TextDelta:
    """A piece of the assistant's answer."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """The agent calls tool ``name`` with ``arguments``; ``call_id`` pairs it with its result."""

    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolResult:
    """What tool ``name`` answered to call ``call_id``; ``is_error`` when it failed."""

    call_id: str
    name: str
    content: str
    is_error: bool = False


AgentOutput = TextDelta | ToolCall | ToolResult


class AgentError(Exception):
    """An agent could not answer; the stream ends with an ``error`` of ``code`` and ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        """The ``data`` of the stream's error message."""
        return {"code": self.code, "message": self.message}

    def __repr__(self) -> str:
        return f"AgentError({self.code!r}, {self.message!r})"


class Agent(Protocol):
    """Answers one turn as a stream of outputs.

    ``stream`` is an async generator. It must not swallow ``asyncio.CancelledError``,
    and must not block the event loop, so a cancelled turn stops promptly.
    """

    def stream(self, turn: TurnInput) -> AsyncIterator[AgentOutput]: ...


#: Builds an agent for a spec. It must be cheap and free of I/O (the registry also calls
#: it to validate a spec) and raise ``ValueError`` for a spec or settings it cannot serve.
AgentFactory = Callable[[AgentSpec, AgentSettings], Agent]


# --- helpers shared by the built-in agents -------------------------------------------------

_WORD = re.compile(r"\s*\S+\s*")


def split_words(text: str) -> list[str]:
    """Split text into word pieces, spaces kept, so ``"".join(split_words(t)) == t``."""
    pieces = _WORD.findall(text)
    if not pieces:
        return [text] if text else []
    return pieces


def message_text(message: dict[str, Any]) -> str:
    """The text of a message whose content is a string, a list of text parts, or null."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)
    return str(content)


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last user message, or ``""`` when there is none."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""
