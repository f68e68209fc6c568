"""``sessionhub export`` and ``sessionhub import``: move event logs between backends.

The format is JSON Lines, one event a line, in the log's global order::

    {"stream_id":"s1","seq":1,"type":"session_created","data":{...},
     "created_at":"2025-01-01T00:00:00.000Z","command_id":"create:s1","version":1}

Every field of the event envelope is kept except ``position``, which each backend
assigns itself. Export writes compact JSON with a fixed key order, so exporting the
same events from any backend gives the same bytes: export, import elsewhere, export
again, and the files are identical.

Import appends each run of consecutive lines of one stream with a conditional append
(``expected_seq`` = the run's first seq - 1), so the target gets the same seqs,
command ids and timestamps. Events the target already holds are compared instead of
appended: identical ones are skipped (a re-import is idempotent), a different event at
the same (stream, seq) is reported as a conflict and the rest of that stream is not
imported. A run never splits the events of one command (one original append): they go
back in together, and the log's dedupe of a retried append by its first event's command
id cannot mistake the second half of a command for a retry of its first.

Both use the ``EventLog`` protocol only, so they work on every backend (sqlite,
jetstream, memory) and beside a running server.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from eventlog import ConflictError, Event, EventLog, NewEvent
from sessionhub.ops.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    OpsError,
    add_json_argument,
    add_log_arguments,
    command,
    dump_json,
    open_log,
    resolve_eventlog,
)
from sessionhub.ops.progress import Progress, progress_enabled

__all__ = [
    "ImportReport",
    "event_line",
    "export_events",
    "import_events",
    "parse_line",
    "register",
]

#: Events read per page while exporting.
PAGE = 5000
#: Events appended together at most while importing (a command's events are never split).
BATCH = 500

_FIELDS = ("stream_id", "seq", "type", "data", "created_at", "command_id", "version")


# --- export ------------------------------------------------------------------------------


def event_line(event: Event) -> str:
    """One export line (without the newline): compact JSON, fixed key order."""
    return dump_json(
        {
            "stream_id": event.stream_id,
            "seq": event.seq,
            "type": event.type,
            "data": event.data,
            "created_at": event.created_at,
            "command_id": event.command_id,
            "version": event.version,
        },
        indent=None,
    )


def _all_events(log: EventLog, bar: Progress) -> Iterator[Event]:
    """Every event up to the log's last position when the export started, in order."""
    end = log.last_position()
    after = 0
    while after < end:
        batch = log.read_all(after_position=after, limit=PAGE)
        if not batch:
            return
        for event in batch:
            if event.position > end:
                return
            yield event
        bar.advance(len(batch))
        after = batch[-1].position


def _session_events(log: EventLog, session_id: str, bar: Progress) -> Iterator[Event]:
    end = log.last_seq(session_id)
    if end == 0:
        raise OpsError(f"stream {session_id!r} has no events in this log")
    after = 0
    while after < end:
        batch = log.read(session_id, after_seq=after, limit=min(PAGE, end - after))
        if not batch:
            return
        yield from batch
        bar.advance(len(batch))
        after = batch[-1].seq


def export_events(
    log: EventLog,
    out: IO[str],
    session_id: str | None = None,
    *,
    progress: bool | None = None,
) -> int:
    """Write the log's events (or one stream's) to ``out`` as JSON Lines; returns the count.

    The export is a consistent cut: events appended after it started are left out.
    """
    total = log.count() if session_id is None else log.last_seq(session_id)
    count = 0
    with Progress("exporting", total, enabled=progress) as bar:
        events = (
            _all_events(log, bar) if session_id is None else _session_events(log, session_id, bar)
        )
        for event in events:
            out.write(event_line(event))
            out.write("\n")
            count += 1
    out.flush()
    return count


# --- import ------------------------------------------------------------------------------


@dataclass
class Problem:
    """Something import could not do, at one (stream, seq)."""

    stream_id: str
    seq: int
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"stream_id": self.stream_id, "seq": self.seq, "message": self.message}


@dataclass
class ImportReport:
    lines: int = 0
    appended: int = 0
    skipped: int = 0
    not_imported: int = 0
    conflicts: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.conflicts

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "lines": self.lines,
            "appended": self.appended,
            "skipped": self.skipped,
            "not_imported": self.not_imported,
            "conflicts": [p.to_json() for p in self.conflicts],
        }


