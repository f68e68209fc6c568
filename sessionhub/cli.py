"""The ``sessionhub`` command: ``sessionhub serve`` and, later, the operators' tools.

Each subcommand is a pair of functions registered in :data:`SUBCOMMANDS`: one adds its
arguments to its parser, one runs it and returns the exit status. This module is the
entry point where concrete pieces are wired together from :class:`Settings`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from sessionhub import client, ops
from sessionhub.settings import Settings, SettingsError, add_arguments, load_settings

__all__ = ["SUBCOMMANDS", "Subcommand", "build_parser", "main", "serve"]

log = structlog.get_logger("sessionhub")

EXIT_USAGE = 2

#: The cyclic garbage collector's young-generation threshold in the server process
#: (Python's default is 700). The requests in flight hold a few thousand container
#: objects at any moment, so at 700 the count crosses the threshold on every burst of
#: requests: under a 64-connection PUT load, about 65 young collections a second,
#: 6% of the time (with the collections they promote into). At 10,000 it is about one a
#: second and PUT throughput rises by about 9% (bench/RESULTS.md, HTTP); memory did not
#: change measurably. The older generations keep their thresholds.
GC_YOUNG_THRESHOLD = 10_000


@dataclass(frozen=True)
class Subcommand:
    """A subcommand: its help line, how to add its arguments, how to run it."""

    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# --- serve ---------------------------------------------------------------------------------


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)


def _serve_command(args: argparse.Namespace) -> int:
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "func")}
    try:
        settings = load_settings(flags)
        settings.check_bind()
    except SettingsError as exc:
        print(f"sessionhub serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from sessionhub.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    try:
        return asyncio.run(serve(settings))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130


async def serve(settings: Settings, *, ready: Callable[[str, int], None] | None = None) -> int:
    """Open the log, run the hub, serve HTTP until SIGINT/SIGTERM, then stop in order.

    Shutdown: stop accepting connections, end SSE streams and WebSockets, stop the hub
    (running turns are cancelled and recorded), wait for requests in flight, and close
    the event log last.

    Args:
        settings: resolved settings.
        ready: called with the bound host and port once the server accepts connections.
    """
    from aiohttp import web

    from actors.hub import Hub
    from eventlog import open_eventlog
    from transports.http import make_app

    try:
        event_log = open_eventlog(settings.eventlog)
    except Exception as exc:
        log.error("eventlog_open_failed", url=settings.eventlog, error=str(exc))
        return 1
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    try:
        async with Hub.running(event_log, settings.hub) as hub:
            nats = None
            if settings.nats:
                nats = await _start_nats(hub, settings)
                if nats is None:
                    return 1
            app = make_app(settings, hub, nats=nats)
            runner = web.AppRunner(
                app,
                access_log=None,
                handle_signals=False,
                shutdown_timeout=settings.shutdown_timeout_s,
            )
            await runner.setup()
            try:
                site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
                try:
                    await site.start()
                except OSError as exc:
                    log.error("bind_failed", host=settings.host, port=settings.port, error=str(exc))
                    return 1
                host, port = _bound_address(site, settings)
                for sig in signals:
                    loop.add_signal_handler(sig, _on_signal, stop, sig)
                log.info(
                    "listening",
                    host=host,
                    port=port,
                    url=f"http://{_url_host(host)}:{port}",
                    eventlog=event_log.backend,
                    auth=settings.auth_enabled,
                )
                if ready is not None:
                    ready(host, port)
                await stop.wait()
                log.info("shutting_down")
            finally:
                for sig in signals:
                    loop.remove_signal_handler(sig)
                if nats is not None:
                    await nats.stop()
                await runner.cleanup()
    finally:
        event_log.close()
        log.info("stopped")
    return 0


async def _start_nats(hub: Any, settings: Settings) -> Any:
    """The NATS transport of this node, or None (logged) if NATS cannot be reached."""
    from transports.http.auth import Authenticator
    from transports.nats import start_nats_transport

    try:
        handle = await start_nats_transport(
            hub,
            settings.nats,
            settings.nats_prefix,
            Authenticator(settings.api_keys, transport="nats"),
            max_body_bytes=settings.max_body_bytes,
        )
    except Exception as exc:
        log.error("nats_connect_failed", url=settings.nats, error=str(exc))
        return None
    log.info("nats_serving", url=settings.nats, prefix=settings.nats_prefix)
    return handle


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("signal", signal=sig.name)
    stop.set()


def _bound_address(site: object, settings: Settings) -> tuple[str, int]:
    server = getattr(site, "_server", None)
    for sock in getattr(server, "sockets", None) or ():
        address = sock.getsockname()
        return settings.host, int(address[1])
    return settings.host, settings.port


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# --- the command ---------------------------------------------------------------------------

SUBCOMMANDS: dict[str, Subcommand] = {
    "serve": Subcommand(
        help="run the HTTP/SSE/WebSocket server",
        description="Serve the sessionhub API. Every setting comes from a flag, else its "
        "environment variable, else the --config TOML file, else its default.",
        add_arguments=_serve_arguments,
        run=_serve_command,
    ),
}

# The operators' tools (sessionhub/ops/): each module registers its own subcommands.
ops.sessions.register(SUBCOMMANDS, Subcommand)
ops.replay.register(SUBCOMMANDS, Subcommand)
ops.events.register(SUBCOMMANDS, Subcommand)
ops.export_import.register(SUBCOMMANDS, Subcommand)
ops.verify.register(SUBCOMMANDS, Subcommand)
ops.snapshot.register(SUBCOMMANDS, Subcommand)

# The client subcommands (sessionhub/client.py): they talk to a running server over HTTP.
client.register(SUBCOMMANDS, Subcommand)


def build_parser() -> argparse.ArgumentParser:
    """The ``sessionhub`` parser with one sub-parser per subcommand."""
    from transports.http.app import server_version

    parser = argparse.ArgumentParser(
        prog="sessionhub",
        description="A multi-user, event-sourced session server for AI agents.",
    )
    parser.add_argument("--version", action="version", version=f"sessionhub {server_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in SUBCOMMANDS.items():
        child = sub.add_parser(
            name,
            help=command.help,
            description=command.description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(child)
        child.set_defaults(func=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sessionhub`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    return func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
