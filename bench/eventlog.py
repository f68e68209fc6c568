"""Benchmark the SQLite event log against raw sqlite3 on the same machine.

Measures durable appends (one appender; many concurrent sessions, one stream and one
thread each), replay (read a stream / read_all and decode), and the cold rehydrate of a
session (open a fresh log object, read the stream). The baseline is raw sqlite3 doing
the same inserts (same schema, same rows, sessions interleaved as in the concurrent run)
from one thread with WAL and ``synchronous=FULL``, committing after every insert (one
fsync each) and after every 100.

Every figure is the median of ``--reps`` runs on fresh temporary files, deleted at the
end. A fresh file's WAL grows with every commit, and an fsync that extends a file costs
this machine's disk about 1.8x one that overwrites (270 against 148 us for 4 KiB); a
long-running database reuses its WAL after each checkpoint. So the durable appends are
measured twice, both sides alike: on fresh files, and "steady" on files warmed by
``--warm`` rows in commits of 100 (past SQLite's first checkpoint at 1,000 WAL pages,
so the measured commits overwrite a WAL already on disk). The append scenarios run
interleaved (raw, raw/100, sequential, concurrent, then again), because this machine's
fsync latency drifts; the ratio column is the median of the per-repetition ratios to raw
one-commit-per-insert.

    .venv/bin/python bench/eventlog.py            # defaults: about 40 s on 2 cores
    .venv/bin/python bench/eventlog.py --reps 9 --appends 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

# Siblings named like packages (eventlog.py, http.py, nats.py) would shadow them:
# keep this folder off the path and import from the repository root.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from eventlog.backends.sqlite import _SCHEMA, SQLiteEventLog  # noqa: E402
from eventlog.events import NewEvent  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog; " * 2  # ~90 characters of payload
RAW_INSERT = (
    "INSERT INTO events (stream_id, seq, type, data, created_at, command_id, version) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def event(i: int, stream: str) -> NewEvent:
    """A realistic small event: a message with its command id, as a session appends it."""
    return NewEvent(
        type="message.added",
        data={"role": "user", "text": TEXT, "n": i},
        command_id=f"{stream}-cmd-{i:08d}",
    )


class Bench:
    """One measurement per call, each on a fresh database file under ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._n = 0

    def fresh(self) -> Path:
        self._n += 1
        return self.workdir / f"run{self._n}" / "events.db"

    def sequential(self, appends: int) -> float:
        """Appends/s of one thread appending one event at a time to one stream."""
        log = SQLiteEventLog(self.fresh())
        events = [event(i, "session-0") for i in range(appends)]
        start = time.perf_counter()
        for i, e in enumerate(events):
            log.append("session-0", [e], expected_seq=i)
        elapsed = time.perf_counter() - start
        log.close()
        return appends / elapsed

    def concurrent_async(self, sessions: int, per_session: int) -> float:
        """Appends/s of ``sessions`` asyncio tasks awaiting ``append_async``, a stream each."""
        log = SQLiteEventLog(self.fresh())

        async def run() -> float:
            async def session(k: int) -> None:
                stream = f"session-{k}"
                for i, e in enumerate([event(i, stream) for i in range(per_session)]):
                    await log.append_async(stream, [e], expected_seq=i)

            start = time.perf_counter()
            await asyncio.gather(*(session(k) for k in range(sessions)))
            return time.perf_counter() - start

        elapsed = asyncio.run(run())
        log.close()
        return sessions * per_session / elapsed

    def concurrent_queued(
        self, sessions: int, per_session: int, warm: int = 0, synchronous: str = "full"
    ) -> float:
        """Appends/s of ``sessions`` streams whose next append is queued by the callback
        of the one before (``append_queued``, as session actors append): the log's own
        rate, with no thread woken per append. ``warm``: events appended first."""
        log = SQLiteEventLog(self.fresh(), synchronous=synchronous)
        for i in range(0, warm, 100):
            stream = f"warm-{i // 100}"
            log.append(stream, [event(j, stream) for j in range(min(100, warm - i))], 0)
        events = {
            k: [event(i, f"session-{k}") for i in range(per_session)] for k in range(sessions)
        }
        finished = threading.Event()
        left = [sessions]
        errors: list[BaseException] = []

        def queue_next(k: int, i: int) -> None:
            def done(stored: object, error: BaseException | None) -> None:
                if error is not None:
                    errors.append(error)
                if error is None and i + 1 < per_session:
                    queue_next(k, i + 1)
                    return
                left[0] -= 1  # only the writer thread runs callbacks
                if not left[0]:
                    finished.set()

            log.append_queued(f"session-{k}", [events[k][i]], i, done)

        start = time.perf_counter()
        for k in range(sessions):
            queue_next(k, 0)
        finished.wait()
        elapsed = time.perf_counter() - start
        log.close()
        if errors:
            raise errors[0]
        return sessions * per_session / elapsed

    def concurrent(self, sessions: int, per_session: int, synchronous: str = "full") -> float:
        """Appends/s of ``sessions`` threads appending one event at a time, a stream each."""
        log = SQLiteEventLog(self.fresh(), synchronous=synchronous)
        barrier = threading.Barrier(sessions + 1)
        errors: list[BaseException] = []

        def session(k: int) -> None:
            stream = f"session-{k}"
            events = [event(i, stream) for i in range(per_session)]
            barrier.wait()
            try:
                for i, e in enumerate(events):
                    log.append(stream, [e], expected_seq=i)
            except BaseException as exc:
                errors.append(exc)
            barrier.wait()

        threads = [threading.Thread(target=session, args=(k,)) for k in range(sessions)]
        for t in threads:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        barrier.wait()
        elapsed = time.perf_counter() - start
        for t in threads:
            t.join()
        log.close()
        if errors:
            raise errors[0]
        return sessions * per_session / elapsed

    def raw(self, inserts: int, per_commit: int, streams: int, warm: int = 0) -> float:
        """Inserts/s of plain sqlite3: same schema and rows, one thread, no event log.
        ``warm``: rows inserted first, in commits of 100."""
        path = self.fresh()
        path.parent.mkdir(parents=True)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.executescript(_SCHEMA)

        def make_rows(n: int, prefix: str) -> list[tuple[object, ...]]:
            out = []
            for i in range(n):
                stream = f"{prefix}-{i % streams}"
                e = event(i // streams, stream)
                data = json.dumps(e.data, separators=(",", ":"), ensure_ascii=False)
                out.append((stream, i // streams + 1, e.type, data, e.created_at, e.command_id, 1))
            return out

        warming = make_rows(warm, "warm")
        for i in range(0, warm, 100):
            conn.execute("BEGIN")
            conn.executemany(RAW_INSERT, warming[i : i + 100])
            conn.execute("COMMIT")
        rows = make_rows(inserts, "session")
        start = time.perf_counter()
        for i in range(0, inserts, per_commit):
            conn.execute("BEGIN")
            for row in rows[i : i + per_commit]:
                conn.execute(RAW_INSERT, row)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
        return inserts / elapsed

    def build(self, stream_len: int, others: int) -> Path:
        """A log holding ``others + 1`` sessions of ``stream_len`` events each."""
        path = self.fresh()
        log = SQLiteEventLog(path)
        for k in range(others + 1):
            stream = f"session-{k}"
            batch = [event(i, stream) for i in range(stream_len)]
            for i in range(0, stream_len, 100):
                log.append(stream, batch[i : i + 100], expected_seq=i)
        log.close()
        return path


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions; medians reported")
    parser.add_argument("--sessions", type=int, default=64, help="concurrent sessions")
    parser.add_argument("--appends", type=int, default=150, help="appends per concurrent session")
    parser.add_argument("--sequential", type=int, default=1000, help="appends of one appender")
    parser.add_argument("--raw", type=int, default=1000, help="inserts of raw 1-commit-each")
    parser.add_argument("--stream-len", type=int, default=1000, help="events of replayed stream")
    parser.add_argument("--others", type=int, default=19, help="other sessions, for read_all")
    parser.add_argument(
        "--warm", type=int, default=25_000, help="rows written first in the steady runs"
    )
    parser.add_argument("--dir", type=Path, default=None, help="where temporary files go")
    args = parser.parse_args(argv)
    n, total = args.stream_len, args.stream_len * (args.others + 1)

    results: dict[str, list[float]] = {}

    def record(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory(prefix="bench-eventlog-", dir=args.dir) as tmp:
        bench = Bench(Path(tmp))
        for _ in range(args.reps):
            raw = bench.raw(args.raw, 1, args.sessions)
            record("raw1", raw)
            for name, value in (
                ("raw100", bench.raw(args.raw * 10, 100, args.sessions)),
                ("seq", bench.sequential(args.sequential)),
                ("conc", bench.concurrent(args.sessions, args.appends)),
                ("conc_async", bench.concurrent_async(args.sessions, args.appends)),
                ("conc_queued", bench.concurrent_queued(args.sessions, args.appends)),
            ):
                record(name, value)
                record(f"{name}/raw1", value / raw)
            steady = bench.raw(args.raw, 1, args.sessions, warm=args.warm)
            record("raw1_steady", steady)
            queued = bench.concurrent_queued(args.sessions, args.appends, warm=args.warm)
            record("queued_steady", queued)
            record("queued_steady/raw1", queued / steady)
            normal = bench.concurrent_queued(args.sessions, args.appends, args.warm, "normal")
            record("queued_normal", normal)
            record("queued_normal/raw1", normal / steady)

        path = bench.build(n, args.others)
        log = SQLiteEventLog(path)
        log.read("session-0")  # the OS page cache is warm: decoding is measured, not the disk
        raw_conn = sqlite3.connect(path)
        raw_select = "SELECT data FROM events WHERE stream_id = ? ORDER BY seq"
        for _ in range(args.reps):
            # each repetition: the median of 10 reads (a 1,000-event read is ~5 ms:
            # one read alone measures the scheduler as much as the decoder)
            record(
                "read",
                n / statistics.median(timed(lambda: log.read("session-0")) for _ in range(10)),
            )
            record("read_all", total / statistics.median(timed(log.read_all) for _ in range(3)))
            record(
                "raw_read",
                n
                / statistics.median(
                    timed(
                        lambda: [
                            json.loads(r[0]) for r in raw_conn.execute(raw_select, ("session-0",))
                        ]
                    )
                    for _ in range(10)
                ),
            )

            def rehydrate() -> None:
                fresh = SQLiteEventLog(path)
                assert len(fresh.read("session-0")) == n
                fresh.close()

            record("rehydrate_ms", timed(rehydrate) * 1000)
        raw_conn.close()
        log.close()

    med = {name: statistics.median(values) for name, values in results.items()}

    def ratio(name: str) -> str:
        values = results[f"{name}/raw1"]
        return f"{med[f'{name}/raw1']:.1f}x ({min(values):.1f}x-{max(values):.1f}x)"

    rows = [
        ("raw sqlite3, 1 commit (fsync) per insert", f"{med['raw1']:,.0f} inserts/s", "1.0x"),
        (
            "raw sqlite3, 1 commit per 100 inserts",
            f"{med['raw100']:,.0f} inserts/s",
            ratio("raw100"),
        ),
        ("SQLiteEventLog, 1 appender (sequential)", f"{med['seq']:,.0f} appends/s", ratio("seq")),
        (
            f"SQLiteEventLog, {args.sessions} concurrent sessions (threads)",
            f"{med['conc']:,.0f} appends/s",
            ratio("conc"),
        ),
        (
            f"SQLiteEventLog, {args.sessions} concurrent sessions (asyncio tasks, append_async)",
            f"{med['conc_async']:,.0f} appends/s",
            ratio("conc_async"),
        ),
        (
            f"SQLiteEventLog, {args.sessions} concurrent sessions (append_queued, next append"
            " queued by the callback: no thread woken per append)",
            f"{med['conc_queued']:,.0f} appends/s",
            ratio("conc_queued"),
        ),
        (
            f"steady (files warmed by {args.warm:,} rows): raw sqlite3, 1 commit per insert",
            f"{med['raw1_steady']:,.0f} inserts/s",
            "1.0x (steady)",
        ),
        (
            f"steady: SQLiteEventLog, {args.sessions} concurrent sessions (append_queued)",
            f"{med['queued_steady']:,.0f} appends/s",
            f"{ratio('queued_steady')} (vs steady raw)",
        ),
        (
            f"steady: SQLiteEventLog ?sync=normal, {args.sessions} concurrent sessions"
            " (append_queued; no fsync per commit: the writer's CPU ceiling)",
            f"{med['queued_normal']:,.0f} appends/s",
            f"{ratio('queued_normal')} (vs steady raw)",
        ),
        (f"replay: read() of a {n:,}-event session", f"{med['read']:,.0f} events/s", ""),
        (
            f"read_all() of {total:,} events (the catalog's start-up scan, not a replay)",
            f"{med['read_all']:,.0f} events/s",
            "",
        ),
        (
            f"raw sqlite3 select data + json.loads, {n:,} events",
            f"{med['raw_read']:,.0f} events/s",
            "",
        ),
        (
            f"cold rehydrate: new log object + read() {n:,} events",
            f"{med['rehydrate_ms']:.1f} ms",
            "",
        ),
    ]
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}; "
        f"medians of {args.reps} runs; appends are fsynced per commit (WAL, synchronous=FULL) "
        "except the ?sync=normal row; "
        "ratios are medians of per-repetition ratios (raw and log measured back to back)"
    )
    print()
    print("| measurement | median | vs raw 1 commit/insert (range over repetitions) |")
    print("| --- | ---: | ---: |")
    for name, value, rel in rows:
        print(f"| {name} | {value} | {rel} |")
    print()
    conc_ok = max(med["conc/raw1"], med["conc_async/raw1"], med["conc_queued/raw1"]) >= 10
    steady_ok = med["queued_steady/raw1"] >= 10
    # Replay is the "replay events/s ... of a 1,000-event session": reading a
    # session's events back to rebuild it. read_all() is reported beside it.
    replay_ok = med["read"] >= 200_000
    print(
        "target: concurrent durable appends >= 10x raw 1 commit/insert: "
        f"{'met' if conc_ok else 'MISSED'} (threads {med['conc/raw1']:.1f}x, "
        f"asyncio {med['conc_async/raw1']:.1f}x, queued {med['conc_queued/raw1']:.1f}x; "
        f"queued per repetition {min(results['conc_queued/raw1']):.1f}x to "
        f"{max(results['conc_queued/raw1']):.1f}x)"
    )
    print(
        "target, steady files (both sides warmed): "
        f"{'met' if steady_ok else 'MISSED'} (queued {ratio('queued_steady')})"
    )
    print(
        "target: replay of a session >= 200,000 events/s: "
        f"{'met' if replay_ok else 'MISSED'} ({med['read']:,.0f}/s; per repetition "
        f"{min(results['read']):,.0f} to {max(results['read']):,.0f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
