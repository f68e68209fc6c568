"""``sessionhub verify``: scan the whole log for damage; exit status 1 when any is found.

What it finds, each named by (stream, seq):

- ``gap``: a stream's seqs skip numbers (or do not start at 1);
- ``duplicate``: two records with the same (stream, seq), or one command appended twice
  (its command id shows up again after other commands: a retried append that the log
  should have deduplicated);
- ``corrupt``: a record that does not decode (bad JSON or UTF-8, data not an object);
- ``replay``: an event the session fold cannot apply;
- ``snapshot``: a snapshot that disagrees with replaying the events up to its seq, that
  does not decode, that is ahead of its stream, or whose stream has no events;
- ``index`` (SQLite): the stream index disagrees with the events table (an entry that
  names no event or another one, or an indexed event without its entry), so reads of
  that stream would miss or misplace events.

On SQLite the scan reads the ``events`` table directly, in (stream, seq) order, with
its own read-only connection. That is deliberate and SQLite-specific: the backend's
read API stops at the first undecodable record and can never show two records of one
(stream, seq), while the table shows everything as stored. Other backends (JetStream,
memory) are scanned through the ``EventLog`` protocol (``read_all`` in global order),
stepping over undecodable records one position at a time.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.catalog import CATALOG_SNAPSHOT, SYSTEM_STREAM_PREFIX
from actors.state import SessionState, evolve
from eventlog import CorruptRecordError, Event, EventLog, EventLogError, Snapshot, codec
from sessionhub.ops.common import (
    EXIT_FAILED,
    EXIT_OK,
    OpsError,
    add_json_argument,
    add_log_arguments,
    command,
    dump_json,
    open_log,
    resolve_eventlog,
    sqlite_path,
)
from sessionhub.ops.progress import Progress
from sessionhub.ops.replay import replay_session, snapshot_differences

__all__ = ["Problem", "VerifyReport", "register", "verify_eventlog", "verify_sqlite"]

PAGE = 5000


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the log, at (stream, seq)."""

    kind: str
    stream_id: str
    seq: int
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "stream_id": self.stream_id,
            "seq": self.seq,
            "message": self.message,
        }

    def __str__(self) -> str:
        return f"{self.kind:<10} stream={self.stream_id} seq={self.seq}: {self.message}"


@dataclass
class VerifyReport:
    method: str
    events: int = 0
    streams: int = 0
    snapshots_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, stream_id: str, seq: int, message: str) -> None:
        self.problems.append(Problem(kind, stream_id, seq, message))

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "method": self.method,
            "events": self.events,
            "streams": self.streams,
            "snapshots_checked": self.snapshots_checked,
            "problems": [p.to_json() for p in self.problems],
        }


def _is_session(stream_id: str) -> bool:
    return not stream_id.startswith(SYSTEM_STREAM_PREFIX)


class _StreamCheck:
    """Checks one stream's records in seq order: seqs, commands, and its snapshot's fold."""

    def __init__(self, report: VerifyReport, stream_id: str, snapshot_seq: int | None) -> None:
        self.report = report
        self.stream_id = stream_id
        self.last = 0
        self.prev_command: str | None = None
        self.commands: dict[str, int] = {}
        self.snapshot_seq = snapshot_seq
        # Fold only what a snapshot needs checking against; a damaged prefix stops it.
        self.state: SessionState | None = (
            SessionState(session_id=stream_id) if snapshot_seq and _is_session(stream_id) else None
        )
        self.fold_ok = self.state is not None

    def seen(self, seq: int, command_id: str | None) -> bool:
        """Account for a record's (seq, command id); False when it must not be folded."""
        report, sid = self.report, self.stream_id
        if seq <= self.last:
            report.add("duplicate", sid, seq, f"a second record with seq {seq}")
            self._damaged(seq)
            return False
        if seq != self.last + 1:
            first, end = self.last + 1, seq - 1
            missing = f"seq {first}" if first == end else f"seqs {first}..{end}"
            report.add(
                "gap", sid, first, f"{missing} missing (the stream goes from {self.last} to {seq})"
            )
            self._damaged(first)
        self.last = seq
        if command_id is not None:
            if command_id != self.prev_command and command_id in self.commands:
                report.add(
                    "duplicate",
                    sid,
                    seq,
                    f"command {command_id!r} appended again (it was already stored up to "
                    f"seq {self.commands[command_id]})",
                )
                self._damaged(seq)
            self.commands[command_id] = seq
        self.prev_command = command_id
        return True

    def corrupt(self, seq: int, reason: str) -> None:
        self.report.add("corrupt", self.stream_id, seq, reason)
        self._damaged(seq)

    def _damaged(self, seq: int) -> None:
        if self.snapshot_seq is not None and seq <= self.snapshot_seq:
            self.fold_ok = False

    def fold(self, event: Event) -> bool:
        """Fold an event; True once the snapshot's seq is reached (compare now)."""
        if not self.fold_ok or self.state is None or self.snapshot_seq is None:
            return False
        if event.seq > self.snapshot_seq:
            return False
        try:
            evolve(self.state, event)
        except Exception as exc:  # a bad event: the fold cannot go on
            self.report.add(
                "replay", self.stream_id, event.seq, f"the session fold fails here: {exc!r}"
            )
            self.fold_ok = False
            return False
        return event.seq == self.snapshot_seq

    def compare(self, snapshot: Snapshot) -> None:
        assert self.state is not None
        self.report.snapshots_checked += 1
        diffs = snapshot_differences(self.state, snapshot)
        if diffs:
            self.report.add(
                "snapshot",
                self.stream_id,
                snapshot.seq,
                "the snapshot disagrees with the replay: "
                + "; ".join(diffs[:5])
                + (f"; and {len(diffs) - 5} more" if len(diffs) > 5 else ""),
            )


