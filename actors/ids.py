"""Ids of turns, messages, chats and stream events: unique and cheap.

``uuid.uuid4()`` reads ``os.urandom``, which gives up the GIL around its ``getrandom``
system call. On the event loop of a busy server each call handed the GIL to a waiting
actor or log thread and waited to get it back: with one id per stream chunk, a quarter
of the loop's samples during echo runs were inside ``uuid4``. These ids come from a
generator seeded once from ``os.urandom``: 64 random bits each, as the 16 hex digits of
``uuid4().hex[:16]`` were, with no system call. They name things; they are not secrets
(session ids, which a client may keep as a handle, still come from ``uuid4``).
"""

from __future__ import annotations

import os
import random

__all__ = ["new_id"]

_random = random.Random(os.urandom(32))
_bits = _random.getrandbits
# A forked child would repeat its parent's sequence: give it a seed of its own.
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))


def new_id(prefix: str, digits: int = 16) -> str:
    """``prefix`` followed by ``digits`` random hex digits (at most 16)."""
    return f"{prefix}{_bits(64):016x}"[: len(prefix) + digits]
