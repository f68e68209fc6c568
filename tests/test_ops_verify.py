"""``sessionhub verify``: damage planted in a real log is found and named by (stream, seq)."""

from __future__ import annotations

import sqlite3

import pytest

from eventlog import CorruptRecordError, Event, Snapshot, open_eventlog
from eventlog.backends.memory import MemoryEventLog
from sessionhub.ops.verify import verify_eventlog
from tests.test_ops_common import populate, populated_sqlite, run_cli, sqlite_url


@pytest.fixture
async def db(tmp_path):
    """A SQLite log written by a real hub (snapshots every 5 events); yields its path."""
    path = tmp_path / "events.db"
    await populated_sqlite(path)
    return path


def _verify(path) -> tuple[int, dict]:
    result = run_cli("verify", "--eventlog", sqlite_url(path), "--json")
    return result.status, result.json()


def _found(report: dict) -> set[tuple[str, str, int]]:
    return {(p["kind"], p["stream_id"], p["seq"]) for p in report["problems"]}


async def test_a_clean_log_passes(db):
    """A log written by the hub verifies clean, snapshots included: exit status 0."""
    status, report = _verify(db)
    assert status == 0, report
    assert report["ok"] and report["problems"] == []
    assert report["snapshots_checked"] >= 1 and report["method"] == "sqlite-table"
    text = run_cli("verify", "--eventlog", sqlite_url(db))
    assert text.status == 0 and "verify: ok" in text.out


async def test_planted_gap_duplicate_and_corrupt_records_are_named(db):
    """A deleted row, a re-appended command and two undecodable records: each is
    reported with its (stream, seq), and the exit status is 1."""
    with sqlite3.connect(db) as conn:
        # gap: "work" loses its seq 6
        conn.execute("DELETE FROM events WHERE stream_id = 'work' AND seq = 6")
        # duplicate: the last command of "bobs" appended a second time, as a retry would
        last = conn.execute(
            "SELECT seq, type, data, created_at, command_id, version FROM events"
            " WHERE stream_id = 'bobs' ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        first = conn.execute(
            "SELECT type, data, created_at, command_id, version FROM events"
            " WHERE stream_id = 'bobs' AND seq = 1"
        ).fetchone()
        position = conn.execute("SELECT max(position) FROM events").fetchone()[0]
        conn.execute(
            "INSERT INTO events (position, stream_id, seq, type, data, created_at, command_id,"
            " version) VALUES (?, 'bobs', ?, ?, ?, ?, ?, ?)",
            (position + 1, last[0] + 1, *first),
        )
        # corrupt: data that is not JSON, and a type that is not UTF-8
        conn.execute("UPDATE events SET data = '{\"key\": ' WHERE stream_id = 'done' AND seq = 2")
        conn.execute(
            "UPDATE events SET type = CAST(X'FF' AS TEXT) WHERE stream_id = 'work' AND seq = 3"
        )
    status, report = _verify(db)
    assert status == 1
    found = _found(report)
    assert ("gap", "work", 6) in found
    assert ("duplicate", "bobs", last[0] + 1) in found
    assert ("corrupt", "done", 2) in found
    assert ("corrupt", "work", 3) in found
    text = run_cli("verify", "--eventlog", sqlite_url(db))
    assert text.status == 1
    assert "gap        stream=work seq=6" in text.out
    assert "corrupt    stream=done seq=2" in text.out


async def test_two_records_with_one_seq_are_a_duplicate(db):
    """A table that lost its unique index can hold one (stream, seq) twice: verify says so."""
    with sqlite3.connect(db) as conn:
        conn.executescript(
            """
            CREATE TABLE copy AS SELECT * FROM events;
            DROP TABLE events;
            CREATE TABLE events (position INTEGER PRIMARY KEY, stream_id TEXT NOT NULL,
                seq INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL,
                created_at TEXT NOT NULL, command_id TEXT, version INTEGER NOT NULL);
            INSERT INTO events SELECT * FROM copy;
            DROP TABLE copy;
            INSERT INTO events (stream_id, seq, type, data, created_at, command_id, version)
                SELECT stream_id, seq, type, '{"other": true}', created_at, NULL, version
                FROM events WHERE stream_id = 'work' AND seq = 4;
            """
        )
    status, report = _verify(db)
    assert status == 1
    assert ("duplicate", "work", 4) in _found(report)


async def test_a_snapshot_that_disagrees_with_replay_is_found(db):
    """A snapshot whose state is not what its events fold to is named by (stream, seq)."""
    log = open_eventlog(sqlite_url(db))
    try:
        snap = log.load_snapshot("work")
        assert snap is not None
        log.save_snapshot(Snapshot("work", snap.seq, {**snap.state, "status": "closed"}))
        ahead = Snapshot("review", 999, log.load_snapshot("work").state)
        log.save_snapshot(ahead)
    finally:
        log.close()
    status, report = _verify(db)
    assert status == 1
    found = _found(report)
    assert ("snapshot", "work", snap.seq) in found
    assert ("snapshot", "review", 999) in found
    message = next(p["message"] for p in report["problems"] if p["stream_id"] == "work")
    assert "status" in message and "closed" in message


class _CorruptAt(MemoryEventLog):
    """A memory log whose record at one position fails to decode, as a damaged store's."""

    def __init__(self, position: int) -> None:
        super().__init__()
        self.bad = position

    def read_all(self, after_position: int = 0, limit: int | None = None) -> list[Event]:
        events = super().read_all(after_position, limit)
        for event in events:
            if event.position == self.bad:
                raise CorruptRecordError(event.stream_id, event.seq, "bad bytes")
        return events


async def test_other_backends_are_scanned_through_the_protocol():
    """On a non-SQLite log an undecodable record is stepped over and named; the rest
    is still checked (here: clean)."""
    log = _CorruptAt(position=7)
    await populate(log)
    bad = next(e for e in MemoryEventLog.read_all(log) if e.position == 7)
    report = verify_eventlog(log, progress=False)
    assert [(p.kind, p.stream_id, p.seq) for p in report.problems] == [
        ("corrupt", bad.stream_id, bad.seq)
    ]
    assert report.events == MemoryEventLog.count(log)
    clean = MemoryEventLog()
    await populate(clean)
    report = verify_eventlog(clean, progress=False)
    assert report.ok and report.snapshots_checked >= 1


def test_a_damaged_stream_index_is_named(tmp_path):
    """An index entry pointing at another event and an indexed event without its entry
    are both reported as ``index`` problems of their (stream, seq)."""
    from eventlog.backends.sqlite import SQLiteEventLog
    from eventlog.events import NewEvent

    path = tmp_path / "events.db"
    log = SQLiteEventLog(path, index_every=1)
    for stream in ("a", "b"):
        log.append(stream, [NewEvent("tick", {"i": i}) for i in range(3)], expected_seq=0)
    log.close()
    assert _verify(path)[0] == 0
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM stream_index WHERE stream_id = 'a' AND seq = 2")
        conn.execute("UPDATE stream_index SET position = 1 WHERE stream_id = 'b' AND seq = 3")
    status, report = _verify(path)
    assert status == 1
    assert _found(report) == {("index", "a", 2), ("index", "b", 3)}
