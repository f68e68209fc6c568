"""The SQLite backend: acknowledged appends survive kill -9; damage, lock and URL handling."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from eventlog import ConflictError, CorruptRecordError, NewEvent, UnavailableError, open_eventlog
from eventlog.backends.sqlite import SCHEMA_VERSION, SQLiteEventLog
from sessionhub.ops.verify import verify_sqlite

ROOT = Path(__file__).resolve().parent.parent

# Appends from several threads, two events per append, and prints each acknowledged
# append's stream and last seq only after append() returned.
CHILD = textwrap.dedent(
    """
    import sys, threading
    from eventlog import NewEvent
    from eventlog.backends.sqlite import SQLiteEventLog

    # the stream index is written every 7 events: the kill lands among index passes
    log = SQLiteEventLog(sys.argv[1], synchronous=sys.argv[2], index_every=7)
    out = threading.Lock()

    def work(stream):
        seq = 0
        while True:
            events = [NewEvent("tick", {"stream": stream, "n": seq + 1 + i}) for i in range(2)]
            stored = log.append(stream, events, expected_seq=seq)
            seq = stored[-1].seq
            with out:
                sys.stdout.write(f"{stream} {seq}\\n")
                sys.stdout.flush()

    for i in range(THREADS):
        threading.Thread(target=work, args=(f"s{i}",), daemon=True).start()
    threading.Event().wait()
    """
)


@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_acknowledged_appends_survive_sigkill(tmp_path: Path, synchronous: str) -> None:
    """Every append the child saw acknowledged is stored, complete and gap-free after kill -9
    (with an fsync per commit, and with fsyncs at checkpoints only)."""
    threads, kill_after = 6, 400
    db = tmp_path / "events.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD.replace("THREADS", str(threads)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), synchronous],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # a child that stops printing is killed, which ends the reads below with EOF
    watchdog = threading.Timer(30, proc.kill)
    watchdog.start()
    acked: dict[str, int] = {}
    lines = 0
    try:
        assert proc.stdout is not None
        while lines < kill_after:
            line = proc.stdout.readline()
            assert line, f"child exited early: {proc.stderr.read() if proc.stderr else ''}"
            stream, seq = line.split()
            acked[stream] = max(acked.get(stream, 0), int(seq))
            lines += 1
        proc.send_signal(signal.SIGKILL)
        # lines already in the pipe were acknowledged before the kill: count them too
        rest, _ = proc.communicate(timeout=20)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    for line in rest.splitlines():
        parts = line.split()
        if len(parts) == 2:  # the last line may have been cut by the kill
            acked[parts[0]] = max(acked.get(parts[0], 0), int(parts[1]))

    assert len(acked) == threads
    log = SQLiteEventLog(db)
    try:
        for stream, seq in acked.items():
            events = log.read(stream)
            seqs = [e.seq for e in events]
            assert seqs == list(range(1, len(seqs) + 1)), f"gap in {stream}"
            assert len(seqs) >= seq, f"{stream}: acknowledged seq {seq}, stored {len(seqs)}"
            assert len(seqs) % 2 == 0, f"{stream}: an append of two events was torn"
            assert [e.data["n"] for e in events] == seqs
        everything = log.read_all()
        positions = [e.position for e in everything]
        assert positions == sorted(set(positions))
        assert log.count() == len(everything)
        assert _index_problems(db) == []  # the stream index agrees with the events
        # the log is writable again where the child stopped
        stream, seq = next(iter(acked.items()))
        last = log.last_seq(stream)
        assert log.append(stream, [NewEvent("after", {})], expected_seq=last)[0].seq == last + 1
    finally:
        log.close()


def _plant(db: Path, sql: str, params: tuple[object, ...]) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(sql, params)
    conn.close()


@pytest.mark.parametrize(
    "bad",
    [pytest.param("{not json", id="bad-json"), pytest.param(b"{\xff\xfe}", id="bad-utf8")],
)
def test_corrupt_record_is_reported_with_stream_and_seq(tmp_path: Path, bad: object) -> None:
    """A record that does not decode raises CorruptRecordError naming it; it is never skipped."""
    db = tmp_path / "events.db"
    log = SQLiteEventLog(db)
    log.append("s1", [NewEvent("t", {"n": i}) for i in range(3)], expected_seq=0)
    log.append("s2", [NewEvent("t", {"n": 0})], expected_seq=0)
    log.close()
    # bytes are stored as TEXT holding invalid UTF-8
    _plant(
        db, "UPDATE events SET data = CAST(? AS TEXT) WHERE stream_id = 's1' AND seq = 2", (bad,)
    )

    log = SQLiteEventLog(db)
    try:
        for read in (lambda: log.read("s1"), lambda: log.read_all()):
            with pytest.raises(CorruptRecordError) as info:
                read()
            assert (info.value.stream_id, info.value.seq) == ("s1", 2)
            assert "'s1'" in str(info.value) and "seq 2" in str(info.value)
        # the records around it still read
        assert [e.seq for e in log.read("s1", after_seq=2)] == [3]
        assert [e.seq for e in log.read("s1", limit=1)] == [1]
        assert [e.data for e in log.read("s2")] == [{"n": 0}]
    finally:
        log.close()


def test_a_second_log_on_the_same_file_sees_and_respects_the_first(tmp_path: Path) -> None:
    """Two logs on one file (a server and an operator tool) read and write consistently."""
    db = tmp_path / "events.db"
    server = SQLiteEventLog(db)
    tool = SQLiteEventLog(db)
    try:
        server.append("s", [NewEvent("a", {})], expected_seq=0)
        assert [e.type for e in tool.read("s")] == ["a"]
        tool.append("s", [NewEvent("b", {})], expected_seq=1)
        # the server's writer learns of the tool's commit instead of trusting its cache
        with pytest.raises(ConflictError):
            server.append("s", [NewEvent("c", {})], expected_seq=1)
        [c] = server.append("s", [NewEvent("c", {})], expected_seq=2)
        assert c.seq == 3
        assert server.count() == tool.count() == 3
        tool.delete_stream("s")
        [d] = server.append("s", [NewEvent("d", {})], expected_seq=0)
        assert d.position > c.position
    finally:
        server.close()
        tool.close()


def test_a_failed_commit_fails_its_appends_and_stores_nothing(tmp_path: Path) -> None:
    """When the batch cannot commit (file locked too long), its appends raise Unavailable."""
    db = tmp_path / "events.db"
    log = SQLiteEventLog(db, busy_timeout_ms=50)
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        log.append("s", [NewEvent("first", {})], expected_seq=0)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        with pytest.raises(UnavailableError) as info:
            log.append("s", [NewEvent("blocked", {})], expected_seq=1)
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        blocker.execute("ROLLBACK")
        # nothing of the failed append is there, and the log carries on
        assert [e.type for e in log.read("s")] == ["first"]
        [again] = log.append("s", [NewEvent("retried", {})], expected_seq=1)
        assert (again.seq, log.count()) == (2, 2)
    finally:
        blocker.close()
        log.close()


@pytest.mark.parametrize(
    ("url", "relative"),
    [
        ("sqlite:///{tmp}/a/events.db", "a/events.db"),
        ("sqlite:////{tmp}/b/events.db", "b/events.db"),
        ("sqlite:///relative.db", "relative.db"),
        ("sqlite:///./data/events.db", "data/events.db"),
    ],
)
def test_url_names_absolute_or_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, relative: str
) -> None:
    """sqlite:///abs/path and sqlite:///name.db (relative to cwd) open there, making dirs."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    absolute = str(tmp_path).lstrip("/")
    log = open_eventlog(url.format(tmp=absolute))
    try:
        assert log.backend == "sqlite"
        log.append("s", [NewEvent("t", {})], expected_seq=0)
    finally:
        log.close()
    base = work if relative in ("relative.db", "data/events.db") else tmp_path
    assert (base / relative).is_file()


