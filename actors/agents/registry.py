"""Agents by kind: the built-in ones and those a user registers.

A kind maps to an :data:`AgentFactory`. The server builds one registry at start-up
(:func:`default_registry`, plus any ``kind = "package.module:factory"`` entries of its
configuration, see :meth:`AgentRegistry.load_entry_point`) and passes it down.

``validate`` runs when a session or chat is created, so a bad agent object is a 400 then
rather than a failed turn later. It builds the agent and throws it away, which is why
factories must be cheap and free of I/O, and raise ``ValueError`` for what they refuse.
"""

from __future__ import annotations

import importlib
import re

from actors.agents.base import (
    NO_AGENT_KIND,
    Agent,
    AgentFactory,
    AgentSettings,
    AgentSpec,
    InvalidAgentSpec,
)
from actors.agents.calculator import create_calculator_agent
from actors.agents.echo import create_echo_agent
from actors.agents.openai import create_openai_agent

_KIND = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


class AgentRegistry:
    """A mapping from agent kind to factory."""

    def __init__(self) -> None:
        self._factories: dict[str, AgentFactory] = {}

    def register(self, kind: str, factory: AgentFactory) -> None:
        """Register (or replace) the factory of ``kind``.

        Raises:
            ValueError: the kind is not a short name of letters, digits and ``_.:-``,
                is ``none`` (reserved for storage-only sessions), or the factory is not
                callable.
        """
        if not isinstance(kind, str) or not _KIND.match(kind):
            raise ValueError(f"agent kind {kind!r} must be 1-64 letters, digits or _.:- characters")
        if kind == NO_AGENT_KIND:
            raise ValueError(f"agent kind {NO_AGENT_KIND!r} is reserved for storage-only sessions")
        if not callable(factory):
            raise ValueError(f"the factory of agent kind {kind!r} is not callable")
        self._factories[kind] = factory

    def kinds(self) -> list[str]:
        """The registered kinds, sorted (``none`` is not one of them)."""
        return sorted(self._factories)

    def _factory(self, kind: str) -> AgentFactory:
        factory = self._factories.get(kind)
        if factory is None:
            known = ", ".join(self.kinds()) or "none registered"
            raise InvalidAgentSpec(
                "agent.kind",
                f"unknown agent kind {kind!r}; known kinds: {known} "
                f"(or {NO_AGENT_KIND!r} for a storage-only session)",
            )
        return factory

    def validate(self, spec: AgentSpec, settings: AgentSettings) -> None:
        """Check that ``spec`` can run on this server; ``none`` always can.

        Raises:
            ValueError: (an ``InvalidAgentSpec`` naming the field) for an unknown kind,
                an ``openai`` agent on a server with no OpenAI base URL, or params the
                kind refuses.
        """
        if spec.kind == NO_AGENT_KIND:
            return
        self.create(spec, settings)

    def create(self, spec: AgentSpec, settings: AgentSettings) -> Agent:
        """Build the agent of ``spec``.

        Raises:
            ValueError: as :meth:`validate`; also for ``none``, which has no agent.
        """
        if spec.kind == NO_AGENT_KIND:
            raise InvalidAgentSpec(
                "agent.kind", "a storage-only session (agent kind 'none') has no agent to run"
            )
        factory = self._factory(spec.kind)
        try:
            agent = factory(spec, settings)
        except InvalidAgentSpec:
            raise
        except (ValueError, TypeError) as e:
            raise InvalidAgentSpec(
                "agent", f"agent kind {spec.kind!r} refused its spec: {e}"
            ) from e
        if not callable(getattr(agent, "stream", None)):
            raise InvalidAgentSpec(
                "agent.kind", f"the factory of agent kind {spec.kind!r} did not return an agent"
            )
        return agent

    def load_entry_point(self, kind: str, target: str) -> None:
        """Register the factory named ``"package.module:factory"`` (attribute may be dotted).

        Raises:
            ValueError: the string is malformed, the module cannot be imported, or the
                attribute is missing or not callable.
        """
        module_name, sep, attr = (target or "").partition(":")
        if not sep or not module_name.strip() or not attr.strip():
            raise ValueError(
                f"agent kind {kind!r}: entry point {target!r} must look like "
                "'package.module:factory'"
            )
        try:
            obj = importlib.import_module(module_name.strip())
        except Exception as e:
            raise ValueError(
                f"agent kind {kind!r}: cannot import module {module_name!r} "
                f"of entry point {target!r}: {e}"
            ) from e
        for part in attr.strip().split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise ValueError(
                    f"agent kind {kind!r}: module {module_name!r} has no attribute {attr!r}"
                ) from None
        if not callable(obj):
            raise ValueError(f"agent kind {kind!r}: entry point {target!r} is not callable")
        self.register(kind, obj)


def default_registry() -> AgentRegistry:
    """A registry with the built-in kinds: ``echo``, ``calculator``, ``openai``."""
    registry = AgentRegistry()
    registry.register("echo", create_echo_agent)
    registry.register("calculator", create_calculator_agent)
    registry.register("openai", create_openai_agent)
    return registry
