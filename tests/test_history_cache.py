"""Histories kept in memory for reads: the same pages as the log gives, never behind an
acknowledged write, whole or not kept at all, and bounded."""

from __future__ import annotations

import asyncio
import gc
import random

from actors.history import HistoryCache
from actors.hub import Hub
from eventlog import Event
from eventlog.backends.memory import MemoryEventLog
from eventlog.backends.sqlite import SQLiteEventLog
from tests.hub_helpers import ALICE, config

QUERIES = [
    {},
    {"after": "3"},
    {"after": "40", "limit": "5"},
    {"limit": "1"},
    {"tail": "4"},
    {"tail": "30", "limit": "7"},
    {"type": "context_set"},
    {"type": "app.step", "tail": "3"},
    {"type": "app.step", "after": "10", "limit": "2"},
    {"after": "999"},
]


def ev(sid: str, seq: int, type_: str = "app.x", **data: object) -> Event:
    return Event(sid, seq, type_, dict(data), "2026-12-05T00:00:00.000Z", None, 1, seq)


async def _fill(hub: Hub, sid: str) -> None:
    for i in range(20):
        await hub.context_set(ALICE, sid, f"k{i % 3}", i)
        await hub.append_events(ALICE, sid, {"events": [{"type": "app.step", "data": {"i": i}}]})


async def test_pages_from_memory_equal_pages_from_the_log(tmp_path):
    """Every kind of query gives the same page with the cache as without it, whether the
    history is kept as dicts or (a small cache, written since) as JSON."""
    pages = []
    for size in (100_000, 200, 0):
        log = SQLiteEventLog(tmp_path / f"events-{size}.db")
        try:
            async with Hub.running(log, config(history_cache_events=size)) as hub:
                assert (hub.history is not None) == bool(size)
                sid = (await hub.create_session(ALICE, {"session_id": "s1"}))["session_id"]
                await _fill(hub, sid)
                other = (await hub.create_session(ALICE, {"session_id": "s2"}))["session_id"]
                await _fill(hub, other)  # with size 200, s1 goes over to JSON
                if size == 200:
                    assert "s1" not in hub.history._dicts
                pages.append([await hub.read_events(ALICE, sid, q) for q in QUERIES])
                if size:
                    assert len(hub.history) == 82  # both whole histories are kept
        finally:
            log.close()
    big, small, direct = (
        [
            # created_at and command ids differ between the runs
            [{k: v for k, v in e.items() if k not in ("created_at", "command_id")} for e in p]
            for p in (page["events"] for page in run)
        ]
        for run in pages
    )
    assert big == direct and small == direct
    last_seqs = [[page["last_seq"] for page in run] for run in pages]
    assert last_seqs[0] == last_seqs[1] == last_seqs[2]


async def test_reads_never_lag_acknowledged_writes(tmp_path):
    """Once a history is kept, each write is in the very next read, including writes that
    race the first read that fills the cache."""
    log = SQLiteEventLog(tmp_path / "events.db")
    try:
        async with Hub.running(log, config()) as hub:
            sid = (await hub.create_session(ALICE, {"agent": {"kind": "none"}}))["session_id"]
            writes = [
                asyncio.create_task(
                    hub.append_events(ALICE, sid, {"events": [{"type": "app.w", "data": i}]})
                )
                for i in range(30)
            ]
            first = await hub.read_events(ALICE, sid, {})
            await asyncio.gather(*writes)
            assert first["last_seq"] >= 1
            for i in range(30):
                done = await hub.append_events(
                    ALICE, sid, {"events": [{"type": "app.after", "data": i}]}
                )
                page = await hub.read_events(ALICE, sid, {"tail": "1"})
                assert page["last_seq"] == done["version"]
                assert page["events"][0]["data"] == i
            whole = await hub.read_events(ALICE, sid, {"limit": "10000"})
            assert [e["seq"] for e in whole["events"]] == list(range(1, 62))
            assert [e["seq"] for e in whole["events"]] == [e.seq for e in log.read(sid)]
    finally:
        log.close()


def test_a_fill_joins_the_events_committed_during_the_read():
    cache = HistoryCache(1000)
    cache.begin_fill("s")
    cache.apply([ev("s", 3), ev("s", 4), ev("other", 7)])  # committed while reading
    kept = cache.end_fill("s", [ev("s", 1), ev("s", 2), ev("s", 3)])  # read saw up to 3
    assert [e["seq"] for e in kept] == [1, 2, 3, 4]
    cache.apply([ev("s", 5)])
    assert [e["seq"] for e in cache.get("s")] == [1, 2, 3, 4, 5]
    assert cache.get("other") is None  # never read, and older than this process


def test_a_session_born_here_is_kept_from_its_first_event():
    cache = HistoryCache(1000)
    cache.apply([ev("new", 1), ev("new", 2)])
    assert [e["seq"] for e in cache.get("new")] == [1, 2]
    small = HistoryCache(8)
    small.apply([ev("grows", i) for i in range(1, 4)])  # over a quarter of the bound
    assert small.get("grows") is None and len(small) == 0