def test_sync_option_of_the_url(tmp_path: Path) -> None:
    """``?sync=normal`` sets synchronous=NORMAL; the default is FULL; a typo is refused."""
    full = SQLiteEventLog.from_url(f"sqlite:///{tmp_path}/a.db")
    normal = SQLiteEventLog.from_url(f"sqlite:///{tmp_path}/b.db?sync=normal")
    try:
        assert full._wconn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert normal._wconn.execute("PRAGMA synchronous").fetchone()[0] == 1
    finally:
        full.close()
        normal.close()
    with pytest.raises(ValueError, match="sync"):
        SQLiteEventLog.from_url(f"sqlite:///{tmp_path}/c.db?synch=normal")
    with pytest.raises(ValueError, match="full or normal"):
        SQLiteEventLog.from_url(f"sqlite:///{tmp_path}/c.db?sync=off")


async def test_append_async_group_commits_and_reports_conflicts(tmp_path: Path) -> None:
    """Appends awaited on a loop are durable, ordered, and a stale one gets ConflictError."""
    import asyncio

    from eventlog.errors import ConflictError

    log = SQLiteEventLog(tmp_path / "events.db")
    try:

        async def session(k: int) -> None:
            for i in range(20):
                stored = await log.append_async(
                    f"s{k}", [NewEvent("tick", {"i": i}, f"c{k}-{i}")], i
                )
                assert stored[0].seq == i + 1

        await asyncio.gather(*(session(k) for k in range(16)))
        with pytest.raises(ConflictError):
            await log.append_async("s0", [NewEvent("tick", {})], 3)
        retry = await log.append_async("s0", [NewEvent("tick", {"i": 0}, "c0-0")], 0)
        assert retry[0].seq == 1
    finally:
        log.close()
    reopened = SQLiteEventLog(tmp_path / "events.db")
    try:
        assert [len(reopened.read(f"s{k}")) for k in range(16)] == [20] * 16
    finally:
        reopened.close()