# --- SQLite: the table as stored ------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _connect_readonly(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA query_only = ON")
        conn.text_factory = bytes  # invalid UTF-8 must reach us as bytes, not fail the scan
        conn.execute("SELECT 1 FROM events LIMIT 1")
    except sqlite3.Error as exc:
        raise OpsError(f"cannot read the event log {path}: {exc}") from exc
    return conn


def verify_sqlite(path: Path, *, progress: bool | None = None) -> VerifyReport:
    """Scan a SQLite event log's tables directly (see the module docstring)."""
    report = VerifyReport(method="sqlite-table")
    conn = _connect_readonly(path)
    try:
        # One read transaction: the scan sees one consistent state of the file while a
        # server beside it goes on appending (WAL readers are never blocked).
        conn.execute("BEGIN")
        snapshots: dict[str, int] = {}
        for sid_raw, seq in conn.execute("SELECT stream_id, seq FROM snapshots"):
            sid = _text_or_replace(sid_raw)
            if sid != CATALOG_SNAPSHOT:  # the hub's catalog: a snapshot of no stream
                snapshots[sid] = seq
        total = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        rows = conn.execute(
            "SELECT stream_id, seq, type, data, created_at, command_id, version, position "
            "FROM events ORDER BY stream_id, seq, position"
        )
        check: _StreamCheck | None = None
        last_stream_raw: Any = None
        seen_streams: dict[str, int] = {}
        with Progress("verifying", total, enabled=progress) as bar:
            while True:
                chunk = rows.fetchmany(PAGE)
                if not chunk:
                    break
                for row in chunk:
                    sid_raw = row[0]
                    if check is None or sid_raw != last_stream_raw:
                        if check is not None:
                            seen_streams[check.stream_id] = check.last
                        sid = _text_or_replace(sid_raw)
                        last_stream_raw = sid_raw
                        check = _StreamCheck(report, sid, snapshots.get(sid))
                        report.streams += 1
                    report.events += 1
                    _check_row(conn, check, row)
                bar.advance(len(chunk))
        if check is not None:
            seen_streams[check.stream_id] = check.last
        for sid, snap_seq in sorted(snapshots.items()):
            last = seen_streams.get(sid)
            if last is None:
                report.add("snapshot", sid, snap_seq, "a snapshot of a stream that has no events")
            elif snap_seq > last:
                report.add(
                    "snapshot", sid, snap_seq, f"the snapshot is ahead of the stream (last {last})"
                )
        _check_stream_index(conn, report)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise OpsError(f"cannot read the event log {path}: {exc}") from exc
    finally:
        conn.close()
    return report


