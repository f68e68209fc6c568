"""sessionhub at scale: a big SQLite event log, then the server on it.

Builds the log with a fast bulk path (plain sqlite3 inserts in the event log's own schema,
``eventlog.backends.sqlite._SCHEMA``; events shaped exactly as the hub writes them), then
measures, against a ``sessionhub serve`` subprocess on a free loopback port:

1. start-up: seconds from spawn to ``/health`` answering, and the server's resident memory
   then. Twice: the first start on the freshly built log folds the whole log into the
   catalog (there is no catalog snapshot yet); after a clean shutdown (SIGTERM, which
   saves the catalog snapshot) the restart loads the snapshot and folds only what
   follows it;
2. ``GET /sessions?user_id=U`` with ``--user-sessions`` sessions for one user: one page
   (``limit=100``) p50/p99, and a full listing paged with ``limit=1000``;
3. cold rehydrate of a ``--big-events`` session without and with a snapshot: the first
   ``GET /sessions/{id}`` after start (the actor replays the log), and ``load_state`` in
   process (median of a few);
4. ``--live-actors`` live actors: RSS before and after touching that many sessions;
5. ``--sse`` SSE subscribers on one session: the delay from POSTing an event to each
   subscriber reading it, p50/p99/max over a few events.

Defaults finish in a few minutes on 2 cores; ``--full`` is the issue's size (100,000
sessions, 10 million events; the build alone takes minutes and ~3 GB of disk).

    .venv/bin/python bench/scale.py
    .venv/bin/python bench/scale.py --full --workdir /var/tmp
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# ``bench/eventlog.py`` would shadow the ``eventlog`` package: import from the repository root.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from bench import common  # noqa: E402
from bench.common import MESSAGE  # noqa: E402

USER = "scale-user"
T0 = "2026-01-01T00:00:00.000Z"
AGENT = {"kind": "none", "model": None, "system_prompt": None, "params": {}}


# -- the bulk build ----------------------------------------------------------------------------


def created_data(sid: str, user: str) -> str:
    """The ``session_created`` event the hub writes for a storage-only session."""
    data = {
        "user_id": user,
        "name": None,
        "agent": AGENT,
        "metadata": {},
        "tags": [],
        "capabilities": [],
        "agent_name": None,
        "agent_type": None,
        "session_id": sid,
        "expires_at": None,
    }
    return json.dumps(data, separators=(",", ":"))


MESSAGE_DATA = json.dumps({"data": MESSAGE, "context_delta": None}, separators=(",", ":"))


def build(path: Path, sessions: int, events: int, user_sessions: int, big: int) -> dict:
    """Write the log: sessions, their app.message events round robin, two big sessions."""
    from eventlog.backends.sqlite import _SCHEMA, SCHEMA_VERSION

    start = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")  # a fixture: durability does not matter here
    conn.executescript(_SCHEMA)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    insert = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    sids = [f"s-{k:07d}" for k in range(sessions)]
    bigs = ["big-nosnap", "big-snap"]
    rest = max(events - sessions - 2 * (big + 1), 0)

    def rows() -> Iterator[tuple[Any, ...]]:
        pos = 0
        for k, sid in enumerate([*bigs, *sids]):
            user = USER if k >= 2 and k - 2 < user_sessions else f"user-{k % 1000}"
            pos += 1
            yield (pos, sid, 1, "session_created", created_data(sid, user), T0, f"create:{sid}", 1)
        for sid in bigs:
            for seq in range(2, big + 2):
                pos += 1
                yield (pos, sid, seq, "app.message", MESSAGE_DATA, T0, None, 1)
        seqs = [1] * sessions
        for i in range(rest):
            k = i % sessions
            seqs[k] += 1
            pos += 1
            yield (pos, sids[k], seqs[k], "app.message", MESSAGE_DATA, T0, None, 1)

    it = rows()
    total = 0
    while True:
        chunk = [row for _, row in zip(range(200_000), it, strict=False)]
        if not chunk:
            break
        conn.execute("BEGIN")
        conn.executemany(insert, chunk)
        conn.execute("COMMIT")
        total += len(chunk)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    build_s = time.perf_counter() - start

    # The snapshot of one big session, written by the event log itself.
    from actors.session_actor import load_state
    from eventlog import Snapshot
    from eventlog.backends.sqlite import SQLiteEventLog

    log = SQLiteEventLog(path)
    state = load_state(log, "big-snap")
    log.save_snapshot(Snapshot("big-snap", state.version, state.to_snapshot()))
    log.close()
    return {"events": total, "build_s": build_s, "bytes": common.dir_bytes(path.parent)}


def rehydrate_in_process(path: Path, reps: int = 5) -> dict[str, float]:
    """``load_state`` (snapshot + events after it) of each big session, median of ``reps``."""
    from actors.session_actor import load_state
    from eventlog.backends.sqlite import SQLiteEventLog

    out = {}
    for sid in ("big-nosnap", "big-snap"):
        times = []
        for _ in range(reps):
            log = SQLiteEventLog(path)  # a fresh log object: no warm reader connection
            start = time.perf_counter()
            load_state(log, sid)
            times.append(time.perf_counter() - start)
            log.close()
        out[sid] = common.median(times) * 1000
    return out


def actors_probe(db: Path, count: int) -> dict[str, Any]:
    """RSS of a fresh process before and after ``count`` session actors are started.

    Runs in a subprocess of its own (``--actors-probe``): the supervisor starts and
    rehydrates each actor exactly as the hub does on a session's first request.
    """
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    import os

    from actors.catalog import Catalog
    from actors.clock import SystemClock
    from actors.config import HubConfig
    from actors.supervisor import Supervisor
    from eventlog.backends.sqlite import SQLiteEventLog

    log = SQLiteEventLog(db)
    config = HubConfig(max_live_actors=count + 10, passivate_after_s=3600)
    sup = Supervisor(log, config, SystemClock(), Catalog())
    before = common.rss_kb(os.getpid())
    start = time.perf_counter()
    for k in range(count):
        sup.actor(f"s-{k:07d}")
    started = time.perf_counter() - start
    time.sleep(1.0)
    after = common.rss_kb(os.getpid())
    live = sup.live_actors()
    sup.stop_all()
    log.close()
    return {
        "actors": live,
        "start_s": started,
        "rss_before_mib": before / 1024,
        "rss_after_mib": after / 1024,
        "kib_per_actor": (after - before) / max(live, 1),
    }


# -- the HTTP measurements ---------------------------------------------------------------------


async def measure_http(server: common.Server, args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    out: dict[str, Any] = {}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(server.base, connector=connector, timeout=timeout) as http:

        async def get(url: str) -> Any:
            async with http.get(url) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"GET {url}: {resp.status} {body[:200]!r}")
                return json.loads(body)

        out["live_actors_at_start"] = (await get("/health"))["sessions"]["live_actors"]
        # Cold rehydrate over HTTP: the first GET starts the actor, the second finds it live
        # (unless start-up already made every open session's actor live: see live_actors).
        for sid in ("big-nosnap", "big-snap"):
            t0 = time.perf_counter()
            await get(f"/sessions/{sid}")
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            await get(f"/sessions/{sid}")
            out[f"{sid}_first_get_ms"] = first * 1000
            out[f"{sid}_live_get_ms"] = (time.perf_counter() - t0) * 1000

        # Listing one user's sessions.
        lat = []
        for _ in range(args.list_reps):
            t0 = time.perf_counter()
            page = await get(f"/sessions?user_id={USER}&limit=100")
            lat.append(time.perf_counter() - t0)
        out["list_page"] = common.latency_ms(lat)
        out["list_total"] = page["total"]
        full = []
        for _ in range(max(args.list_reps // 20, 3)):
            t0 = time.perf_counter()
            cursor, n = None, 0
            while True:
                url = f"/sessions?user_id={USER}&limit=1000"
                page = await get(url + (f"&cursor={cursor}" if cursor else ""))
                n += len(page["sessions"])
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            full.append(time.perf_counter() - t0)
        out["list_full"] = common.latency_ms(full)
        out["list_full_count"] = n

        # Live actors: touch that many sessions, 64 at a time.
        rss0 = common.rss_kb(server.pid)
        sids = [f"s-{k:07d}" for k in range(min(args.live_actors, args.sessions))]
        sem = asyncio.Semaphore(64)

        async def touch(sid: str) -> None:
            async with sem:
                await get(f"/sessions/{sid}")

        t0 = time.perf_counter()
        await asyncio.gather(*(touch(s) for s in sids))
        out["actors_touch_s"] = time.perf_counter() - t0
        health = await get("/health")
        out["live_actors"] = health["sessions"]["live_actors"]
        out["rss_before_actors_mib"] = rss0 / 1024
        out["rss_after_actors_mib"] = common.rss_kb(server.pid) / 1024
        out["kib_per_actor"] = (common.rss_kb(server.pid) - rss0) / max(len(sids), 1)

        # SSE fan-out.
        if args.sse:
            out["sse"] = await sse_fanout(http, args.sse, args.sse_events)
    return out


async def sse_fanout(http: Any, subscribers: int, events: int) -> dict[str, Any]:
    """``subscribers`` SSE streams on one session; delay of each event to each of them."""
    sid = "sse-0"
    body = {"session_id": sid, "user_id": "sse-user", "agent": {"kind": "none"}}
    async with http.post("/sessions", json=body) as resp:
        await resp.read()
    got: dict[int, list[float]] = {}
    ready = 0
    all_ready = asyncio.Event()

    async def subscriber() -> None:
        nonlocal ready
        async with http.get(f"/sessions/{sid}/events/stream") as resp:
            if resp.status != 200:
                raise RuntimeError(f"SSE: {resp.status}")
            counted = False
            seq = None
            async for raw in resp.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("id:"):
                    seq = line[3:].strip()
                elif line.startswith("data:") and seq is not None:
                    data = json.loads(line[5:])
                    if data.get("type") == "session_created" and not counted:
                        counted = True
                        ready += 1
                        if ready == subscribers:
                            all_ready.set()
                    elif data.get("type") == "app.message":
                        n = data["data"]["n"]
                        got.setdefault(n, []).append(time.perf_counter())
                        if n == events - 1:
                            return

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(subscriber()) for _ in range(subscribers)]
    await asyncio.wait_for(all_ready.wait(), 120)
    connect_s = time.perf_counter() - t0
    sent: dict[int, float] = {}
    for n in range(events):
        payload = {"events": [{"type": "app.message", "data": {"n": n}}]}
        sent[n] = time.perf_counter()
        async with http.post(f"/sessions/{sid}/events", json=payload) as resp:
            await resp.read()
        await asyncio.sleep(0.5)
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    delays = [t - sent[n] for n, ts in got.items() for t in ts]
    last = [max(ts) - sent[n] for n, ts in got.items()]
    return {
        "subscribers": subscribers,
        "events": events,
        "connect_s": connect_s,
        "deliveries": len(delays),
        "delay": common.latency_ms(delays),
        "all_delivered_p50_ms": common.percentile(last, 50) * 1000,
        "all_delivered_max_ms": max(last) * 1000,
    }


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sessions", type=int, default=10_000, help="sessions in the log")
    p.add_argument("--events", type=int, default=1_000_000, help="events in the log")
    p.add_argument("--user-sessions", type=int, default=10_000, help="sessions of one user")
    p.add_argument("--big-events", type=int, default=10_000, help="events of the big session")
    p.add_argument("--live-actors", type=int, default=10_000, help="actors to make live")
    p.add_argument("--sse", type=int, default=1000, help="SSE subscribers on one session")
    p.add_argument("--sse-events", type=int, default=10, help="events sent to them")
    p.add_argument("--list-reps", type=int, default=200, help="GET /sessions requests")
    p.add_argument("--full", action="store_true", help="the issue's 100,000 / 10,000,000")
    p.add_argument("--workdir", help="parent of the temporary directory")
    p.add_argument("--keep", help="build into (or reuse) this directory and keep it")
    p.add_argument("--json", help="write the figures to this JSON file")
    p.add_argument("--actors-probe", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.actors_probe:
        print(json.dumps(actors_probe(Path(args.actors_probe[0]), int(args.actors_probe[1]))))
        return 0
    if args.full:
        args.sessions, args.events = 100_000, 10_000_000

    if common.sessionhub_cli() is None:
        print("skipped: no `sessionhub` console script next to this python (project venv?)")
        return 0
    if args.keep:
        work = Path(args.keep)
        work.mkdir(parents=True, exist_ok=True)
    else:
        base = Path(args.workdir) if args.workdir else None
        work = Path(tempfile.mkdtemp(prefix="sessionhub-scale-", dir=base))
    db = work / "events.db"
    res: dict[str, Any] = {"machine": common.machine(), "params": vars(args).copy()}
    try:
        if not db.exists():
            print(f"building {args.events:,} events / {args.sessions:,} sessions in {db} ...")
            res["build"] = build(
                db, args.sessions, args.events, args.user_sessions, args.big_events
            )
            b = res["build"]
            print(f"  {b['events']:,} rows in {b['build_s']:.1f} s, {b['bytes'] / 2**20:,.0f} MiB")
        res["rehydrate_in_process_ms"] = rehydrate_in_process(db)
        print(f"in-process load_state ms: {res['rehydrate_in_process_ms']}")
        k = str(min(args.live_actors, args.sessions))
        probe = subprocess.run(
            [sys.executable, __file__, "--actors-probe", str(db), k],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if probe.returncode == 0:
            res["actors"] = json.loads(probe.stdout.strip().splitlines()[-1])
            print(f"actors: {res['actors']}")
        else:
            res["actors_error"] = probe.stderr[-500:]
            print(f"actors probe failed: {probe.stderr[-500:]}")

        limit = str(max(args.sessions * 2, 100_000))
        server = common.Server(
            f"sqlite:///{db}",
            "--max-sessions-per-user",
            limit,
            "--max-sessions-total",
            limit,
            "--max-live-actors",
            str(max(args.live_actors + 100, 10_000)),
            "--passivate-after-s",
            "3600",
        )
        try:
            res["startup_s"] = server.start(timeout=900, log_path=work / "server.log")
            time.sleep(0.5)
            res["rss_ready_mib"] = common.rss_kb(server.pid) / 1024
            print(f"ready in {res['startup_s']:.2f} s, RSS {res['rss_ready_mib']:.0f} MiB")
            res["http"] = asyncio.run(measure_http(server, args))
            started = time.perf_counter()
            server.stop(timeout=600)
            res["shutdown_s"] = time.perf_counter() - started
            res["restart_s"] = server.start(timeout=900, log_path=work / "server2.log")
            time.sleep(0.5)
            res["rss_restart_mib"] = common.rss_kb(server.pid) / 1024
            print(
                f"stopped in {res['shutdown_s']:.1f} s; restarted (catalog snapshot) in "
                f"{res['restart_s']:.2f} s, RSS {res['rss_restart_mib']:.0f} MiB"
            )
        finally:
            server.stop(timeout=600)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


def report(res: dict[str, Any]) -> None:
    h = res.get("http", {})
    pr = res["params"]
    rows = [
        [
            "first start-up to /health (no catalog snapshot: the whole log folded)",
            f"{res.get('startup_s', float('nan')):.2f} s",
        ],
        ["RSS when ready", f"{res.get('rss_ready_mib', float('nan')):.0f} MiB"],
        [
            "clean shutdown (SIGTERM; saves the catalog snapshot)",
            f"{res.get('shutdown_s', float('nan')):.1f} s",
        ],
        [
            "restart to /health (catalog snapshot + the events after it)",
            f"{res.get('restart_s', float('nan')):.2f} s, "
            f"RSS {res.get('rss_restart_mib', float('nan')):.0f} MiB",
        ],
    ]
    if h:
        lp, lf = h["list_page"], h["list_full"]
        rows += [
            [
                f"GET /sessions?user_id= ({h['list_total']:,} sessions), limit=100",
                f"p50 {lp['p50_ms']:.1f} ms, p99 {lp['p99_ms']:.1f} ms",
            ],
            [
                f"all {h['list_full_count']:,} of them, pages of 1000",
                f"p50 {lf['p50_ms']:.0f} ms, max {lf['max_ms']:.0f} ms",
            ],
        ]
    ip = res.get("rehydrate_in_process_ms", {})
    big = pr["big_events"]
    for sid, label in (("big-nosnap", "no snapshot"), ("big-snap", "snapshot")):
        first = h.get(f"{sid}_first_get_ms", float("nan"))
        live = h.get(f"{sid}_live_get_ms", float("nan"))
        rows.append(
            [
                f"cold rehydrate, {big:,}-event session, {label}",
                f"first GET {first:.0f} ms (live {live:.1f} ms); "
                f"load_state {ip.get(sid, 0):.1f} ms",
            ]
        )
    a = res.get("actors")
    if a:
        rows.append(
            [
                f"{a['actors']:,} live actors (a fresh process, supervisor only)",
                f"RSS {a['rss_before_mib']:.0f} -> {a['rss_after_mib']:.0f} MiB "
                f"({a['kib_per_actor']:.0f} KiB/actor), started in {a['start_s']:.1f} s",
            ]
        )
    if h:
        rows.append(
            [
                "live actors in the server right after start-up",
                f"{h['live_actors_at_start']:,}",
            ]
        )
        rows.append(
            [
                f"server: GET {h['live_actors']:,} sessions (64 at a time)",
                f"RSS {h['rss_before_actors_mib']:.0f} -> {h['rss_after_actors_mib']:.0f} MiB, "
                f"{h['actors_touch_s']:.1f} s",
            ]
        )
        sse = h.get("sse")
        if sse:
            d = sse["delay"]
            rows.append(
                [
                    f"{sse['subscribers']:,} SSE subscribers, one session",
                    f"delivery p50 {d['p50_ms']:.0f} ms, p99 {d['p99_ms']:.0f} ms, "
                    f"max {d['max_ms']:.0f} ms ({sse['deliveries']:,} deliveries; "
                    f"connected in {sse['connect_s']:.1f} s)",
                ]
            )
    b = res.get("build")
    head = f"{pr['events']:,} events, {pr['sessions']:,} sessions"
    if b:
        head += f" ({b['bytes'] / 2**20:,.0f} MiB on disk, built in {b['build_s']:.0f} s)"
    print()
    print(head)
    print(common.markdown_table(["measure", "result"], rows))
    m = res["machine"]
    print(f"{m['nproc']} cores, {m['ram_gib']} GiB, Python {m['python']}, SQLite {m['sqlite']}")


if __name__ == "__main__":
    sys.exit(main())