def _index_problems(db: Path) -> list[object]:
    return [p for p in verify_sqlite(db).problems if p.kind == "index"]


# The layout of schema version 1 (up to 2026-12-05): the stream index was a UNIQUE
# constraint of the events table.
SCHEMA_V1 = """
CREATE TABLE events (
    position INTEGER PRIMARY KEY, stream_id TEXT NOT NULL, seq INTEGER NOT NULL,
    type TEXT NOT NULL, data TEXT NOT NULL, created_at TEXT NOT NULL, command_id TEXT,
    version INTEGER NOT NULL, UNIQUE (stream_id, seq));
CREATE TABLE snapshots (stream_id TEXT PRIMARY KEY, seq INTEGER NOT NULL,
    state TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 1), high_water INTEGER NOT NULL,
    deleted INTEGER NOT NULL);
INSERT INTO meta VALUES (1, 7, 2);
PRAGMA user_version = 1;
"""


def test_a_version_1_file_is_converted_and_keeps_everything(tmp_path: Path) -> None:
    """A log written by schema version 1 opens as version 2 with every event, snapshot and
    position, appends go on from its heads, and a stale append still conflicts."""
    db = tmp_path / "events.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(SCHEMA_V1)
        rows = [
            (p, f"s{p % 2}", (p + 1) // 2, "tick", f'{{"p":{p}}}', "2026-01-01T00:00:00Z", None, 1)
            for p in range(1, 11)
        ]
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("INSERT INTO snapshots VALUES ('s1', 2, '{\"n\":2}', 'now')")
    log = SQLiteEventLog(db, index_every=4)  # the converted rows are indexed at open
    try:
        assert [e.position for e in log.read("s1")] == [1, 3, 5, 7, 9]
        assert [e.data["p"] for e in log.read_all()] == list(range(1, 11))
        assert log.load_snapshot("s1").state == {"n": 2}
        assert log.count() == 8 and log.last_position() == 10  # meta carried over
        with pytest.raises(ConflictError):
            log.append("s0", [NewEvent("tick", {})], expected_seq=4)
        [new] = log.append("s0", [NewEvent("tick", {"p": 11})], expected_seq=5)
        assert (new.seq, new.position) == (6, 11)
    finally:
        log.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'events'")
        assert [name for (name,) in indexes] == ["events"]  # no per-insert index left
        assert conn.execute("SELECT count(*) FROM stream_index").fetchone()[0] == 10
    assert _index_problems(db) == []


def test_concurrent_readers_share_a_bounded_pool(tmp_path: Path) -> None:
    """Many threads reading at once all get their events, through at most max_readers
    connections (each connection has a page cache of its own)."""
    log = SQLiteEventLog(tmp_path / "events.db", max_readers=2)
    try:
        for k in range(8):
            log.append(f"s{k}", [NewEvent("tick", {"i": i}) for i in range(50)], 0)
        counts: list[int] = []
        errors: list[BaseException] = []

        def read(k: int) -> None:
            try:
                for _ in range(20):
                    counts.append(len(log.read(f"s{k % 8}")))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=read, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and counts == [50] * 320
        assert len(log._readers) <= 2
    finally:
        log.close()
    with pytest.raises(ValueError, match="max_readers"):
        SQLiteEventLog(tmp_path / "other.db", max_readers=0)
