"""Agents that answer session turns: the interface, the built-in kinds and the registry.

A user agent is any object with an async-generator ``stream(turn)`` method, built by a
factory ``(AgentSpec, AgentSettings) -> Agent`` registered under a kind name.
"""

from __future__ import annotations

from actors.agents.base import (
    ERR_AGENT,
    ERR_RATE_LIMITED,
    ERR_TOO_MANY_TOOL_ROUNDS,
    ERR_UPSTREAM,
    ERR_UPSTREAM_TIMEOUT,
    ERR_UPSTREAM_UNAVAILABLE,
    NO_AGENT_KIND,
    Agent,
    AgentError,
    AgentFactory,
    AgentOutput,
    AgentSettings,
    AgentSpec,
    InvalidAgentSpec,
    TextDelta,
    ToolCall,
    ToolResult,
    TurnInput,
)
from actors.agents.calculator import CalculationError, CalculatorAgent, safe_eval
from actors.agents.echo import EchoAgent
from actors.agents.openai import OpenAIAgent
from actors.agents.registry import AgentRegistry, default_registry

__all__ = [
    "ERR_AGENT",
    "ERR_RATE_LIMITED",
    "ERR_TOO_MANY_TOOL_ROUNDS",
    "ERR_UPSTREAM",
    "ERR_UPSTREAM_TIMEOUT",
    "ERR_UPSTREAM_UNAVAILABLE",
    "NO_AGENT_KIND",
    "Agent",
    "AgentError",
    "AgentFactory",
    "AgentOutput",
    "AgentRegistry",
    "AgentSettings",
    "AgentSpec",
    "CalculationError",
    "CalculatorAgent",
    "EchoAgent",
    "InvalidAgentSpec",
    "OpenAIAgent",
    "TextDelta",
    "ToolCall",
    "ToolResult",
    "TurnInput",
    "default_registry",
    "safe_eval",
]
