"""The contract every ``EventLog`` backend must meet, as an importable pytest suite.

A backend's test module subclasses ``EventLogContract`` and provides two fixtures:

- ``log``: an open, empty ``EventLog``;
- ``reopen``: a callable that closes the current log and returns a new one on the same
  storage; a backend without persistence calls ``pytest.skip`` in it instead.

The tests only use the public protocol, so they pin what a user of any backend sees.
Nothing here sleeps: asynchronous deliveries are awaited on a condition with a timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from eventlog.base import EventLog, append_then
from eventlog.errors import ConflictError, InvalidEventError, UnavailableError
from eventlog.events import Event, NewEvent, Snapshot

__all__ = ["EventLogContract", "Recorder"]

#: How long a test waits for something that should happen at once.
WAIT_S = 10.0

Reopen = Callable[[], EventLog]


def new(n: int, *, prefix: str = "e", command_id: str | None = None) -> list[NewEvent]:
    """``n`` distinct events whose data says which they are."""
    return [
        NewEvent(
            type=f"{prefix}.made", data={"i": i, "name": f"{prefix}{i}"}, command_id=command_id
        )
        for i in range(n)
    ]


class Recorder:
    """A listener that keeps what it is handed and lets a test wait for it."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self._cond = threading.Condition()

    def __call__(self, events: list[Event]) -> None:
        with self._cond:
            self.batches.append(list(events))
            self._cond.notify_all()

    @property
    def events(self) -> list[Event]:
        with self._cond:
            return [e for batch in self.batches for e in batch]

    def wait_for(self, predicate: Callable[[list[Event]], bool], timeout: float = WAIT_S) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: predicate([e for b in self.batches for e in b]), timeout
            )


