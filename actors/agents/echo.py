"""The ``echo`` agent: the default, deterministic, needs nothing.

It answers ``"Echo: <last user message>"``. When the chat has earlier turns it appends
``" (turn N)"``, N being the number of user messages in the history (the new one
included), so a follow-up shows the agent saw the history:

    "hello"           -> "Echo: hello"
    "and again" (2nd) -> "Echo: and again (turn 2)"

The answer streams one :class:`TextDelta` per word, spaces kept. ``params.delay_s``
(a number of seconds, default 0, at most 60) is slept between words so tests and demos
can watch a running turn or cancel it. Other params (sampling options meant for a model)
are ignored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from actors.agents.base import (
    AgentOutput,
    AgentSettings,
    AgentSpec,
    InvalidAgentSpec,
    TextDelta,
    TurnInput,
    last_user_text,
    split_words,
)

MAX_DELAY_S = 60.0


def echo_answer(messages: list[dict[str, Any]]) -> str:
    """The full answer the echo agent gives to this history."""
    text = last_user_text(messages)
    turns = sum(1 for m in messages if m.get("role") == "user")
    answer = f"Echo: {text}"
    if turns > 1:
        answer += f" (turn {turns})"
    return answer


def _delay(params: dict[str, Any]) -> float:
    delay = params.get("delay_s", 0)
    if delay is None:
        return 0.0
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise InvalidAgentSpec("agent.params.delay_s", "agent.params.delay_s must be a number")
    if not 0 <= delay <= MAX_DELAY_S:
        raise InvalidAgentSpec(
            "agent.params.delay_s",
            f"agent.params.delay_s must be between 0 and {MAX_DELAY_S:g} seconds",
        )
    return float(delay)


class EchoAgent:
    """Echoes the last user message, word by word."""

    def __init__(self, spec: AgentSpec, settings: AgentSettings | None = None) -> None:
        self.delay_s = _delay(spec.params)

    async def stream(self, turn: TurnInput) -> AsyncIterator[AgentOutput]:
        """Yield the answer one word at a time."""
        for i, word in enumerate(split_words(echo_answer(turn.messages))):
            if i and self.delay_s:
                await asyncio.sleep(self.delay_s)
            yield TextDelta(word)


def create_echo_agent(spec: AgentSpec, settings: AgentSettings) -> EchoAgent:
    """The ``echo`` factory."""
    return EchoAgent(spec, settings)
