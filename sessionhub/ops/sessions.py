"""``sessionhub sessions``: list sessions from the log, with the HTTP list's filters.

It builds the same projection the server lists from (:class:`actors.catalog.Catalog`)
by folding the whole log, so it answers without a server and shows what a server on
the same log would show (an operator's view: every user's sessions).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, MutableMapping
from typing import Any

from actors.catalog import Catalog, ListQuery
from actors.state import ENDED_STATUSES, OPEN_STATUSES
from eventlog import Event, EventLog
from sessionhub.ops.common import (
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

__all__ = ["list_sessions", "register"]

STATUSES = tuple(sorted(OPEN_STATUSES | ENDED_STATUSES))


class _CountingLog:
    """Passes ``read_all`` through to the log, counting what it returns on a bar."""

    def __init__(self, log: EventLog, progress: Progress) -> None:
        self._log = log
        self._progress = progress

    def read_all(self, after_position: int = 0, limit: int | None = None) -> list[Event]:
        batch = self._log.read_all(after_position, limit)
        self._progress.advance(len(batch))
        return batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


def list_sessions(log: EventLog, query: ListQuery, *, progress: bool | None = None) -> dict:
    """``{"sessions", "next_cursor", "total"}`` as ``GET /sessions`` answers an operator."""
    catalog = Catalog()
    with Progress("reading the log", log.count(), enabled=progress) as bar:
        catalog.attach(_CountingLog(log, bar))  # type: ignore[arg-type]
    try:
        return catalog.list(query)
    finally:
        catalog.detach()


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_log_arguments(parser)
    parser.add_argument("--user-id", metavar="USER", help="only this user's sessions")
    parser.add_argument(
        "--status",
        choices=STATUSES,
        help="only sessions in this status (closed and expired ones show only when named)",
    )
    parser.add_argument("--tag", help="only sessions with this tag")
    parser.add_argument("--capability", help="only sessions with this capability")
    parser.add_argument("--agent-type", metavar="TYPE", help="only sessions of this agent_type")
    parser.add_argument(
        "--limit", type=int, default=100, metavar="N", help="at most N sessions (default 100)"
    )
    parser.add_argument("--cursor", metavar="SESSION", help="continue after this session id")
    add_json_argument(parser, 'the HTTP list\'s {"sessions", "next_cursor", "total"}')


_COLUMNS = (
    ("SESSION ID", "session_id"),
    ("USER", "user_id"),
    ("STATUS", "status"),
    ("NAME", "name"),
    ("AGENT TYPE", "agent_type"),
    ("VERSION", "version"),
    ("LAST ACTIVITY", "last_activity_at"),
)


def format_table(rows: list[dict[str, Any]]) -> str:
    cells = [[h for h, _ in _COLUMNS]]
    for row in rows:
        cells.append(["" if row.get(k) is None else str(row.get(k)) for _, k in _COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def _run(args: argparse.Namespace) -> int:
    """List sessions."""
    if args.limit < 1:
        raise OpsError("--limit must be at least 1", EXIT_USAGE)
    query = ListQuery(
        user_id=args.user_id,
        status=args.status,
        tag=args.tag,
        capability=args.capability,
        agent_type=args.agent_type,
        limit=args.limit,
        cursor=args.cursor,
    )
    with opened_log(args) as log:
        result = list_sessions(log, query)
    if args.json:
        print(dump_json(result))
        return EXIT_OK
    print(format_table(result["sessions"]))
    shown = len(result["sessions"])
    tail = f"; more after --cursor {result['next_cursor']}" if result["next_cursor"] else ""
    print(f"\n{shown} of {result['total']} sessions{tail}")
    return EXIT_OK


def register(commands: MutableMapping[str, Any], factory: Callable[..., Any]) -> None:
    """Add ``sessions`` to the CLI's table of subcommands."""
    commands["sessions"] = factory(
        help="list sessions from the event log (no server needed)",
        description="List sessions as GET /sessions does for an operator, from the event log "
        "itself: works without a server and beside one on the same log.",
        add_arguments=_arguments,
        run=command("sessions", _run),
    )
