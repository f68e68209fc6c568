"""Errors of the event log: one root, typed subclasses carrying structured fields."""

from __future__ import annotations


class EventLogError(Exception):
    """Root of every error raised by an event log backend."""


class ConflictError(EventLogError):
    """The stream moved on: ``expected_seq`` is not its last seq."""

    def __init__(self, stream_id: str, expected_seq: int, actual_seq: int) -> None:
        super().__init__(
            f"stream {stream_id!r}: expected last seq {expected_seq}, found {actual_seq}"
        )
        self.stream_id = stream_id
        self.expected_seq = expected_seq
        self.actual_seq = actual_seq


class CorruptRecordError(EventLogError):
    """A stored record failed to decode. It is reported, never skipped."""

    def __init__(self, stream_id: str, seq: int, reason: str) -> None:
        super().__init__(f"corrupt record {stream_id!r} seq {seq}: {reason}")
        self.stream_id = stream_id
        self.seq = seq
        self.reason = reason


class UnavailableError(EventLogError):
    """The log cannot be reached or has been closed."""


class InvalidEventError(EventLogError):
    """An event the log refuses to store (e.g. not encodable)."""
