"""The embedded event log: one SQLite file in WAL mode, written by one group-commit thread.

Why one writer thread: SQLite allows one writer at a time and every commit costs an
fsync. Session actors are threads that each block in ``append`` until their events are
durable, so the appends are queued and one thread drains the queue, checks every
append's expected seq and command id, inserts the whole batch in ONE transaction and
commits it with ONE fsync (``synchronous=FULL``), then wakes each caller with its own
result or error. Many appends share one fsync; a conflict of one append fails only
that append.

Reads never go through the writer: they use a small pool of read connections (WAL lets
readers run beside the writer), so each reading thread has a connection of its own
while it reads.

Other writers on the same file (another process, or another ``SQLiteEventLog`` of this
process, e.g. an operator tool beside a running server) are safe: every batch runs
under ``BEGIN IMMEDIATE`` (SQLite's write lock, waited for up to ``busy_timeout``) and
checks ``PRAGMA data_version``; when someone else committed in between, the writer's
caches of last seqs and positions are dropped and reloaded from the file.

Failure semantics: an append's caller always learns its outcome. A conflict or an
invalid event is that append's own error. If the batch transaction fails (disk full,
I/O error, the file locked for longer than ``busy_timeout``), nothing of the batch is
stored and every append of it raises ``UnavailableError``. A listener that raises is
logged and skipped: its events are durable and the appender still succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from eventlog import codec, metrics
from eventlog.base import AppendDone, Listener
from eventlog.errors import ConflictError, CorruptRecordError, UnavailableError
from eventlog.events import Event, NewEvent, Snapshot

__all__ = ["SQLiteEventLog"]

_log = logging.getLogger(__name__)
_APPEND_SECONDS = metrics.APPEND_SECONDS.labels("sqlite")
_COMMIT_SECONDS = metrics.COMMIT_SECONDS.labels("sqlite")
_BATCH_APPENDS = metrics.BATCH_APPENDS.labels("sqlite")
_EVENTS_APPENDED = metrics.EVENTS_APPENDED.labels("sqlite")

SCHEMA_VERSION = 2

# Why the stream index is a table of its own, written in bulk: a SQLite index on
# (stream_id, seq) gets one entry per insert on a page of its stream, so a commit of 64
# appends from 64 sessions dirties 64 scattered index pages besides the few tail pages of
# the events, and every dirty page is written to the WAL and fsynced (measured, raw
# sqlite3, 64 rows per commit: 20-28k inserts/s with the index, 50-74k without). Here
# appends go to the rowid-ordered ``events`` table only; every ``index_every`` events,
# inside the same transaction as the batch that crosses the mark, the unindexed tail is
# copied into ``stream_index`` sorted by stream, so each stream's page is dirtied once
# per pass instead of once per append. A read of a stream joins its indexed part with a
# scan of the short unindexed tail (``position > meta.indexed``), both in one read
# transaction. Both tables change in the same transactions, so a crash never leaves the
# index ahead of or inconsistent with the events.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position   INTEGER PRIMARY KEY,
    stream_id  TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    type       TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    command_id TEXT,
    version    INTEGER NOT NULL
);
-- (stream_id, seq) -> position for every event with position <= meta.indexed.
CREATE TABLE IF NOT EXISTS stream_index (
    stream_id  TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    position   INTEGER NOT NULL,
    PRIMARY KEY (stream_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    stream_id  TEXT    PRIMARY KEY,
    seq        INTEGER NOT NULL,
    state      TEXT    NOT NULL,
    created_at TEXT    NOT NULL
);
-- One row. high_water and deleted are written only by delete_stream (appends never touch
-- them): the highest position handed out before a delete, so that a position is never
-- reused after the newest events were deleted, and how many events were deleted.
-- Positions are handed out densely (1, 2, 3...), so count() = last position - deleted,
-- exactly and in O(log n). indexed: the events up to this position are in stream_index.
CREATE TABLE IF NOT EXISTS meta (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    high_water INTEGER NOT NULL,
    deleted    INTEGER NOT NULL,
    indexed    INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO meta (id, high_water, deleted, indexed) VALUES (1, 0, 0, 0);
"""

# Version 1 kept UNIQUE (stream_id, seq) on the events table itself. SQLite cannot drop
# a constraint's index, so the table is copied once into the version 2 layout; its rows
# become the unindexed tail, indexed when the log opens.
_MIGRATE_FROM_1 = """
ALTER TABLE events RENAME TO events_v1;
ALTER TABLE meta ADD COLUMN indexed INTEGER NOT NULL DEFAULT 0;
"""
_MIGRATE_COPY_1 = "INSERT INTO events SELECT * FROM events_v1; DROP TABLE events_v1;"