def parse_line(text: str, number: int) -> Event:
    """An export line as an ``Event`` (position 0); a bad line raises naming its number."""
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise OpsError(f"line {number}: not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise OpsError(f"line {number}: not a JSON object")
    missing = [f for f in _FIELDS if f not in obj]
    if missing:
        raise OpsError(f"line {number}: missing {', '.join(missing)}")
    stream_id, seq, type_, data = obj["stream_id"], obj["seq"], obj["type"], obj["data"]
    created_at, command_id, version = obj["created_at"], obj["command_id"], obj["version"]
    checks = (
        (isinstance(stream_id, str) and stream_id != "", "stream_id must be a non-empty string"),
        (_is_int(seq) and seq >= 1, "seq must be a positive integer"),
        (isinstance(type_, str) and type_ != "", "type must be a non-empty string"),
        (isinstance(data, dict), "data must be a JSON object"),
        (isinstance(created_at, str), "created_at must be a string"),
        (command_id is None or isinstance(command_id, str), "command_id must be a string or null"),
        (_is_int(version), "version must be an integer"),
    )
    for ok, message in checks:
        if not ok:
            raise OpsError(f"line {number}: {message}")
    return Event(stream_id, seq, type_, data, created_at, command_id, version)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _same(a: Event, b: Event) -> list[str]:
    """The envelope fields in which two events of one (stream, seq) differ."""
    return [
        name
        for name in ("type", "data", "created_at", "command_id", "version")
        if getattr(a, name) != getattr(b, name)
    ]


class _Importer:
    def __init__(self, log: EventLog, report: ImportReport, dry_run: bool) -> None:
        self.log = log
        self.report = report
        self.dry_run = dry_run
        self.last: dict[str, int] = {}  # the target's last seq of each stream seen
        self.broken: set[str] = set()  # streams whose import stopped at a conflict

    def conflict(self, stream_id: str, seq: int, message: str) -> None:
        self.report.conflicts.append(Problem(stream_id, seq, message))

    def flush(self, stream_id: str, events: list[Event]) -> None:
        if stream_id in self.broken:
            self.report.not_imported += len(events)
            return
        self._flush(stream_id, events, retry=True)

    def _flush(self, stream_id: str, events: list[Event], retry: bool) -> None:
        last = self.last.get(stream_id)
        if last is None:
            last = self.last[stream_id] = self.log.last_seq(stream_id)
        present = [e for e in events if e.seq <= last]
        if present:
            skipped = self.report.skipped
            if not self._compare(stream_id, present):
                self.report.not_imported += len(events) - (self.report.skipped - skipped)
                return
        rest = [e for e in events if e.seq > last]
        if not rest:
            return
        expected = last + 1
        for i, event in enumerate(rest):
            if event.seq != expected + i:
                where = f"after seq {expected + i - 1}" if i or last else "at the start"
                self._stop(
                    stream_id,
                    expected + i,
                    f"seq {expected + i} is missing {where} (the next line has seq {event.seq})",
                    len(rest) - i,
                )
                rest = rest[:i]
                break
        if not rest:
            return
        if self.dry_run:
            self.last[stream_id] = rest[-1].seq
            self.report.appended += len(rest)
            return
        news = [NewEvent(e.type, e.data, e.command_id, e.created_at, e.version) for e in rest]
        try:
            stored = self.log.append(stream_id, news, expected_seq=last)
        except ConflictError as exc:
            # Someone else appended to this stream meanwhile: look again, once.
            self.last.pop(stream_id, None)
            if retry:
                self._flush(stream_id, rest, retry=False)
            else:
                self._stop(stream_id, rest[0].seq, f"the target stream moved on: {exc}", len(rest))
            return
        if [e.seq for e in stored] != [e.seq for e in rest]:
            # The log deduped the append by its first event's command id: that command
            # is already stored elsewhere in the target's stream.
            at = ", ".join(str(e.seq) for e in stored) or "?"
            self._stop(
                stream_id,
                rest[0].seq,
                f"command id {rest[0].command_id!r} is already stored at seq {at} of the target",
                len(rest),
            )
            return
        self.last[stream_id] = rest[-1].seq
        self.report.appended += len(rest)

    def _compare(self, stream_id: str, present: list[Event]) -> bool:
        stored = self.log.read(stream_id, after_seq=present[0].seq - 1, limit=len(present))
        by_seq = {e.seq: e for e in stored}
        for event in present:
            old = by_seq.get(event.seq)
            if old is None:
                self._stop(stream_id, event.seq, "missing from the target", 0)
                return False
            diff = _same(event, old)
            if diff:
                self._stop(
                    stream_id,
                    event.seq,
                    f"the target holds a different event here ({', '.join(diff)} differ)",
                    0,
                )
                return False
            self.report.skipped += 1
        return True

    def _stop(self, stream_id: str, seq: int, message: str, dropped: int) -> None:
        self.conflict(stream_id, seq, message + "; the rest of this stream is not imported")
        self.broken.add(stream_id)
        self.report.not_imported += dropped


def import_events(
    log: EventLog,
    lines: Iterable[str],
    *,
    dry_run: bool = False,
    total: int | None = None,
    progress: bool | None = None,
) -> ImportReport:
    """Append the events of export lines to ``log``; see the module docstring.

    Raises:
        OpsError: a line is not an export line (it names the line); what came before
            it is imported.
    """
    report = ImportReport()
    importer = _Importer(log, report, dry_run)
    run: list[Event] = []
    with Progress("importing", total, enabled=progress) as bar:
        for number, text in enumerate(lines, 1):
            if not text.strip():
                continue
            event = parse_line(text, number)
            report.lines += 1
            if run and (
                event.stream_id != run[0].stream_id
                or (
                    len(run) >= BATCH
                    and (event.command_id is None or event.command_id != run[-1].command_id)
                )
            ):
                importer.flush(run[0].stream_id, run)
                bar.advance(len(run))
                run = []
            run.append(event)
        if run:
            importer.flush(run[0].stream_id, run)
            bar.advance(len(run))
    return report


# --- the commands ------------------------------------------------------------------------


class _utf8(io.TextIOWrapper):
    """UTF-8 text over a standard stream's bytes, whatever the locale; leaves it open."""

    def __init__(self, stream: IO[str]) -> None:
        stream.flush()
        super().__init__(stream.buffer, encoding="utf-8", newline="\n")  # type: ignore[attr-defined]

    _detached = False

    def close(self) -> None:
        if not self._detached:
            self._detached = True
            self.flush()
            self.detach()


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    add_log_arguments(parser)
    parser.add_argument("--session", metavar="SESSION", help="export only this stream")
    parser.add_argument(
        "--output", "-o", metavar="FILE", help="write to FILE instead of standard output"
    )


def _run_export(args: argparse.Namespace) -> int:
    """Export events as JSON Lines."""
    url, _ = resolve_eventlog(args)
    log = open_log(url)
    try:
        if args.output:
            path = Path(args.output)
            tmp = path.with_name(path.name + ".partial")
            with tmp.open("w", encoding="utf-8", newline="\n") as out:
                count = export_events(log, out, args.session)
            tmp.replace(path)
        else:
            with _utf8(sys.stdout) as out:
                count = export_events(log, out, args.session)
    finally:
        log.close()
    if args.output:
        print(f"exported {count} events to {args.output}", file=sys.stderr)
    return EXIT_OK


def _import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="an export file (JSON Lines); - reads stdin")
    add_log_arguments(parser)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the file against the target and report, appending nothing",
    )
    add_json_argument(parser, "the report")


