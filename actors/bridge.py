"""Answers from actor and log threads to the asyncio loop, in batches.

Every request the hub sends to an actor waits on an asyncio future of the loop. The
thread that knows the answer (the actor, or the event log's writer once the events are
durable) must not complete that future itself: asyncio futures belong to their loop.
It hands ``(future, result, error)`` to ``Replies.put``, and the loop completes the
futures. One ``call_soon_threadsafe`` is made per batch, not per answer. Each call
writes to the loop's self-pipe and wakes the loop thread, and a group commit answers
dozens of requests at once.

A request whose answer never comes (an actor wedged in a bug) fails after
``timeout_s``: ``expire_overdue``, called by the hub now and then, fails the overdue
futures. This is a safety net, not a deadline: actors answer every request they get.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Replies"]


class Replies:
    """Futures of one loop, completed in batches from any thread."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeout_s: float,
        late_error: Callable[[], BaseException],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loop = loop
        self._timeout_s = timeout_s
        self._late_error = late_error
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._pending: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._scheduled = False
        #: future -> deadline, oldest first (every future gets the same timeout).
        self._deadlines: dict[asyncio.Future[Any], float] = {}

    def future(self) -> asyncio.Future[Any]:
        """A new future of the loop, to be completed through ``put`` (loop thread only)."""
        fut = self._loop.create_future()
        self._deadlines[fut] = self._monotonic() + self._timeout_s
        return fut

    def put(self, fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        """Complete ``fut`` with ``result`` or ``error`` on the loop; callable from any thread."""
        with self._lock:
            self._pending.append((fut, result, error))
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._scheduled = False
        deadlines = self._deadlines
        for fut, result, error in batch:
            deadlines.pop(fut, None)
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result)

    def forget(self, fut: asyncio.Future[Any]) -> None:
        """Stop watching ``fut`` (its waiter gave up; loop thread only)."""
        self._deadlines.pop(fut, None)

    def expire_overdue(self) -> int:
        """Fail the futures whose answer is overdue; returns how many (loop thread only)."""
        now = self._monotonic()
        overdue = []
        for fut, deadline in self._deadlines.items():
            if deadline > now:
                break
            overdue.append(fut)
        for fut in overdue:
            del self._deadlines[fut]
            if not fut.done():
                fut.set_exception(self._late_error())
        return len(overdue)