_COLUMNS = "position, stream_id, seq, type, data, created_at, command_id, version"
_INSERT = f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_STREAM_COLUMNS = "position, seq, type, data, created_at, command_id, version"
_E_COLUMNS = ", ".join(f"e.{c}" for c in _COLUMNS.split(", "))
_E_STREAM_COLUMNS = ", ".join(f"e.{c}" for c in _STREAM_COLUMNS.split(", "))
_TAIL = "position > (SELECT indexed FROM meta) AND stream_id = ?"
# A stream's events are read in two statements of one read transaction: the indexed part
# in seq order, then the tail (position order is seq order within a stream).
_READ_STREAM_INDEXED = (
    f"SELECT {_E_STREAM_COLUMNS} FROM stream_index AS i JOIN events AS e"
    " ON e.position = i.position WHERE i.stream_id = ? AND i.seq > ? ORDER BY i.seq LIMIT ?"
)
_READ_STREAM_TAIL = (
    f"SELECT {_STREAM_COLUMNS} FROM events WHERE {_TAIL} AND seq > ? ORDER BY position LIMIT ?"
)
_READ_ALL = f"SELECT {_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
_LAST_SEQ = (
    "SELECT max(coalesce((SELECT max(seq) FROM stream_index WHERE stream_id = ?1), 0),"
    f" coalesce((SELECT max(seq) FROM events WHERE {_TAIL.replace('?', '?1')}), 0))"
)
# The writer's per-batch look-up of the streams missing from its cache: their indexed
# heads by key, then one scan of the tail for all of them (JSON arrays of the keys).
_LAST_SEQS_INDEXED = (
    "SELECT w.value, (SELECT max(seq) FROM stream_index WHERE stream_id = w.value)"
    " FROM json_each(?) AS w"
)
_LAST_SEQS_TAIL = (
    "SELECT stream_id, max(seq) FROM events WHERE position > ?"
    " AND stream_id IN (SELECT value FROM json_each(?)) GROUP BY stream_id"
)
_RETRY_INDEXED = (
    f"SELECT {_E_COLUMNS} FROM stream_index AS i JOIN events AS e"
    " ON e.position = i.position WHERE i.stream_id = ? AND i.seq > ? AND i.seq <= ?"
    " ORDER BY i.seq"
)
_RETRY_TAIL = (
    f"SELECT {_COLUMNS} FROM events WHERE position > ? AND stream_id = ?"
    " AND seq > ? AND seq <= ? ORDER BY position"
)
_INDEX_TAIL = (
    "INSERT INTO stream_index (stream_id, seq, position)"
    " SELECT stream_id, seq, position FROM events WHERE position > ? ORDER BY stream_id, seq"
)
_DELETE_INDEXED = (
    "DELETE FROM events WHERE position IN (SELECT position FROM stream_index WHERE stream_id = ?)"
)
_DELETE_TAIL = "DELETE FROM events WHERE position > ? AND stream_id = ?"
_DATA_VERSION = "PRAGMA data_version"
_LAST_POSITION = (
    "SELECT max(high_water, coalesce((SELECT max(position) FROM events), 0)), indexed FROM meta"
)
_COUNT = (
    "SELECT max(high_water, coalesce((SELECT max(position) FROM events), 0)) - deleted FROM meta"
)
_SAVE_SNAPSHOT = (
    "INSERT INTO snapshots (stream_id, seq, state, created_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (stream_id) DO UPDATE SET"
    " seq = excluded.seq, state = excluded.state, created_at = excluded.created_at"
)


#: Upper bound on the appends committed together; bounds a batch's latency and memory.
DEFAULT_MAX_BATCH = 1000
#: How long a statement waits for another connection's lock before giving up.
DEFAULT_BUSY_TIMEOUT_MS = 30_000
#: The unindexed tail is indexed once it holds this many events (see ``_SCHEMA``): a read
#: of a stream scans at most about this many rows besides its indexed part.
DEFAULT_INDEX_EVERY = 1024
#: Most read connections at once (see ``SQLiteEventLog.__init__``).
DEFAULT_MAX_READERS = 8
#: The writer forgets its last-seq cache past this many streams (reloaded on demand).
_SEQ_CACHE_LIMIT = 100_000


# -- decoding: the replay hot path ---------------------------------------------------
#
# Replaying a session decodes every one of its events, so this loop is kept tight: the
# codec's fast decoder (msgspec) is called directly, and Events (msgspec Structs) are
# built positionally. Anything the fast decoder refuses goes through ``codec.decode``, which falls
# back to the standard library and raises ``CorruptRecordError`` if that fails too.

