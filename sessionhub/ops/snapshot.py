"""``sessionhub snapshot SESSION`` and ``sessionhub compact``: write snapshots.

A snapshot bounds how many events a session replays when its actor starts. The state
written is folded from the events themselves (from seq 1, never from an older
snapshot), so a bad snapshot is never carried forward. Events are never removed: the
log stays the truth, and a snapshot can always be dropped and rebuilt.

Beside a running server this is safe: a snapshot is a pure function of the events up
to its seq, whoever writes it, and a snapshot is only written when it is newer than
the one stored.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

from actors.catalog import SYSTEM_STREAM_PREFIX
from eventlog import EventLog, Snapshot
from sessionhub.ops.common import (
    EXIT_OK,
    EXIT_USAGE,
    OpsError,
    add_json_argument,
    add_log_arguments,
    command,
    dump_json,
    opened_log,
    resolve_eventlog,
)
from sessionhub.ops.progress import Progress
from sessionhub.ops.replay import replay_session

__all__ = ["compact", "register", "write_snapshot"]

PAGE = 10_000


def write_snapshot(
    log: EventLog, session_id: str, *, force: bool = False, progress: bool | None = None
) -> dict[str, Any]:
    """Fold the session and store its snapshot; returns what was done.

    ``{"session_id", "seq", "previous_seq", "written"}``: nothing is written when the
    stored snapshot is already at the session's last seq (unless ``force``).
    """
    previous = log.load_snapshot(session_id)
    previous_seq = previous.seq if previous is not None else None
    last = log.last_seq(session_id)
    if not force and previous_seq is not None and previous_seq >= last:
        return {
            "session_id": session_id,
            "seq": last,
            "previous_seq": previous_seq,
            "written": False,
        }
    state = replay_session(log, session_id, progress=progress)
    log.save_snapshot(Snapshot(session_id, state.version, state.to_snapshot()))
    return {
        "session_id": session_id,
        "seq": state.version,
        "previous_seq": previous_seq,
        "written": True,
    }


def _last_seqs(log: EventLog, progress: bool | None) -> dict[str, int]:
    """Each session stream's last seq, from one pass over the log."""
    last: dict[str, int] = {}
    end = log.last_position()
    after = 0
    with Progress("scanning", log.count(), enabled=progress) as bar:
        while after < end:
            batch = log.read_all(after_position=after, limit=PAGE)
            if not batch:
                break
            for event in batch:
                if not event.stream_id.startswith(SYSTEM_STREAM_PREFIX):
                    last[event.stream_id] = event.seq
            bar.advance(len(batch))
            after = batch[-1].position
    return last


def compact(
    log: EventLog,
    min_events: int,
    *,
    dry_run: bool = False,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Snapshot every session with at least ``min_events`` events past its snapshot."""
    done: list[dict[str, Any]] = []
    last = _last_seqs(log, progress)
    due: list[tuple[str, int | None]] = []
    for sid, seq in sorted(last.items()):
        snap = log.load_snapshot(sid)
        since = seq - (snap.seq if snap else 0)
        if since >= min_events:
            due.append((sid, snap.seq if snap else None))
    with Progress("snapshotting", len(due), enabled=progress, unit="sessions") as bar:
        for sid, previous in due:
            if dry_run:
                done.append(
                    {
                        "session_id": sid,
                        "seq": last[sid],
                        "previous_seq": previous,
                        "written": False,
                    }
                )
            else:
                done.append(write_snapshot(log, sid, progress=False))
            bar.advance()
    return done


def _snapshot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", metavar="SESSION", help="the session id")
    add_log_arguments(parser)
    parser.add_argument(
        "--force", action="store_true", help="write even if the stored snapshot is current"
    )
    add_json_argument(parser, "what was written")


def _run_snapshot(args: argparse.Namespace) -> int:
    """Snapshot one session."""
    with opened_log(args) as log:
        result = write_snapshot(log, args.session, force=args.force)
    if args.json:
        print(dump_json(result))
    elif result["written"]:
        print(f"{args.session}: snapshot written at seq {result['seq']}")
    else:
        print(f"{args.session}: the snapshot at seq {result['seq']} is current")
    return EXIT_OK


def _compact_arguments(parser: argparse.ArgumentParser) -> None:
    add_log_arguments(parser)
    parser.add_argument(
        "--min-events",
        type=int,
        metavar="N",
        help="snapshot sessions with at least N events after their snapshot "
        "(default: the server's snapshot_every setting)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list the sessions due, writing nothing"
    )
    add_json_argument(parser, "the sessions snapshotted")


def _run_compact(args: argparse.Namespace) -> int:
    """Snapshot long sessions."""
    _, settings = resolve_eventlog(args)
    min_events = args.min_events if args.min_events is not None else settings.hub.snapshot_every
    if min_events < 1:
        raise OpsError("--min-events must be at least 1", EXIT_USAGE)
    with opened_log(args) as log:
        done = compact(log, min_events, dry_run=args.dry_run)
    if args.json:
        print(dump_json({"min_events": min_events, "dry_run": args.dry_run, "sessions": done}))
        return EXIT_OK
    for item in done:
        before = item["previous_seq"] if item["previous_seq"] is not None else "none"
        verb = "due" if args.dry_run else "snapshot"
        print(f"{verb:<9} {item['session_id']}  seq {item['seq']} (was {before})")
    what = "due" if args.dry_run else "snapshotted"
    print(
        f"{len(done)} sessions {what} (at least {min_events} events since their snapshot)",
        file=sys.stderr,
    )
    return EXIT_OK


def register(commands: MutableMapping[str, Any], factory: Callable[..., Any]) -> None:
    """Add ``snapshot`` and ``compact`` to the CLI's table of subcommands."""
    commands["snapshot"] = factory(
        help="write a snapshot of one session",
        description="Fold a session's events from seq 1 and store the state as its "
        "snapshot, so its actor starts without replaying them all. Events are kept.",
        add_arguments=_snapshot_arguments,
        run=command("snapshot", _run_snapshot),
    )
    commands["compact"] = factory(
        help="snapshot every session with many events since its snapshot",
        description="Write a fresh snapshot for every session with at least --min-events "
        "events after its last snapshot. Events are never removed: the log stays the truth.",
        add_arguments=_compact_arguments,
        run=command("compact", _run_compact),
    )
