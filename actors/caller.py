"""Who sends a command."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """``user_id`` None: an operator (``*`` key) or an open server; sees everything."""

    user_id: str | None = None
    transport: str = "python"


OPERATOR = Caller()