FastDecodeError = codec.FastDecodeError
_event = Event


def _index_tail(conn: sqlite3.Connection, indexed: int, last: int) -> None:
    """Copy the events after position ``indexed`` (``last`` the newest) into the index."""
    conn.execute(_INDEX_TAIL, (indexed,))
    conn.execute("UPDATE meta SET indexed = ?", (last,))


def _name_record(row: tuple[Any, ...]) -> tuple[str, int]:
    """The stream and seq of a row of ``_COLUMNS`` read with ``text_factory=bytes``."""
    stream_id = row[1]
    if isinstance(stream_id, bytes):
        stream_id = stream_id.decode("utf-8", "replace")
    return stream_id, row[2]


def _rows_to_events(rows: Iterable[tuple[Any, ...]]) -> list[Event]:
    """Decode rows of ``_COLUMNS``; a record that does not decode raises CorruptRecordError."""
    out: list[Event] = []
    append = out.append
    fast = codec.fast_decode
    event = _event
    for position, sid, seq, type_, data, created, command_id, version in rows:
        try:
            value = fast(data)
        except (FastDecodeError, TypeError):
            value = codec.decode(data, sid, seq)
        append(event(sid, seq, type_, value, created, command_id, version, position))
    return out


def _stream_rows_to_events(stream_id: str, rows: Iterable[tuple[Any, ...]]) -> list[Event]:
    """Like ``_rows_to_events`` for rows of ``_STREAM_COLUMNS`` (one stream, no stream_id)."""
    out: list[Event] = []
    append = out.append
    fast = codec.fast_decode
    event = _event
    for position, seq, type_, data, created, command_id, version in rows:
        try:
            value = fast(data)
        except (FastDecodeError, TypeError):
            value = codec.decode(data, stream_id, seq)
        append(event(stream_id, seq, type_, value, created, command_id, version, position))
    return out


def _path_from_url(url: str) -> Path:
    """The database path of a ``sqlite://`` URL.

    ``sqlite:////abs/path/events.db`` (four slashes) and ``sqlite:///abs/path/events.db``
    name absolute paths; ``sqlite:///events.db`` (a bare file name: a database straight
    in ``/`` is never meant), ``sqlite:///./data/events.db`` and ``sqlite://events.db``
    are relative to the current directory.
    """
    parsed = urlparse(url)
    if parsed.scheme != "sqlite":
        raise ValueError(f"not a sqlite:// URL: {url!r}")
    rest = url[len("sqlite://") :].split("?", 1)[0]
    if not rest or rest == "/":
        raise ValueError(f"sqlite URL names no file: {url!r}")
    if rest.startswith("//"):
        return Path(rest[1:])
    if not rest.startswith("/"):
        return Path.cwd() / rest
    body = rest[1:]
    if "/" not in body or body.startswith(("./", "../")):
        return Path.cwd() / body
    return Path(rest)


class _Waiter:
    """A queued write whose caller blocks on ``latch`` until the writer decided its outcome.

    The writer does not wake every caller of a batch itself: it wakes the first, and
    each woken caller wakes the ``next`` one before going on. That keeps only about one
    appender thread runnable at a time, so the writer thread gets the GIL back quickly
    each time SQLite gives it up (measured: about 1.3x more appends/s with 64 callers).
    """

    __slots__ = ("error", "latch", "next", "result")

    def __init__(self, latched: bool = True) -> None:
        """``latched``: a caller will block in ``wait`` (items answered otherwise have none)."""
        self.result: Any = None
        self.error: BaseException | None = None
        self.next: _Waiter | None = None
        self.latch: Any = None
        if latched:
            self.latch = threading.Lock()
            self.latch.acquire()

    def wait(self) -> Any:
        try:
            self.latch.acquire()
        except BaseException:  # interrupted: let a helper pass the wake-up on for us
            threading.Thread(target=self._pass_on, daemon=True).start()
            raise
        if self.next is not None:
            self.next.latch.release()
        if self.error is not None:
            raise self.error
        return self.result

    def _pass_on(self) -> None:
        self.latch.acquire()
        if self.next is not None:
            self.next.latch.release()


def _wake(batch: list[_Waiter]) -> None:
    """Hand every item of a decided batch its outcome: callbacks, loop futures, threads."""
    waiters: list[_Waiter] = []
    by_loop: dict[asyncio.AbstractEventLoop, list[_AsyncAppend]] = {}
    for w in batch:
        kind = type(w)
        if kind is _QueuedAppend:
            try:
                w.done(w.result, w.error)  # type: ignore[attr-defined]
            except Exception:
                _log.exception("append callback failed")
        elif kind is _AsyncAppend:
            by_loop.setdefault(w.loop, []).append(w)  # type: ignore[attr-defined]
        else:
            waiters.append(w)
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_resolve_async, items)
    if not waiters:
        return
    for i in range(len(waiters) - 1):
        waiters[i].next = waiters[i + 1]
    waiters[0].latch.release()


