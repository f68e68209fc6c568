"""``sessionhub events``: print a stream's events; ``--follow`` tails it live.

``--follow`` polls the log (``read(after_seq=last)``) rather than subscribing: a
subscription only sees appends made through this process's log object, while polling
sees what a server in another process (or on another node) appends. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from eventlog import Event, EventLog
from sessionhub.ops.common import (
    EXIT_OK,
    EXIT_USAGE,
    OpsError,
    add_log_arguments,
    command,
    dump_json,
    opened_log,
)

__all__ = ["iter_events", "register"]

PAGE = 1000


def iter_events(
    log: EventLog,
    stream_id: str,
    after: int = 0,
    *,
    follow: bool = False,
    interval_s: float = 0.5,
    types: frozenset[str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[list[Event]]:
    """Batches of the stream's events after ``after``; with ``follow``, never ends.

    An empty batch is yielded after each poll that found nothing, so a caller can
    flush its output or decide to stop.
    """
    while True:
        batch = log.read(stream_id, after_seq=after, limit=PAGE)
        if batch:
            after = batch[-1].seq
            shown = [e for e in batch if types is None or e.type in types]
            if shown:
                yield shown
            if len(batch) == PAGE:
                continue
        if not follow:
            return
        yield []
        sleep(interval_s)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", metavar="SESSION", help="the session id (or any stream id)")
    add_log_arguments(parser)
    parser.add_argument(
        "--after", type=int, default=0, metavar="N", help="only events after seq N (default 0)"
    )
    parser.add_argument(
        "--type",
        action="append",
        metavar="TYPE",
        help="only events of this type (repeatable)",
    )
    parser.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep printing new events as they are appended (Ctrl-C stops)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="how often --follow polls the log (default 0.5)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='one JSON object a line, as GET /sessions/{id}/events gives ("seq", "type", '
        '"data", "created_at", "command_id")',
    )


def format_event(event: Event) -> str:
    data = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
    command_id = event.command_id or "-"
    return f"{event.seq:>6}  {event.created_at}  {event.type:<24} {command_id:<34} {data}"


def _run(args: argparse.Namespace) -> int:
    """Print (and follow) a stream's events."""
    if args.after < 0:
        raise OpsError("--after must not be negative", EXIT_USAGE)
    if args.interval <= 0:
        raise OpsError("--interval must be positive", EXIT_USAGE)
    types = frozenset(args.type) if args.type else None
    out = sys.stdout
    # Ctrl-C while following sets a flag checked between polls: a KeyboardInterrupt
    # raised at a random point could leave the log's locks held and hang its close().
    stop = threading.Event()
    if args.follow and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    with opened_log(args) as log:
        if not args.follow and log.last_seq(args.session) == 0:
            raise OpsError(f"stream {args.session!r} has no events in this log")
        for batch in iter_events(
            log,
            args.session,
            args.after,
            follow=args.follow,
            interval_s=args.interval,
            types=types,
            sleep=stop.wait,
        ):
            for event in batch:
                if args.json:
                    out.write(dump_json(event.to_api(), indent=None) + "\n")
                else:
                    out.write(format_event(event) + "\n")
            out.flush()
            if stop.is_set():
                break
    return EXIT_OK


def register(commands: MutableMapping[str, Any], factory: Callable[..., Any]) -> None:
    """Add ``events`` to the CLI's table of subcommands."""
    commands["events"] = factory(
        help="print a session's events (--follow tails them live)",
        description="Print the events of a session (or of any stream of the log), oldest "
        "first. --follow polls the log for new events until Ctrl-C, so it sees what a "
        "server in another process appends.",
        add_arguments=_arguments,
        run=command("events", _run),
    )
