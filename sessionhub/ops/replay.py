"""``sessionhub replay``: rebuild a session's state from its events and print it.

The replay folds the session's events from seq 1 with the same pure ``evolve`` the
live actor uses, ignoring snapshots: it shows what the log says. ``--to-seq N`` stops
after event N (the same state as ``GET /sessions/{id}?at=N``). ``--verify`` also
checks the session's snapshot: replaying up to the snapshot's seq must give exactly
the state the snapshot recorded.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

from actors.catalog import SYSTEM_STREAM_PREFIX
from actors.state import SessionState, evolve
from eventlog import EventLog, Snapshot, codec
from sessionhub.ops.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    OpsError,
    add_json_argument,
    add_log_arguments,
    command,
    dump_json,
    opened_log,
)
from sessionhub.ops.progress import Progress

__all__ = ["compare_states", "register", "replay_session", "snapshot_differences"]

PAGE = 10_000


def replay_session(
    log: EventLog,
    session_id: str,
    to_seq: int | None = None,
    *,
    progress: bool | None = None,
) -> SessionState:
    """Fold the session's events from seq 1 (up to ``to_seq``), page by page.

    Raises:
        OpsError: the session has no events, is not a session, or ``to_seq`` is past
            its last event.
    """
    if session_id.startswith(SYSTEM_STREAM_PREFIX):
        raise OpsError(f"{session_id!r} is a system stream, not a session")
    last = log.last_seq(session_id)
    if last == 0:
        raise OpsError(f"session {session_id!r} has no events in this log")
    if to_seq is not None and to_seq > last:
        raise OpsError(f"--to-seq {to_seq} is after the session's last event ({last})")
    upto = last if to_seq is None else to_seq
    state = SessionState(session_id=session_id)
    with Progress(f"replaying {session_id}", upto, enabled=progress) as bar:
        after = 0
        while after < upto:
            batch = log.read(session_id, after_seq=after, limit=min(PAGE, upto - after))
            if not batch:
                break
            for event in batch:
                evolve(state, event)
            bar.advance(len(batch))
            after = batch[-1].seq
    if not state.exists:
        raise OpsError(f"stream {session_id!r} does not start with session_created")
    return state


def _normal(value: Any) -> Any:
    """A JSON-shaped copy (tuples as lists, sets sorted), for comparing states."""
    return json.loads(codec.encode(value))


def compare_states(replayed: dict[str, Any], recorded: dict[str, Any], path: str = "") -> list[str]:
    """The paths where two snapshot states differ, each with both values (abridged)."""
    diffs: list[str] = []
    for key in sorted(set(replayed) | set(recorded), key=str):
        where = f"{path}.{key}" if path else str(key)
        if key not in recorded:
            diffs.append(f"{where}: missing from the snapshot")
        elif key not in replayed:
            diffs.append(f"{where}: in the snapshot only")
        else:
            a, b = replayed[key], recorded[key]
            if isinstance(a, dict) and isinstance(b, dict):
                diffs.extend(compare_states(a, b, where))
            elif a != b:
                diffs.append(f"{where}: replay gives {_abridge(a)}, snapshot has {_abridge(b)}")
    return diffs


def _abridge(value: Any, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 3] + "..."


def snapshot_differences(state: SessionState, snapshot: Snapshot) -> list[str]:
    """How a replayed state (at the snapshot's seq) differs from the snapshot's."""
    return compare_states(_normal(state.to_snapshot()), _normal(snapshot.state))


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", metavar="SESSION", help="the session id")
    add_log_arguments(parser)
    parser.add_argument(
        "--to-seq",
        type=int,
        metavar="N",
        help="stop after event N: the state as GET /sessions/{id}?at=N gives it",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="also replay up to the session's snapshot and compare; exit 1 when they differ",
    )
    add_json_argument(parser, "the session object of the API")


def _print_table(obj: dict[str, Any]) -> None:
    width = max(len(k) for k in obj)
    for key, value in obj.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        print(f"{key.ljust(width)}  {shown}")


def _verify(log: EventLog, session_id: str) -> tuple[bool, dict[str, Any]]:
    snapshot = log.load_snapshot(session_id)
    if snapshot is None:
        return True, {"snapshot_seq": None, "ok": True, "differences": []}
    state = replay_session(log, session_id, snapshot.seq)
    diffs = snapshot_differences(state, snapshot)
    report = {"snapshot_seq": snapshot.seq, "ok": not diffs, "differences": diffs}
    return not diffs, report


def _run(args: argparse.Namespace) -> int:
    """Replay one session."""
    if args.to_seq is not None and args.to_seq < 1:
        raise OpsError("--to-seq must be a positive event seq", EXIT_USAGE)
    with opened_log(args) as log:
        state = replay_session(log, args.session, args.to_seq)
        verified = _verify(log, args.session) if args.verify else None
    session = state.to_api()
    if args.json:
        print(dump_json(session))
    else:
        _print_table(session)
        if state.deleted:
            print("(deleted: the API answers 404 for this session; its events remain)")
    if verified is None:
        return EXIT_OK
    ok, report = verified
    if report["snapshot_seq"] is None:
        print(f"verify: session {args.session!r} has no snapshot to compare", file=sys.stderr)
    elif ok:
        print(
            f"verify: the snapshot at seq {report['snapshot_seq']} matches the replay",
            file=sys.stderr,
        )
    else:
        print(
            f"verify: the snapshot at seq {report['snapshot_seq']} of {args.session!r} "
            "disagrees with the replay:",
            file=sys.stderr,
        )
        for line in report["differences"]:
            print(f"  {line}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_FAILED


def register(commands: MutableMapping[str, Any], factory: Callable[..., Any]) -> None:
    """Add ``replay`` to the CLI's table of subcommands."""
    commands["replay"] = factory(
        help="rebuild a session's state from its events",
        description="Fold a session's events from seq 1 and print the session object. "
        "--to-seq N gives the state after event N (as GET /sessions/{id}?at=N); --verify "
        "checks that replaying gives the state the session's snapshot recorded.",
        add_arguments=_arguments,
        run=command("replay", _run),
    )