def _resolve_async(items: list[_AsyncAppend]) -> None:
    """On the appenders' loop: complete every future of one batch in one callback."""
    for item in items:
        if item.future.done():
            continue
        if item.error is not None:
            item.future.set_exception(item.error)
        else:
            item.future.set_result(item.result)


class _Append(_Waiter):
    """One queued append."""

    __slots__ = ("command_id", "encoded", "events", "expected_seq", "stream_id")

    def __init__(
        self,
        stream_id: str,
        expected_seq: int,
        events: Sequence[NewEvent],
        encoded: list[str],
        latched: bool = True,
    ) -> None:
        super().__init__(latched)
        self.stream_id = stream_id
        self.expected_seq = expected_seq
        self.events = events
        self.encoded = encoded  # each event's data as JSON, encoded by the caller
        self.command_id = events[0].command_id if events else None


class _AsyncAppend(_Append):
    """An append awaited on an asyncio loop: completed by one callback per batch."""

    __slots__ = ("future", "loop")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        stream_id: str,
        expected_seq: int,
        events: Sequence[NewEvent],
        encoded: list[str],
    ) -> None:
        super().__init__(stream_id, expected_seq, events, encoded, latched=False)
        self.loop = loop
        self.future: asyncio.Future[list[Event]] = loop.create_future()


class _QueuedAppend(_Append):
    """An append whose outcome is handed to ``done`` on the writer thread (no waiting)."""

    __slots__ = ("done",)

    def __init__(
        self,
        stream_id: str,
        expected_seq: int,
        events: Sequence[NewEvent],
        encoded: list[str],
        done: AppendDone,
    ) -> None:
        # Every slot set here rather than through the two parent initialisers: this is
        # the hot path of session actors' appends (about 1 us less an append).
        self.result = None
        self.error = None
        self.next = None
        self.latch = None
        self.stream_id = stream_id
        self.expected_seq = expected_seq
        self.events = events
        self.encoded = encoded
        self.command_id = events[0].command_id if events else None
        self.done = done


class _SaveSnapshot(_Waiter):
    __slots__ = ("row", "stream_id")

    def __init__(self, row: tuple[str, int, str, str]) -> None:
        super().__init__()
        self.stream_id = row[0]
        self.row = row


class _DeleteStream(_Waiter):
    __slots__ = ("stream_id",)

    def __init__(self, stream_id: str) -> None:
        super().__init__()
        self.stream_id = stream_id


_Item = _Append | _SaveSnapshot | _DeleteStream
_STOP = object()


class _Subscription:
    def __init__(self, log: SQLiteEventLog, listener: Listener) -> None:
        self._log = log
        self.listener = listener

    def close(self) -> None:
        self._log._unsubscribe(self)


