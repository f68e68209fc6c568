"""The ``EventLog`` protocol that every backend implements.

The interface is synchronous and thread-safe: session actors are threads that
append and must block until their events are durable. A backend built on an
async client (JetStream) runs that client on a loop of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from eventlog.events import Event, NewEvent, Snapshot

#: Called with each batch of newly durable events, in global order, on a backend thread.
#: It must not block: hand the events over to another thread or loop.
Listener = Callable[[list[Event]], None]


#: ``done(stored, error)``: the outcome of a queued append, reported exactly once.
AppendDone = Callable[[list[Event] | None, BaseException | None], None]


def append_then(
    log: EventLog, stream_id: str, events: Sequence[NewEvent], expected_seq: int, done: AppendDone
) -> None:
    """Append, and report the outcome to ``done`` rather than to the caller.

    A backend that queues appends for a writer thread (``append_queued``: SQLite)
    returns at once and calls ``done`` on that thread once the events are durable, so
    the caller can go on while the commit is in flight. Any other backend appends here
    and calls ``done`` before returning. Errors of the append itself (a conflict, an
    unavailable log) go to ``done``; ``done`` is never called twice.
    """
    queued = getattr(log, "append_queued", None)
    if queued is not None:
        try:
            queued(stream_id, events, expected_seq, done)
        except Exception as exc:
            done(None, exc)
        return
    try:
        stored = log.append(stream_id, events, expected_seq)
    except Exception as exc:
        done(None, exc)
        return
    done(stored, None)


class Subscription(Protocol):
    def close(self) -> None:
        """Stop delivering events to the listener."""


@runtime_checkable
class EventLog(Protocol):
    """Append-only log of streams of events."""

    backend: str

    def append(self, stream_id: str, events: Sequence[NewEvent], expected_seq: int) -> list[Event]:
        """Append ``events`` to ``stream_id`` if its last seq is ``expected_seq``.

        Returns the stored events once they are durable. Raises ``ConflictError``
        when the stream moved on. A retry (the same ``expected_seq``, and a first
        event whose ``command_id`` is the one stored at ``expected_seq + 1``)
        returns the stored events and appends nothing.
        """
        ...

    def read(self, stream_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        """Events of one stream with seq > ``after_seq``, in seq order."""
        ...

    def last_seq(self, stream_id: str) -> int:
        """The seq of the stream's last event, 0 for an empty or unknown stream."""
        ...

    def read_all(self, after_position: int = 0, limit: int | None = None) -> list[Event]:
        """Events of every stream with position > ``after_position``, in global order."""
        ...

    def last_position(self) -> int:
        """The position of the last event in the log, 0 when empty."""
        ...

    def subscribe(self, listener: Listener) -> Subscription:
        """Deliver every event appended from now on to ``listener``, each exactly once."""
        ...

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Store ``snapshot``, replacing an older one of the same stream."""
        ...

    def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """The latest snapshot of the stream, or None."""
        ...

    def delete_stream(self, stream_id: str) -> None:
        """Remove a stream's events and snapshot (an operator's purge)."""
        ...

    def count(self) -> int:
        """The number of events in the log."""
        ...

    def close(self) -> None:
        """Flush and release resources; further calls raise ``UnavailableError``."""
        ...
