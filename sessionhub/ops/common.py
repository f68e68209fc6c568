"""What every operator tool shares: the ``--eventlog`` flag, opening the log, output.

The tools talk to the event log through the ``EventLog`` protocol only (except the
SQLite scan of ``verify``), so they work on every backend, without a server and
beside a running one: SQLite lets several processes read and write one file (WAL,
``BEGIN IMMEDIATE``), JetStream is a network service.

Exit statuses: 0 success, 1 the work found a problem or failed (verify found damage,
import met a conflicting event, the log is unreachable, a session is unknown), 2 a usage
error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eventlog import EventLog, EventLogError, open_eventlog
from sessionhub.settings import DEFAULT_EVENTLOG, SettingsError, load_settings

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "OpsError",
    "add_json_argument",
    "add_log_arguments",
    "command",
    "dump_json",
    "open_log",
    "resolve_eventlog",
    "sqlite_path",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class OpsError(Exception):
    """A failure to report in one line on stderr, with an exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    """``--eventlog URL`` and ``--config FILE``, resolved as ``sessionhub serve`` does."""
    parser.add_argument(
        "--eventlog",
        metavar="URL",
        default=None,
        help="Event log URL: sqlite:///path/events.db, jetstream://host:4222 or memory://. "
        f"[env: SESSIONHUB_EVENTLOG; default: the config file's, else {DEFAULT_EVENTLOG}]",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML settings file of the server, read for its eventlog. [env: SESSIONHUB_CONFIG]",
    )


def add_json_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def resolve_eventlog(args: argparse.Namespace) -> tuple[str, Any]:
    """The event log URL (flag > env > config file > default) and the server's settings."""
    flags: dict[str, Any] = {}
    if getattr(args, "eventlog", None):
        flags["eventlog"] = args.eventlog
    if getattr(args, "config", None):
        flags["config"] = args.config
    try:
        settings = load_settings(flags)
    except (SettingsError, OSError) as exc:
        raise OpsError(str(exc), EXIT_USAGE) from exc
    return settings.eventlog, settings


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite://`` URL, None for other schemes."""
    if not url.startswith("sqlite:"):
        return None
    # The backend's own URL rules, so that the tools and the server open the same file.
    from eventlog.backends.sqlite import _path_from_url

    try:
        return _path_from_url(url)
    except ValueError as exc:
        raise OpsError(str(exc), EXIT_USAGE) from exc


def open_log(url: str, *, create: bool = False) -> EventLog:
    """Open the event log; a missing SQLite file is an error unless ``create``.

    Read-only tools must not leave an empty database behind at a mistyped path.
    """
    path = sqlite_path(url)
    if path is not None and not create and not path.exists():
        raise OpsError(f"no event log at {path} (from {url})")
    try:
        return open_eventlog(url)
    except ValueError as exc:
        raise OpsError(str(exc), EXIT_USAGE) from exc
    except EventLogError as exc:
        raise OpsError(f"cannot open the event log {url}: {exc}") from exc


@contextmanager
def opened_log(args: argparse.Namespace, *, create: bool = False) -> Iterator[EventLog]:
    url, _ = resolve_eventlog(args)
    log = open_log(url, create=create)
    try:
        yield log
    finally:
        log.close()


def dump_json(value: Any, *, indent: int | None = 2) -> str:
    """JSON for people (indented) or one JSON Lines line (``indent=None``: compact).

    Text stays UTF-8 except U+2028 and U+2029, which are escaped: they are legal in
    JSON strings, but many line readers (``str.splitlines``, JavaScript) split on them.
    """
    if indent is None:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        text = json.dumps(value, ensure_ascii=False, indent=indent)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def command(
    name: str, run: Callable[[argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    """Wrap a tool: errors become one line on stderr and an exit status, not a traceback."""

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except OpsError as exc:
            print(f"sessionhub {name}: {exc}", file=sys.stderr)
            return exc.status
        except EventLogError as exc:
            print(f"sessionhub {name}: event log error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            print(file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # The reader went away (``| head``): stop quietly, as Unix tools do.
            _silence_stdout()
            return EXIT_OK

    wrapped.__name__ = f"run_{name}"
    wrapped.__doc__ = run.__doc__
    return wrapped


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