# Entries that name no event, or an event of another (stream, seq); then events up to
# meta.indexed that have no entry. Tables of schema version 1 have no stream index.
_INDEX_ORPHANS = """
SELECT i.stream_id, i.seq, e.position IS NULL FROM stream_index AS i
LEFT JOIN events AS e ON e.position = i.position
WHERE e.position IS NULL OR e.stream_id != i.stream_id OR e.seq != i.seq
"""
_INDEX_MISSING = """
SELECT e.stream_id, e.seq FROM events AS e
WHERE e.position <= (SELECT indexed FROM meta) AND NOT EXISTS (
    SELECT 1 FROM stream_index AS i
    WHERE i.stream_id = e.stream_id AND i.seq = e.seq AND i.position = e.position)
"""


def _check_stream_index(conn: sqlite3.Connection, report: VerifyReport) -> None:
    query = "SELECT count(*) FROM sqlite_master WHERE name = 'stream_index'"
    if not conn.execute(query).fetchone()[0]:
        return
    for sid_raw, seq, gone in conn.execute(_INDEX_ORPHANS):
        why = "names no event" if gone else "names an event of another stream or seq"
        report.add("index", _text_or_replace(sid_raw), seq, f"the stream index entry {why}")
    for sid_raw, seq in conn.execute(_INDEX_MISSING):
        report.add("index", _text_or_replace(sid_raw), seq, "an indexed event has no entry")


