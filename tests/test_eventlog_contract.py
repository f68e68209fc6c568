"""The EventLog contract (eventlog.testing) run against every backend.

A backend joins by adding one entry to ``BACKENDS``: a factory taking the pytest
``request`` and a fresh ``tmp_path`` and returning ``(log, reopen)``, where ``reopen``
closes the current log and returns a new one on the same storage (or skips).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventlog import open_eventlog
from eventlog.backends.memory import MemoryEventLog
from eventlog.backends.sqlite import SQLiteEventLog
from eventlog.base import EventLog
from eventlog.testing import EventLogContract
from tests.nats_fixtures import jetstream_backend

Reopen = Callable[[], EventLog]
Factory = Callable[[pytest.FixtureRequest, Path], tuple[EventLog, Reopen]]


def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[EventLog, Reopen]:
    log = MemoryEventLog()

    def reopen() -> EventLog:
        log.close()
        pytest.skip("the memory backend keeps nothing across close()")

    return log, reopen


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[EventLog, Reopen]:
    path = tmp_path / "store" / "events.db"
    current = [open_eventlog(f"sqlite://{path}")]
    assert isinstance(current[0], SQLiteEventLog)

    def reopen() -> EventLog:
        current[0].close()
        current[0] = SQLiteEventLog(path)
        return current[0]

    return current[0], reopen


def _sqlite_indexed(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[EventLog, Reopen]:
    """SQLite with its stream index written every 3 events: reads span both of its parts
    (the default indexes every 1,024 events, so the tests above read the tail only)."""
    path = tmp_path / "store" / "events.db"
    current = [SQLiteEventLog(path, index_every=3)]

    def reopen() -> EventLog:
        current[0].close()
        current[0] = SQLiteEventLog(path, index_every=3)
        return current[0]

    return current[0], reopen


BACKENDS: dict[str, Factory] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "sqlite-indexed": _sqlite_indexed,
    "jetstream": jetstream_backend,
}


@pytest.fixture(params=sorted(BACKENDS))
def _opened(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[EventLog, Reopen]]:
    log, reopen = BACKENDS[request.param](request, tmp_path)
    opened = [log]

    def tracked_reopen() -> EventLog:
        new = reopen()
        opened.append(new)
        return new

    yield log, tracked_reopen
    for each in opened:
        each.close()


@pytest.fixture
def log(_opened: tuple[EventLog, Reopen]) -> EventLog:
    return _opened[0]


@pytest.fixture
def reopen(_opened: tuple[EventLog, Reopen]) -> Reopen:
    return _opened[1]


class TestEventLogContract(EventLogContract):
    """Every test of the contract, once per backend in ``BACKENDS``."""