class SQLiteEventLog:
    """An ``EventLog`` in one SQLite file (WAL, ``synchronous=FULL``), group-committed.

    Args:
        path: the database file; its parent directories are created.
        max_batch: most appends committed in one transaction.
        busy_timeout_ms: how long to wait for another connection's write lock.
        synchronous: ``"full"`` (the default): every commit is fsynced, so an
            acknowledged append survives a power loss. ``"normal"``: the WAL is
            fsynced at checkpoints only; an acknowledged append survives the death
            of the process (SIGKILL) but not of the machine. URL: ``?sync=normal``.
        index_every: how many events the unindexed tail holds before it is copied
            into the stream index (see ``_SCHEMA``); 1 indexes every batch.
        max_readers: most read connections open at once; more readers wait for one.
    """

    backend = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        synchronous: str = "full",
        index_every: int = DEFAULT_INDEX_EVERY,
        max_readers: int = DEFAULT_MAX_READERS,
    ) -> None:
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be full or normal, not {synchronous!r}")
        if index_every < 1:
            raise ValueError(f"index_every must be at least 1, not {index_every}")
        if max_readers < 1:
            raise ValueError(f"max_readers must be at least 1, not {max_readers}")
        self._index_every = index_every
        self.synchronous = synchronous
        self.path = Path(path)
        self._max_batch = max_batch
        self._busy_timeout_ms = busy_timeout_ms
        self.path.parent.mkdir(parents=True, exist_ok=True)

        try:
            self._wconn = self._connect()
            self._init_schema(self._wconn)
        except sqlite3.Error as exc:
            raise UnavailableError(f"cannot open event log {str(self.path)!r}: {exc}") from exc

        self._closed = False
        self._submit_lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

        # At most max_readers read connections, each with its own page cache (up to
        # 2 MiB): 1,000 session actors starting at once held 188 connections and 376 MiB
        # of cache before this bound. Reads hold the GIL for most of their time, so a
        # few connections serve two cores as well as many.
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._reader_slots = threading.BoundedSemaphore(max_readers)

        # Subscribers: a tuple replaced on change, read by the writer without a lock;
        # delivery runs under _deliver_lock so that close() of a subscription waits
        # for a delivery in progress and nothing is delivered after it returns.
        self._subs: tuple[_Subscription, ...] = ()
        self._deliver_lock = threading.RLock()

        # Writer-thread state (touched by the writer thread only).
        self._seq_cache: dict[str, int] = {}
        self._next_position = 0  # 0: unknown, reload from meta
        self._indexed = 0  # meta.indexed as of the last batch
        self._data_version: int | None = None

        self._writer = threading.Thread(
            target=self._run_writer, name=f"eventlog-writer:{self.path.name}", daemon=True
        )
        self._writer.start()

    @classmethod
    def from_url(cls, url: str) -> SQLiteEventLog:
        """Open ``sqlite:///abs/path/events.db`` (or ``sqlite:///relative.db``).

        ``?sync=normal`` trades power-loss durability for speed (see the class).
        """
        query = parse_qs(urlparse(url).query)
        unknown = set(query) - {"sync"}
        if unknown:
            raise ValueError(f"unknown sqlite URL option {sorted(unknown)[0]!r}: expected sync")
        return cls(_path_from_url(url), synchronous=query.get("sync", ["full"])[-1])

    def __repr__(self) -> str:
        return f"SQLiteEventLog({str(self.path)!r})"

    # -- connections --------------------------------------------------------------

    def _connect(self, *, readonly: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=64
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        if readonly:
            conn.execute("PRAGMA query_only = ON")
        else:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        return conn

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        """Create or convert the schema, and index a long unindexed tail (a converted or
        externally written file), in one transaction."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise UnavailableError(
                    f"event log schema version {version} is newer than this code's "
                    f"({SCHEMA_VERSION})"
                )
            scripts = [_SCHEMA]
            if version == 1:
                _log.warning("converting the event log from schema version 1 to 2 (once)")
                scripts = [_MIGRATE_FROM_1, _SCHEMA, _MIGRATE_COPY_1]
            for script in scripts:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            last, indexed = conn.execute(_LAST_POSITION).fetchone()
            if last - indexed >= self._index_every:
                _index_tail(conn, indexed, last)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _reader(self) -> sqlite3.Connection:
        """A read connection of the pool; waits while ``max_readers`` are in use."""
        if self._closed:
            raise UnavailableError("event log is closed")
        self._reader_slots.acquire()
        try:
            if self._closed:
                raise UnavailableError("event log is closed")
            with self._readers_lock:
                if self._readers:
                    return self._readers.pop()
            return self._connect(readonly=True)
        except sqlite3.Error as exc:
            self._reader_slots.release()
            raise UnavailableError(f"cannot open a read connection: {exc}") from exc
        except BaseException:
            self._reader_slots.release()
            raise

    def _release(self, conn: sqlite3.Connection) -> None:
        try:
            with self._readers_lock:
                if not self._closed:
                    self._readers.append(conn)
                    return
            conn.close()
        finally:
            self._reader_slots.release()

    def _query(
        self,
        sql: str,
        params: tuple[Any, ...],
        *,
        record: Callable[[tuple[Any, ...]], tuple[str, int]] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run a read on a pooled connection; ``record`` names an event row's stream and seq."""
        probes = [(sql, params, record)] if record is not None else []
        return self._read(lambda conn: conn.execute(sql, params).fetchall(), probes)

    def _read(
        self,
        run: Callable[[sqlite3.Connection], list[tuple[Any, ...]]],
        probes: Sequence[tuple[str, tuple[Any, ...], Callable[[tuple[Any, ...]], tuple[str, int]]]],
    ) -> list[tuple[Any, ...]]:
        """``run`` on a pooled connection. A UTF-8 failure is looked for in the rows of
        ``probes`` (statement, parameters, how a row names its stream and seq) and reported
        as ``CorruptRecordError``; any other failure is ``UnavailableError``."""
        conn = self._reader()
        try:
            return run(conn)
        except sqlite3.OperationalError as exc:
            if "decode" in str(exc):  # TEXT holding invalid UTF-8
                for sql, params, record in probes:
                    self._raise_corrupt(conn, sql, params, record)
            raise UnavailableError(f"event log read failed: {exc}") from exc
        except sqlite3.Error as exc:
            raise UnavailableError(f"event log read failed: {exc}") from exc
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._release(conn)

    @staticmethod
    def _raise_corrupt(
        conn: sqlite3.Connection,
        sql: str,
        params: tuple[Any, ...],
        record: Callable[[tuple[Any, ...]], tuple[str, int]],
    ) -> None:
        """Find the row a UTF-8 failure came from and report it by stream and seq."""
        conn.text_factory = bytes
        try:
            for row in conn.execute(sql, params):
                for value in row:
                    if isinstance(value, bytes):
                        try:
                            value.decode("utf-8")
                        except UnicodeDecodeError as exc:
                            stream_id, seq = record(row)
                            raise CorruptRecordError(stream_id, seq, str(exc)) from exc
        finally:
            conn.text_factory = str

    # -- reads ----------------------------------------------------------------------

    def read(self, stream_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        """Events of one stream with seq > ``after_seq``, in seq order."""
        rows = self._read_stream(stream_id, after_seq, -1 if limit is None else limit)
        return _stream_rows_to_events(stream_id, rows)

    def _read_stream(self, stream_id: str, after_seq: int, limit: int) -> list[tuple[Any, ...]]:
        """The rows of a stream: its indexed part, then its tail, in one read transaction."""

        def run(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            conn.execute("BEGIN")
            rows = conn.execute(_READ_STREAM_INDEXED, (stream_id, after_seq, limit)).fetchall()
            if limit < 0 or len(rows) < limit:
                more = limit if limit < 0 else limit - len(rows)
                after = rows[-1][1] if rows else after_seq
                rows.extend(conn.execute(_READ_STREAM_TAIL, (stream_id, after, more)).fetchall())
            conn.execute("COMMIT")
            return rows

        def record(row: tuple[Any, ...]) -> tuple[str, int]:
            return stream_id, row[1]

        params = (stream_id, after_seq, limit)
        return self._read(
            run, [(_READ_STREAM_INDEXED, params, record), (_READ_STREAM_TAIL, params, record)]
        )

    def read_all(self, after_position: int = 0, limit: int | None = None) -> list[Event]:
        """Events of every stream with position > ``after_position``, in global order."""
        params = (after_position, -1 if limit is None else limit)
        rows = self._query(_READ_ALL, params, record=_name_record)
        return _rows_to_events(rows)

    def last_seq(self, stream_id: str) -> int:
        """The seq of the stream's last event, 0 for an empty or unknown stream."""
        return self._query(_LAST_SEQ, (stream_id,))[0][0] or 0

    def last_position(self) -> int:
        """The highest position ever given out (never reused after a delete), 0 if none."""
        return self._query(_LAST_POSITION, ())[0][0]

    def count(self) -> int:
        """The number of events in the log (exact: positions are dense, deletes counted)."""
        return self._query(_COUNT, ())[0][0]

    def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """The latest snapshot of the stream, or None."""
        rows = self._query(
            "SELECT seq, state, created_at FROM snapshots WHERE stream_id = ?", (stream_id,)
        )
        if not rows:
            return None
        seq, state, created_at = rows[0]
        return Snapshot(stream_id, seq, codec.decode(state, stream_id, seq), created_at)

    # -- writes (queued to the writer thread) ----------------------------------------

    def _submit(self, item: _Item) -> Any:
        if threading.get_ident() == self._writer.ident:
            # a listener writing to the log would wait for its own thread forever
            raise RuntimeError("an event log listener must not write to the log")
        with self._submit_lock:
            if self._closed:
                raise UnavailableError("event log is closed")
            self._queue.put(item)
        return item.wait()

    def append(self, stream_id: str, events: Sequence[NewEvent], expected_seq: int) -> list[Event]:
        """Append ``events`` if the stream's last seq is ``expected_seq``; block until durable.

        Raises:
            ConflictError: the stream moved on.
            InvalidEventError: an event's data is not JSON; nothing is stored.
            UnavailableError: the log is closed or the commit failed; nothing is stored.
        """
        encode = codec.encode
        encoded = [encode(e.data) for e in events]
        started = time.perf_counter()
        stored = self._submit(_Append(stream_id, expected_seq, events, encoded))
        _APPEND_SECONDS.observe(time.perf_counter() - started)
        return stored  # type: ignore[no-any-return]

    async def append_async(
        self, stream_id: str, events: Sequence[NewEvent], expected_seq: int
    ) -> list[Event]:
        """``append`` for asyncio callers: no thread per waiter, and the writer completes
        every future of a group commit with one ``call_soon_threadsafe``."""
        encode = codec.encode
        encoded = [encode(e.data) for e in events]
        started = time.perf_counter()
        item = _AsyncAppend(asyncio.get_running_loop(), stream_id, expected_seq, events, encoded)
        with self._submit_lock:
            if self._closed:
                raise UnavailableError("event log is closed")
            self._queue.put(item)
        stored = await item.future
        _APPEND_SECONDS.observe(time.perf_counter() - started)
        return stored

    def append_queued(
        self, stream_id: str, events: Sequence[NewEvent], expected_seq: int, done: AppendDone
    ) -> None:
        """``append`` without waiting: ``done(stored, error)`` gets the outcome, once.

        ``done`` runs on the writer thread after the batch is durable and the listeners
        have the events (or after the batch failed); it must not block or write to the
        log. Appends queued by one thread are decided in the order they were queued.

        Raises:
            InvalidEventError: an event's data is not JSON (``done`` is not called).
            UnavailableError: the log is closed (``done`` is not called).
        """
        encode = codec.encode
        encoded = [encode(events[0].data)] if len(events) == 1 else [encode(e.data) for e in events]
        item = _QueuedAppend(stream_id, expected_seq, events, encoded, done)
        with self._submit_lock:
            if self._closed:
                raise UnavailableError("event log is closed")
            self._queue.put(item)

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Store ``snapshot`` durably, replacing an older one of the same stream."""
        row = (snapshot.stream_id, snapshot.seq, codec.encode(snapshot.state), snapshot.created_at)
        self._submit(_SaveSnapshot(row))

    def delete_stream(self, stream_id: str) -> None:
        """Remove a stream's events and snapshot durably (an operator's purge)."""
        self._submit(_DeleteStream(stream_id))

    # -- subscriptions ------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> _Subscription:
        """Call ``listener`` on the writer thread with each committed batch, in order.

        Listeners are called before the appenders of that batch are woken, so once
        ``append`` returned, every subscriber has been handed its events.
        """
        with self._deliver_lock:
            if self._closed:
                raise UnavailableError("event log is closed")
            sub = _Subscription(self, listener)
            self._subs = (*self._subs, sub)
            return sub

    def _unsubscribe(self, sub: _Subscription) -> None:
        with self._deliver_lock:
            self._subs = tuple(s for s in self._subs if s is not sub)

    def _deliver(self, events: list[Event]) -> None:
        with self._deliver_lock:
            for sub in self._subs:
                try:
                    sub.listener(list(events))
                except Exception:
                    _log.exception("event log listener %r failed", sub.listener)

    # -- the writer thread ---------------------------------------------------------------

    def _run_writer(self) -> None:
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        limit = self._max_batch
        stop = False
        try:
            while not stop:
                first = get()
                if first is _STOP:
                    break
                batch = [first]
                while len(batch) < limit:
                    try:
                        item = get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                self._commit_batch(batch)
        finally:
            self._wconn.close()

    def _sync_caches(self, conn: sqlite3.Connection) -> None:
        """Drop the caches if another connection committed since our last batch."""
        version = conn.execute(_DATA_VERSION).fetchone()[0]
        if version != self._data_version or not self._next_position:
            self._seq_cache.clear()
            last, self._indexed = conn.execute(_LAST_POSITION).fetchone()
            self._next_position = last + 1
            self._data_version = version

    def _commit_batch(self, batch: list[_Item]) -> None:
        conn = self._wconn
        committed: list[Event] = []
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._sync_caches(conn)
                committed = self._apply_batch(conn, batch)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:  # the whole batch failed: nothing of it is stored
            self._seq_cache.clear()
            self._next_position = 0
            _log.error("event log batch of %d failed: %s", len(batch), exc)
            for item in batch:
                item.error = UnavailableError(f"event log commit failed: {exc}")
                item.error.__cause__ = exc
                item.result = None
            _wake(batch)
            return
        _COMMIT_SECONDS.observe(time.perf_counter() - started)
        _BATCH_APPENDS.observe(len(batch))
        _EVENTS_APPENDED.inc(len(committed))
        if committed and self._subs:
            self._deliver(committed)
        _wake(batch)

    def _prefetch(self, conn: sqlite3.Connection, batch: list[_Item]) -> None:
        """Load, in one query, the last seqs of the batch's streams not in the cache.

        One statement per batch instead of one per append: the writer thread gives up
        the GIL during every statement and may wait long to get it back while many
        appenders run, so fewer statements mean a faster writer.
        """
        cache = self._seq_cache
        misses = {
            item.stream_id
            for item in batch
            if isinstance(item, _Append) and item.stream_id not in cache
        }
        if misses:
            keys = codec.encode(list(misses))
            for stream_id, last in conn.execute(_LAST_SEQS_INDEXED, (keys,)):
                cache[stream_id] = last or 0
            for stream_id, last in conn.execute(_LAST_SEQS_TAIL, (self._indexed, keys)):
                cache[stream_id] = last

    def _stored_retry(
        self, conn: sqlite3.Connection, item: _Append, last: int
    ) -> list[tuple[Any, ...]] | None:
        """The rows of an earlier append of the same command at the same expected seq."""
        start = item.expected_seq
        end = min(last, start + len(item.events))
        rows = conn.execute(_RETRY_INDEXED, (item.stream_id, start, end)).fetchall()
        rows += conn.execute(_RETRY_TAIL, (self._indexed, item.stream_id, start, end)).fetchall()
        if not rows or rows[0][6] != item.command_id:
            return None
        return [row for row in rows if row[6] == item.command_id]

    def _apply_batch(self, conn: sqlite3.Connection, batch: list[_Item]) -> list[Event]:
        """Decide every item of the batch inside the open transaction; returns new events."""
        cache = self._seq_cache
        if len(cache) > _SEQ_CACHE_LIMIT:
            cache.clear()
        self._prefetch(conn, batch)
        event = _event
        position = self._next_position
        rows: list[tuple[Any, ...]] = []
        committed: list[Event] = []
        # (stream, command_id) -> events appended earlier in this batch.
        fresh: dict[tuple[str, str], list[Event]] = {}

        for item in batch:
            stream_id = item.stream_id
            if isinstance(item, _Append):
                command_id = item.command_id
                last = cache[stream_id]
                if last != item.expected_seq:
                    done = None
                    if command_id is not None and last > item.expected_seq:
                        done = fresh.get((stream_id, command_id))
                        if done is None and rows:
                            conn.executemany(_INSERT, rows)  # the look-up must see them
                            rows = []
                        if done is None:
                            found = self._stored_retry(conn, item, last)
                            if found:
                                try:
                                    done = _rows_to_events(found)
                                except CorruptRecordError as exc:
                                    item.error = exc
                                    continue
                    if done is not None:
                        item.result = list(done)
                    else:
                        item.error = ConflictError(stream_id, item.expected_seq, last)
                    continue
                news, encoded = item.events, item.encoded
                # Most appends carry one event: a one-pair tuple instead of a zip makes
                # the writer a few percent faster (bench/RESULTS.md, Event log).
                pairs = (
                    ((news[0], encoded[0]),) if len(news) == 1 else zip(news, encoded, strict=True)
                )
                stored = []
                for new, data in pairs:
                    last += 1
                    type_, created_at, cmd, version = (
                        new.type,
                        new.created_at,
                        new.command_id,
                        new.version,
                    )
                    rows.append((position, stream_id, last, type_, data, created_at, cmd, version))
                    stored.append(
                        event(stream_id, last, type_, new.data, created_at, cmd, version, position)
                    )
                    position += 1
                cache[stream_id] = last
                item.result = stored
                committed.extend(stored)
                if command_id is not None and stored:
                    fresh[(stream_id, command_id)] = stored
            else:
                if rows:  # keep the batch's order: earlier appends go in first
                    conn.executemany(_INSERT, rows)
                    rows = []
                if type(item) is _SaveSnapshot:
                    conn.execute(_SAVE_SNAPSHOT, item.row)
                else:
                    self._delete_stream(conn, stream_id, position - 1)
                    cache[stream_id] = 0
                    for key in [k for k in fresh if k[0] == stream_id]:
                        del fresh[key]
        if rows:
            conn.executemany(_INSERT, rows)
        if position - 1 - self._indexed >= self._index_every:
            _index_tail(conn, self._indexed, position - 1)
            self._indexed = position - 1
        self._next_position = position
        return committed

    def _delete_stream(self, conn: sqlite3.Connection, stream_id: str, last: int) -> None:
        """Delete a stream's events, index entries and snapshot (inside the batch)."""
        deleted = conn.execute(_DELETE_INDEXED, (stream_id,)).rowcount
        deleted += conn.execute(_DELETE_TAIL, (self._indexed, stream_id)).rowcount
        conn.execute("DELETE FROM stream_index WHERE stream_id = ?", (stream_id,))
        conn.execute("DELETE FROM snapshots WHERE stream_id = ?", (stream_id,))
        conn.execute(
            "UPDATE meta SET deleted = deleted + ?, high_water = max(high_water, ?)",
            (max(deleted, 0), last),
        )

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Commit what is queued, stop the writer, close every connection. Idempotent."""
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        if threading.current_thread() is not self._writer:
            self._writer.join()
        with self._deliver_lock:
            self._subs = ()
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