def _text_or_replace(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _check_row(conn: sqlite3.Connection, check: _StreamCheck, row: tuple[Any, ...]) -> None:
    sid_raw, seq, type_, data, created_at, command_id, version, _position = row
    sid = check.stream_id
    if not isinstance(seq, int):
        check.corrupt(-1, f"seq is not an integer: {seq!r}")
        return
    try:
        command_text = None if command_id is None else _text(command_id)
    except UnicodeDecodeError:
        command_text = None
    if not check.seen(seq, command_text):
        return
    try:
        if isinstance(sid_raw, bytes):
            sid_raw.decode("utf-8")
        type_text, created_text = _text(type_), _text(created_at)
        if command_id is not None:
            _text(command_id)
    except UnicodeDecodeError as exc:
        check.corrupt(seq, f"a text column is not UTF-8: {exc}")
        return
    try:
        value = codec.decode(data, sid, seq)
    except CorruptRecordError as exc:
        check.corrupt(seq, f"data does not decode: {exc.reason}")
        return
    if not isinstance(value, dict):
        check.corrupt(seq, f"data is not a JSON object but {type(value).__name__}")
        return
    if not isinstance(version, int):
        check.corrupt(seq, f"version is not an integer: {version!r}")
        return
    event = Event(sid, seq, type_text, value, created_text, command_text, version)
    if check.fold(event):
        snapshot = _load_sqlite_snapshot(conn, check)
        if snapshot is not None:
            check.compare(snapshot)


def _load_sqlite_snapshot(conn: sqlite3.Connection, check: _StreamCheck) -> Snapshot | None:
    row = conn.execute(
        "SELECT seq, state, created_at FROM snapshots WHERE stream_id = ?",
        (check.stream_id,),
    ).fetchone()
    if row is None:
        return None
    seq, state, created_at = row
    try:
        value = codec.decode(state, check.stream_id, seq)
    except CorruptRecordError as exc:
        check.report.add("snapshot", check.stream_id, seq, f"does not decode: {exc.reason}")
        return None
    if not isinstance(value, dict):
        check.report.add("snapshot", check.stream_id, seq, "its state is not a JSON object")
        return None
    return Snapshot(check.stream_id, seq, value, _text_or_replace(created_at))


# --- any backend: through the EventLog protocol ------------------------------------------------


def verify_eventlog(log: EventLog, *, progress: bool | None = None) -> VerifyReport:
    """Scan a log through ``read_all`` (global order); snapshots checked by replay."""
    report = VerifyReport(method="eventlog-api")
    checks: dict[str, _StreamCheck] = {}

    def check_of(stream_id: str) -> _StreamCheck:
        check = checks.get(stream_id)
        if check is None:
            check = checks[stream_id] = _StreamCheck(report, stream_id, None)
            report.streams += 1
        return check

    with Progress("verifying", log.count(), enabled=progress) as bar:
        for item in _scan(log):
            report.events += 1
            bar.advance()
            if isinstance(item, CorruptRecordError):
                check = check_of(item.stream_id)
                check.seen(item.seq, None)
                check.corrupt(item.seq, f"does not decode: {item.reason}")
            else:
                check_of(item.stream_id).seen(item.seq, item.command_id)
    for sid in sorted(checks):
        if _is_session(sid):
            _check_snapshot(log, report, sid, checks[sid])
    return report


def _scan(log: EventLog) -> Iterator[Event | CorruptRecordError]:
    """Every record up to the last position, in order; an undecodable one as its error.

    A page that fails to decode is walked one record at a time: ``read_all(p, 1)``
    failing means the record after position ``p`` is bad, so the walk steps to ``p + 1``
    (positions are dense but for deleted streams; a record met twice is reported once).
    """
    end = log.last_position()
    reported: set[tuple[str, int]] = set()
    after = 0
    while after < end:
        try:
            batch = log.read_all(after_position=after, limit=PAGE)
        except CorruptRecordError:
            stop = min(after + PAGE, end)
            while after < stop:
                try:
                    one = log.read_all(after_position=after, limit=1)
                except CorruptRecordError as exc:
                    if (exc.stream_id, exc.seq) not in reported:
                        reported.add((exc.stream_id, exc.seq))
                        yield exc
                    after += 1
                    continue
                if not one:
                    return
                yield one[0]
                after = one[0].position
            continue
        if not batch:
            return
        yield from batch
        after = batch[-1].position


def _check_snapshot(log: EventLog, report: VerifyReport, sid: str, check: _StreamCheck) -> None:
    try:
        snapshot = log.load_snapshot(sid)
    except CorruptRecordError as exc:
        report.add("snapshot", sid, exc.seq, f"does not decode: {exc.reason}")
        return
    if snapshot is None:
        return
    if snapshot.seq > check.last:
        report.add("snapshot", sid, snapshot.seq, f"ahead of the stream (last {check.last})")
        return
    damaged = [
        p
        for p in report.problems
        if p.stream_id == sid and p.seq <= snapshot.seq and p.kind != "snapshot"
    ]
    if damaged:
        return  # the damage is reported; the fold up to the snapshot is not meaningful
    try:
        state = replay_session(log, sid, snapshot.seq, progress=False)
    except (OpsError, EventLogError) as exc:
        report.add("snapshot", sid, snapshot.seq, f"cannot replay up to it: {exc}")
        return
    except Exception as exc:
        report.add("replay", sid, snapshot.seq, f"the session fold fails: {exc!r}")
        return
    fold = _StreamCheck(report, sid, snapshot.seq)
    fold.state = state
    fold.compare(snapshot)


# --- the command -------------------------------------------------------------------------------


def verify_url(url: str, *, progress: bool | None = None) -> VerifyReport:
    """Verify the log at ``url``: the table scan for SQLite, the protocol otherwise."""
    path = sqlite_path(url)
    if path is not None:
        if not path.exists():
            raise OpsError(f"no event log at {path} (from {url})")
        return verify_sqlite(path, progress=progress)
    log = open_log(url)
    try:
        return verify_eventlog(log, progress=progress)
    finally:
        log.close()


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_log_arguments(parser)
    add_json_argument(parser, "the report")


def _run(args: argparse.Namespace) -> int:
    """Verify the whole log."""
    url, _ = resolve_eventlog(args)
    report = verify_url(url)
    if args.json:
        print(dump_json(report.to_json()))
    else:
        for problem in report.problems:
            print(problem)
        verdict = "ok" if report.ok else f"{len(report.problems)} problems"
        print(
            f"verify: {verdict} in {report.events} events of {report.streams} streams "
            f"({report.snapshots_checked} snapshots checked; {report.method} scan)",
            file=sys.stdout if report.ok else sys.stderr,
        )
    return EXIT_OK if report.ok else EXIT_FAILED


def register(commands: MutableMapping[str, Any], factory: Callable[..., Any]) -> None:
    """Add ``verify`` to the CLI's table of subcommands."""
    commands["verify"] = factory(
        help="scan the whole log for gaps, duplicates, corrupt records, bad snapshots",
        description="Scan every stream of the event log and print each problem with its "
        "(stream, seq): gaps in seqs, duplicate records or re-appended commands, records "
        "that do not decode, events the session fold cannot apply, snapshots that disagree "
        "with replaying the events. Exit status 1 when anything is wrong. On SQLite the "
        "events table is read directly (read-only), so nothing the backend would hide "
        "escapes the scan.",
        add_arguments=_arguments,
        run=command("verify", _run),
    )