def _count_lines(path: Path) -> int | None:
    try:
        with path.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except OSError:
        return None


def _run_import(args: argparse.Namespace) -> int:
    """Import an export file."""
    url, _ = resolve_eventlog(args)
    if args.file == "-":
        source: IO[str] = _utf8(sys.stdin)
        total = None
    else:
        path = Path(args.file)
        if not path.is_file():
            raise OpsError(f"no such file: {path}", EXIT_USAGE)
        source = path.open(encoding="utf-8")
        total = _count_lines(path) if progress_enabled(sys.stderr) else None
    log = open_log(url, create=True)
    try:
        with source:
            report = import_events(log, source, dry_run=args.dry_run, total=total)
    finally:
        log.close()
    if args.json:
        print(dump_json(report.to_json()))
    else:
        for problem in report.conflicts:
            print(
                f"conflict  stream={problem.stream_id} seq={problem.seq}: {problem.message}",
                file=sys.stderr,
            )
        verb = "would append" if args.dry_run else "appended"
        print(
            f"{report.lines} events read: {verb} {report.appended}, "
            f"{report.skipped} already present, {report.not_imported} not imported, "
            f"{len(report.conflicts)} conflicts"
        )
    return EXIT_OK if report.ok else EXIT_FAILED


def register(commands: MutableMapping[str, Any], factory: Callable[..., Any]) -> None:
    """Add ``export`` and ``import`` to the CLI's table of subcommands."""
    commands["export"] = factory(
        help="write the event log (or one session) as JSON Lines",
        description="Write every event of the log, in order, one JSON object a line "
        "(stream_id, seq, type, data, created_at, command_id, version): a backup, or the "
        "way to move a log to another backend. Snapshots are not exported (they are "
        "rebuilt from the events).\n\n  sessionhub export > backup.jsonl",
        add_arguments=_export_arguments,
        run=command("export", _run_export),
    )
    commands["import"] = factory(
        help="append an export file to the event log (idempotent)",
        description="Append the events of an export file with the same seqs, command ids "
        "and timestamps, by conditional appends. Events already present are compared and "
        "skipped, so a re-import changes nothing; a different event at the same (stream, "
        "seq) is reported as a conflict (exit status 1). A server running on the same "
        "SQLite file sees imported sessions after a restart.\n\n"
        "  sessionhub import backup.jsonl --eventlog sqlite:///restored/events.db",
        add_arguments=_import_arguments,
        run=command("import", _run_import),
    )