def _race(n: int, work: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run ``work(i)`` on ``n`` threads released together; results and errors."""
    barrier = threading.Barrier(n)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait(timeout=WAIT_S)
        try:
            out = work(i)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(out)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=WAIT_S * 3)
        assert not t.is_alive(), "an appender thread hung"
    return results, errors


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def _key(e: Event) -> tuple[Any, ...]:
    """Every field a reader sees, for comparing what was stored with what is read."""
    return (e.stream_id, e.seq, e.type, e.data, e.created_at, e.command_id, e.version, e.position)


class EventLogContract:
    """Behaviour shared by every backend. Subclass it and provide ``log`` and ``reopen``."""

    # -- appends and seqs -----------------------------------------------------------

    def test_seqs_count_from_one_without_gaps(self, log: EventLog) -> None:
        """Appends number a stream's events 1..n in order, across several appends."""
        first = log.append("s", new(3), expected_seq=0)
        second = log.append("s", new(2, prefix="f"), expected_seq=3)
        assert [e.seq for e in first + second] == [1, 2, 3, 4, 5]
        stored = log.read("s")
        assert [e.seq for e in stored] == [1, 2, 3, 4, 5]
        assert [_key(e) for e in stored] == [_key(e) for e in first + second]
        assert log.last_seq("s") == 5

    def test_stored_event_keeps_every_field(self, log: EventLog) -> None:
        """What is read back is exactly what was appended, unicode and nesting included."""
        event = NewEvent(
            type="message.added",
            data={"text": "héllo ✓ 😀", "nested": {"list": [1, 2.5, None, True]}, "n": 10**15},
            command_id="cmd-1",
            created_at="2026-01-02T03:04:05.678Z",
            version=3,
        )
        [stored] = log.append("s", [event], expected_seq=0)
        assert (stored.stream_id, stored.seq, stored.type) == ("s", 1, "message.added")
        assert stored.data == event.data
        assert (stored.created_at, stored.command_id, stored.version) == (
            event.created_at,
            "cmd-1",
            3,
        )
        assert [_key(e) for e in log.read("s")] == [_key(stored)]

    def test_positions_strictly_increase_across_streams(self, log: EventLog) -> None:
        """Every event gets a global position greater than every earlier one."""
        appended: list[Event] = []
        for i in range(6):
            appended += log.append(f"s{i % 3}", new(2), expected_seq=(i // 3) * 2)
        positions = [e.position for e in appended]
        assert all(p > 0 for p in positions)
        assert positions == sorted(set(positions))

    def test_stale_expected_seq_conflicts_and_stores_nothing(self, log: EventLog) -> None:
        """An append whose expected seq is not the stream's last seq fails with a conflict."""
        log.append("s", new(2), expected_seq=0)
        for wrong in (0, 1, 3, 7):
            with pytest.raises(ConflictError) as info:
                log.append("s", new(1, prefix="late"), expected_seq=wrong)
            assert (info.value.stream_id, info.value.expected_seq) == ("s", wrong)
            assert info.value.actual_seq == 2
        assert [e.seq for e in log.read("s")] == [1, 2]
        assert log.count() == 2

    def test_appending_to_an_unknown_stream_expects_zero(self, log: EventLog) -> None:
        """A new stream's last seq is 0; expecting anything else conflicts."""
        with pytest.raises(ConflictError):
            log.append("fresh", new(1), expected_seq=1)
        assert log.last_seq("fresh") == 0
        assert log.append("fresh", new(1), expected_seq=0)[0].seq == 1

    def test_racing_appenders_one_wins_the_others_conflict(self, log: EventLog) -> None:
        """N threads appending at the same expected seq: one wins, the rest conflict."""
        n = 16
        for round_ in range(4):
            expected = round_ * 2

            def work(i: int, expected: int = expected) -> list[Event]:
                return log.append("race", new(2, prefix=f"t{i}-"), expected_seq=expected)

            results, errors = _race(n, work)
            assert len(results) == 1, errors
            assert len(errors) == n - 1
            assert all(isinstance(e, ConflictError) for e in errors), errors
            assert [e.seq for e in results[0]] == [expected + 1, expected + 2]
        stored = log.read("race")
        assert [e.seq for e in stored] == list(range(1, 9))
        # each pair comes from one winner: the appends were not interleaved
        for a, b in zip(stored[::2], stored[1::2], strict=True):
            assert a.type == b.type

    def test_concurrent_appenders_on_many_streams_all_land(self, log: EventLog) -> None:
        """Many threads appending to their own streams lose nothing and leave no gap."""
        n, per = 12, 15

        def work(i: int) -> int:
            for k in range(per):
                log.append(f"c{i}", new(1, prefix=f"c{i}-{k}-"), expected_seq=k)
            return i

        results, errors = _race(n, work)
        assert not errors and len(results) == n
        for i in range(n):
            assert [e.seq for e in log.read(f"c{i}")] == list(range(1, per + 1))
        assert log.count() == n * per

    # -- idempotency ------------------------------------------------------------------

    def test_retry_with_same_command_id_returns_stored_events(self, log: EventLog) -> None:
        """A retried append (same first command_id) returns the stored events, adds nothing."""
        log.append("s", new(1, prefix="before"), expected_seq=0)
        first = log.append("s", new(2, command_id="cmd-7"), expected_seq=1)
        last_position = log.last_position()
        again = log.append("s", new(2, command_id="cmd-7"), expected_seq=1)
        assert [_key(e) for e in again] == [_key(e) for e in first]
        # a retry after the stream moved on is still recognised, whatever expected_seq says
        log.append("s", new(1, prefix="after"), expected_seq=3)
        late = log.append("s", new(2, command_id="cmd-7"), expected_seq=1)
        assert [_key(e) for e in late] == [_key(e) for e in first]
        assert log.last_seq("s") == 4
        assert log.count() == 4
        assert log.last_position() > last_position

    def test_command_id_is_scoped_to_its_stream(self, log: EventLog) -> None:
        """The same command_id in another stream is a new append, not a retry."""
        a = log.append("a", new(1, command_id="cmd"), expected_seq=0)
        b = log.append("b", new(1, command_id="cmd"), expected_seq=0)
        assert (a[0].stream_id, b[0].stream_id) == ("a", "b")
        assert log.count() == 2

    def test_concurrent_retries_store_once(self, log: EventLog) -> None:
        """The same command sent by many threads at once is stored once; all get it back."""
        results, errors = _race(8, lambda i: log.append("s", new(2, command_id="dup"), 0))
        assert not errors
        assert [e.seq for e in log.read("s")] == [1, 2]
        stored = [_key(e) for e in log.read("s")]
        assert all([_key(e) for e in r] == stored for r in results)

    # -- reads --------------------------------------------------------------------------

    def test_read_from_any_seq_with_limit(self, log: EventLog) -> None:
        """read() starts after any seq and stops at a limit."""
        log.append("s", new(10), expected_seq=0)
        log.append("other", new(3), expected_seq=0)
        for after in (0, 1, 5, 9, 10, 12):
            assert [e.seq for e in log.read("s", after_seq=after)] == list(range(after + 1, 11))
        assert [e.seq for e in log.read("s", after_seq=3, limit=4)] == [4, 5, 6, 7]
        assert [e.seq for e in log.read("s", limit=2)] == [1, 2]
        assert log.read("s", after_seq=8, limit=10) == log.read("s", after_seq=8)
        assert log.read("s", limit=0) == []
        assert log.read("missing") == []
        assert log.last_seq("missing") == 0

    def test_read_all_is_global_order_from_any_position(self, log: EventLog) -> None:
        """read_all() returns every stream's events in append order, paged by position."""
        appended: list[Event] = []
        for i in range(9):
            stream = f"s{i % 3}"
            appended += log.append(stream, new(1, prefix=f"x{i}"), expected_seq=i // 3)
        everything = log.read_all()
        assert [_key(e) for e in everything] == [_key(e) for e in appended]
        positions = [e.position for e in everything]
        for k, pos in enumerate([0, *positions]):
            assert [_key(e) for e in log.read_all(after_position=pos)] == [
                _key(e) for e in everything[k:]
            ]
        assert log.read_all(after_position=positions[2], limit=3) == everything[3:6]
        assert log.read_all(limit=0) == []
        # paging through with a small limit visits every event once
        paged: list[Event] = []
        after = 0
        while page := log.read_all(after_position=after, limit=4):
            paged += page
            after = page[-1].position
        assert [_key(e) for e in paged] == [_key(e) for e in everything]

    def test_last_seq_and_last_position(self, log: EventLog) -> None:
        """last_seq is per stream; last_position is the newest event's position."""
        assert log.last_position() == 0
        a = log.append("a", new(2), expected_seq=0)
        b = log.append("b", new(3), expected_seq=0)
        assert (log.last_seq("a"), log.last_seq("b")) == (2, 3)
        assert log.last_position() == b[-1].position > a[-1].position

    def test_count(self, log: EventLog) -> None:
        """count() is the number of stored events."""
        assert log.count() == 0
        log.append("a", new(4), expected_seq=0)
        log.append("b", new(1), expected_seq=0)
        assert log.count() == 5

    def test_empty_append_is_checked_and_stores_nothing(self, log: EventLog) -> None:
        """Appending no events still checks expected_seq and changes nothing."""
        log.append("s", new(1), expected_seq=0)
        assert log.append("s", [], expected_seq=1) == []
        with pytest.raises(ConflictError):
            log.append("s", [], expected_seq=0)
        assert log.count() == 1

    def test_append_then_reports_each_outcome_once_in_queue_order(self, log: EventLog) -> None:
        """``append_then`` hands every queued append its outcome exactly once: the stored
        events once durable (readable by then), a conflict, or an invalid event; appends
        queued back to back by one thread, each expecting the one before, all land."""
        outcomes: dict[str, list[tuple[Any, Any]]] = {}
        done_all = threading.Event()

        def done(name: str) -> Callable[[Any, Any], None]:
            def record(stored: Any, error: Any) -> None:
                outcomes.setdefault(name, []).append((stored, error))
                if len(outcomes) == 4:
                    done_all.set()

            return record

        append_then(log, "s", new(2), 0, done("first"))
        append_then(log, "s", new(1, prefix="g"), 2, done("second"))
        append_then(log, "s", new(1, prefix="h"), 0, done("stale"))
        append_then(log, "s", [NewEvent("bad", {"x": float("nan")})], 3, done("bad"))
        assert done_all.wait(WAIT_S)
        assert all(len(v) == 1 for v in outcomes.values())
        [(first, err1)], [(second, err2)] = outcomes["first"], outcomes["second"]
        assert err1 is None and err2 is None
        assert [e.seq for e in first + second] == [1, 2, 3]
        assert isinstance(outcomes["stale"][0][1], ConflictError)
        assert isinstance(outcomes["bad"][0][1], InvalidEventError)
        assert [_key(e) for e in log.read("s")] == [_key(e) for e in first + second]

    # -- invalid events -------------------------------------------------------------------

    @pytest.mark.parametrize(
        "bad",
        [
            {"x": object()},
            {"x": float("nan")},
            {"x": float("inf")},
            {"x": {1, 2}},
            {"x": b"bytes"},
            {"x": "lone \ud800 surrogate"},
            {"when": datetime.now(UTC)},
            _nested(5000),
        ],
        ids=["object", "nan", "inf", "set", "bytes", "surrogate", "datetime", "deep"],
    )
    def test_invalid_data_is_refused_and_changes_nothing(self, log: EventLog, bad: Any) -> None:
        """Data that is not JSON raises InvalidEventError and stores nothing of the append."""
        log.append("s", new(1), expected_seq=0)
        before = (log.count(), log.last_position(), log.read_all())
        batch = [NewEvent(type="ok", data={"fine": 1}), NewEvent(type="bad", data=bad)]
        with pytest.raises(InvalidEventError):
            log.append("s", batch, expected_seq=1)
        assert (log.count(), log.last_position(), log.read_all()) == before
        # the stream is still usable at the same seq and positions keep going
        [ok] = log.append("s", new(1, prefix="next"), expected_seq=1)
        assert ok.seq == 2

    def test_invalid_snapshot_state_is_refused(self, log: EventLog) -> None:
        """A snapshot whose state is not JSON raises InvalidEventError and is not stored."""
        with pytest.raises(InvalidEventError):
            log.save_snapshot(Snapshot("s", 1, {"x": object()}))
        assert log.load_snapshot("s") is None

    # -- subscriptions ------------------------------------------------------------------

    def test_subscription_sees_each_event_once_in_order(self, log: EventLog) -> None:
        """A subscriber gets every appended event exactly once, in global order."""
        log.append("before", new(2), expected_seq=0)  # not delivered: before subscribing
        rec = Recorder()
        sub = log.subscribe(rec)
        n, per = 8, 10

        def work(i: int) -> None:
            for k in range(per):
                log.append(f"c{i}", new(1, prefix=f"{i}-{k}-"), expected_seq=k)

        _, errors = _race(n, work)
        assert not errors
        assert rec.wait_for(lambda evs: len(evs) >= n * per)
        got = rec.events
        assert [_key(e) for e in got] == [_key(e) for e in log.read_all()[2:]]
        positions = [e.position for e in got]
        assert positions == sorted(set(positions))
        for batch in rec.batches:
            assert isinstance(batch, list) and batch
        sub.close()

    def test_closed_subscription_gets_nothing_more(self, log: EventLog) -> None:
        """After Subscription.close() the listener is not called again."""
        closed, open_ = Recorder(), Recorder()
        sub = log.subscribe(closed)
        log.subscribe(open_)
        log.append("s", new(1), expected_seq=0)
        assert closed.wait_for(lambda evs: len(evs) == 1)
        sub.close()
        log.append("s", new(3, prefix="later"), expected_seq=1)
        # the other subscriber seeing the later events bounds the wait without a sleep
        assert open_.wait_for(lambda evs: len(evs) == 4)
        assert [e.seq for e in closed.events] == [1]

    def test_failing_listener_does_not_fail_appends(self, log: EventLog) -> None:
        """A listener that raises neither fails the append nor starves other listeners."""

        def broken(events: list[Event]) -> None:
            raise RuntimeError("listener bug")

        log.subscribe(broken)
        rec = Recorder()
        log.subscribe(rec)
        stored = log.append("s", new(2), expected_seq=0)
        assert [e.seq for e in stored] == [1, 2]
        log.append("s", new(1), expected_seq=2)
        assert rec.wait_for(lambda evs: len(evs) == 3)
        assert log.last_seq("s") == 3

    # -- snapshots ------------------------------------------------------------------------

    def test_snapshot_save_load_replace(self, log: EventLog) -> None:
        """A snapshot is stored per stream and replaced by the next one saved."""
        assert log.load_snapshot("s") is None
        first = Snapshot("s", 5, {"messages": ["a", "é"]}, created_at="2026-01-01T00:00:00.000Z")
        log.save_snapshot(first)
        assert log.load_snapshot("s") == first
        second = Snapshot("s", 9, {"messages": []}, created_at="2026-01-01T00:00:01.000Z")
        log.save_snapshot(second)
        assert log.load_snapshot("s") == second
        assert log.load_snapshot("other") is None

    # -- deletes ----------------------------------------------------------------------------

    def test_delete_stream_removes_events_and_snapshot(self, log: EventLog) -> None:
        """delete_stream purges one stream; others stay; positions are not reused."""
        log.append("keep", new(2), expected_seq=0)
        gone = log.append("gone", new(3), expected_seq=0)
        log.save_snapshot(Snapshot("gone", 3, {"x": 1}))
        log.save_snapshot(Snapshot("keep", 2, {"y": 2}))
        log.delete_stream("gone")
        assert log.read("gone") == []
        assert log.last_seq("gone") == 0
        assert log.load_snapshot("gone") is None
        assert log.load_snapshot("keep") is not None
        assert [e.stream_id for e in log.read_all()] == ["keep", "keep"]
        assert log.count() == 2
        log.delete_stream("never-existed")
        # the stream can start again from seq 1, after every position handed out so far
        [again] = log.append("gone", new(1), expected_seq=0)
        assert again.seq == 1
        assert again.position > gone[-1].position
        assert log.count() == 3

    # -- persistence ------------------------------------------------------------------------

    def test_reopen_keeps_everything(self, log: EventLog, reopen: Reopen) -> None:
        """After close and reopen every event, seq, command_id, created_at and snapshot stay."""
        appended = log.append("a", new(3, command_id="cmd-a"), expected_seq=0)
        appended += log.append(
            "b", [NewEvent("t", {"ü": [1]}, created_at="2020-02-02T02:02:02.002Z")], 0
        )
        appended += log.append("a", new(1, prefix="z"), expected_seq=3)
        snap = Snapshot("a", 3, {"state": "ok"}, created_at="2026-03-03T03:03:03.003Z")
        log.save_snapshot(snap)
        reopened = reopen()
        assert [_key(e) for e in reopened.read_all()] == [_key(e) for e in appended]
        assert reopened.load_snapshot("a") == snap
        assert (reopened.last_seq("a"), reopened.last_seq("b")) == (4, 1)
        assert reopened.count() == 5
        assert reopened.last_position() == appended[-1].position
        # idempotency and conflicts survive the restart too
        retry = reopened.append("a", new(3, command_id="cmd-a"), expected_seq=0)
        assert [_key(e) for e in retry] == [_key(e) for e in appended[:3]]
        with pytest.raises(ConflictError):
            reopened.append("a", new(1), expected_seq=3)
        [more] = reopened.append("a", new(1), expected_seq=4)
        assert more.seq == 5 and more.position > appended[-1].position

    def test_reopen_after_delete_does_not_reuse_positions(
        self, log: EventLog, reopen: Reopen
    ) -> None:
        """Positions stay unique across a restart even when the newest events were deleted."""
        log.append("a", new(1), expected_seq=0)
        tail = log.append("b", new(2), expected_seq=0)
        log.delete_stream("b")
        reopened = reopen()
        [event] = reopened.append("c", new(1), expected_seq=0)
        assert event.position > tail[-1].position

    # -- lifecycle --------------------------------------------------------------------------

    def test_use_after_close_is_unavailable(self, log: EventLog) -> None:
        """Every call on a closed log raises UnavailableError; close() twice is fine."""
        log.append("s", new(1), expected_seq=0)
        log.close()
        log.close()
        calls: list[Callable[[], object]] = [
            lambda: log.append("s", new(1), 1),
            lambda: log.read("s"),
            lambda: log.read_all(),
            lambda: log.last_seq("s"),
            lambda: log.last_position(),
            lambda: log.count(),
            lambda: log.subscribe(Recorder()),
            lambda: log.save_snapshot(Snapshot("s", 1, {})),
            lambda: log.load_snapshot("s"),
            lambda: log.delete_stream("s"),
        ]
        for call in calls:
            with pytest.raises(UnavailableError):
                call()

    def test_close_flushes_concurrent_appends(self, log: EventLog, reopen: Reopen) -> None:
        """Appends acknowledged before close() are all there after a reopen."""
        n = 8
        acked: list[Event] = []
        lock = threading.Lock()

        def work(i: int) -> None:
            for k in range(20):
                try:
                    events = log.append(f"w{i}", new(1), expected_seq=k)
                except UnavailableError:
                    return
                with lock:
                    acked.extend(events)
                if i == 0 and k == 10:
                    log.close()

        _race(n, work)
        reopened = reopen()
        stored = {(e.stream_id, e.seq) for e in reopened.read_all()}
        assert {(e.stream_id, e.seq) for e in acked} <= stored
        for i in range(n):
            seqs = [e.seq for e in reopened.read(f"w{i}")]
            assert seqs == list(range(1, len(seqs) + 1))