def test_most_of_the_cache_is_not_walked_by_the_garbage_collector():
    """At most a quarter of the bound is kept as dicts (four tracked objects an event
    here); the histories used least recently are kept as JSON, which the collector does
    not track, and a read of one gets it whole."""
    cache = HistoryCache(8000)
    gc.collect()
    before = len(gc.get_objects())
    for n in range(16):
        cache.apply(
            [
                ev(f"s{n}", i, "context_set", key=f"k{i}", value={"n": i, "tags": ["a"]})
                for i in range(1, 501)
            ]
        )
    gc.collect()
    assert len(cache) == 8000
    assert len(gc.get_objects()) - before < 4 * 2000 + 500  # as dicts: 4 * 8000
    for n in (0, 15, 3):
        kept = cache.get(f"s{n}")
        assert [e["seq"] for e in kept] == list(range(1, 501))
        assert [e["data"]["value"] for e in kept] == [
            {"n": i, "tags": ["a"]} for i in range(1, 501)
        ]
        assert kept is cache.get(f"s{n}")  # read again: the same dicts, no copy
    cache.apply([ev("s0", 501, "context_set", key="k", value=1)])
    assert cache.get("s0")[-1]["data"] == {"key": "k", "value": 1}
    gc.collect()
    assert len(gc.get_objects()) - before < 4 * 2000 + 500


def test_a_value_msgspec_cannot_encode_keeps_the_history_as_dicts():
    cache = HistoryCache(1000)
    cache.apply([ev("odd", 1, "x", a=1), ev("odd", 2, "x", **{"b": None})])
    cache.apply([Event("odd", 3, "x", {True: 1}, "2026-12-05T00:00:00.000Z", None, 1, 3)])
    assert [e["data"] for e in cache.get("odd")] == [{"a": 1}, {"b": None}, {True: 1}]


def test_a_gap_or_a_purge_drops_the_history():
    cache = HistoryCache(1000)
    for sid in ("gap", "purged", "fill-purged"):
        cache.begin_fill(sid)
        cache.end_fill(sid, [ev(sid, 1)])
    cache.apply([ev("gap", 3)])  # seq 2 never seen
    assert cache.get("gap") is None
    cache.apply([ev("purged", 2, "session_deleted", purge=True)])
    assert cache.get("purged") is None
    cache.begin_fill("late")
    cache.apply([ev("late", 2, "session_deleted", purge=True)])
    assert cache.end_fill("late", [ev("late", 1)]) is None
    assert cache.end_fill("never-begun", [ev("never-begun", 1)]) is None


def test_bounded_least_recently_read_go_first_and_long_histories_are_not_kept():
    cache = HistoryCache(40)
    assert cache.wants(10) and not cache.wants(11)
    for n in range(5):
        sid = f"s{n}"
        cache.begin_fill(sid)
        cache.end_fill(sid, [ev(sid, i) for i in range(1, 11)])
        if n == 2:
            assert cache.get("s0") is not None  # read again: now the most recent
    assert len(cache) <= 40
    assert cache.get("s1") is None  # the least recently read
    assert all(cache.get(sid) is not None for sid in ("s0", "s2", "s3", "s4"))
    cache.begin_fill("long")
    assert cache.end_fill("long", [ev("long", i) for i in range(1, 12)]) is None


def test_only_logs_that_notify_before_acknowledging_get_a_cache():
    """A JetStream listener runs after the append is acknowledged: no cache there."""

    class JetStreamLike(MemoryEventLog):
        backend = "jetstream"

    assert Hub(MemoryEventLog(), config()).history is not None
    assert Hub(JetStreamLike(), config()).history is None


def test_random_use_keeps_whole_histories_and_the_dict_bound():
    """Writes, reads, purges and evictions in a random order: every history read is the
    reference history, and the dicts kept never exceed a quarter of the bound."""
    rng = random.Random(7)
    cache = HistoryCache(200)
    truth: dict[str, int] = {}  # session -> last seq written
    for _ in range(3000):
        sid = f"s{rng.randrange(12)}"
        roll = rng.random()
        if roll < 0.6:
            seq = truth.get(sid, 0) + 1
            truth[sid] = seq
            cache.apply([ev(sid, seq, "context_set", key="k", value=[seq])])
        elif roll < 0.95:
            kept = cache.get(sid)
            if kept is not None:
                assert [e["data"]["value"] for e in kept] == [[i] for i in range(1, len(kept) + 1)]
                assert len(kept) == truth[sid]
        else:
            seq = truth.get(sid, 0) + 1
            cache.apply([ev(sid, seq, "session_deleted", purge=True)])
            truth.pop(sid, None)
            assert cache.get(sid) is None
        assert len(cache) <= 200
        assert cache._dict_events <= cache.max_dict_events or len(cache._dicts) == 1
        assert cache._dict_events == sum(len(cache._entries[s]) for s in cache._dicts)
