"""What the JetStream backend adds to the shared contract: URLs, subjects, several
instances on one stream (as several nodes are), replicas, and outages of NATS."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from actors.hub import OPERATOR, Hub
from eventlog import open_eventlog
from eventlog.backends.jetstream import (
    POSITION_STRIDE,
    JetStreamConfig,
    JetStreamEventLog,
    stream_token,
    token_stream_id,
)
from eventlog.errors import ConflictError, UnavailableError
from eventlog.events import NewEvent
from eventlog.testing import Recorder
from tests.nats_fixtures import NatsCluster, NatsServer, nats_cluster, nats_server

__all__ = ["nats_cluster", "nats_server"]


def _events(n: int, command_id: str | None = None, prefix: str = "e") -> list[NewEvent]:
    return [NewEvent(f"{prefix}.made", {"i": i}, command_id=command_id) for i in range(n)]


@pytest.fixture
def url(nats_server: NatsServer) -> str:
    """A fresh prefix (stream and bucket) on the module's server."""
    return f"jetstream://127.0.0.1:{nats_server.port}?prefix=t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pair(url: str) -> Iterator[tuple[JetStreamEventLog, JetStreamEventLog]]:
    """Two logs on one stream, as two sessionhub nodes have."""
    a, b = JetStreamEventLog.from_url(url), JetStreamEventLog.from_url(url)
    yield a, b
    a.close()
    b.close()


@pytest.mark.parametrize(
    "stream_id",
    ["s", "abc-DEF_09", "a.b.c", "user:42", "~hub", "~memory:alice", "_x_", "a__b", "é ✓", ""],
)
def test_stream_token_is_one_valid_token_and_reversible(stream_id: str) -> None:
    """Every stream id maps to one subject token of [A-Za-z0-9_-] and back."""
    token = stream_token(stream_id)
    assert token and all(c.isascii() and (c.isalnum() or c in "_-") for c in token)
    assert token_stream_id(token) == stream_id


def test_distinct_ids_get_distinct_tokens() -> None:
    """The escaping is injective on the ids sessionhub uses."""
    ids = ["a.b", "a_b", "a:b", "a_db", "a__b", "~a", "_ta", "a-b"]
    assert len({stream_token(i) for i in ids}) == len(ids)


def test_url_options() -> None:
    """The jetstream:// URL names servers, replicas, prefix and timeout; bad ones are refused."""
    c = JetStreamConfig.from_url("jetstream://h1:4222,h2:4223?replicas=3&prefix=app.x&timeout=2")
    assert c.servers == ("nats://h1:4222", "nats://h2:4223")
    assert (c.replicas, c.prefix, c.timeout_s) == (3, "app.x", 2.0)
    assert (c.stream_name, c.snapshot_bucket) == ("APP_X_LOG", "APP_X_SNAPSHOTS")
    assert c.subject("~hub") == "app.x.log._thub"
    default = JetStreamConfig.from_url("jetstream://127.0.0.1:4222")
    assert (default.replicas, default.prefix) == (1, "sessionhub")
    assert default.stream_name == "SESSIONHUB_LOG"
    for bad in ("jetstream://h?replicas=x", "jetstream://h?replicas=9", "jetstream://h?x=1"):
        with pytest.raises(ValueError):
            JetStreamConfig.from_url(bad)


def test_open_eventlog_picks_jetstream(url: str) -> None:
    """open_eventlog() opens the backend by its scheme."""
    log = open_eventlog(url)
    try:
        assert log.backend == "jetstream"
        assert log.append("s", _events(1), 0)[0].position == POSITION_STRIDE
    finally:
        log.close()


async def test_one_subject_per_stream_one_message_per_append(
    url: str, nats_server: NatsServer
) -> None:
    """An append of N events is one message on the stream's own subject."""
    log = JetStreamEventLog.from_url(url)
    try:
        log.append("sess.1", _events(3), 0)
        log.append("~hub", _events(1), 0)
        config = log.config
        nc = await nats.connect(nats_server.url)
        try:
            info = await nc.jetstream().stream_info(
                config.stream_name, subjects_filter=config.all_subjects
            )
            assert info.state.messages == 2
            assert info.state.subjects == {
                f"{config.prefix}.log.sess_d1": 1,
                f"{config.prefix}.log._thub": 1,
            }
        finally:
            await nc.close()
    finally:
        log.close()


def test_another_node_sees_appends_and_conflicts(
    pair: tuple[JetStreamEventLog, JetStreamEventLog],
) -> None:
    """Node B reads what A appended; a stale append from either side conflicts."""
    a, b = pair
    a.append("s", _events(2), 0)
    assert [e.seq for e in b.read("s")] == [1, 2]
    assert b.last_seq("s") == 2
    b.append("s", _events(1), 2)  # B's index was loaded before: it is refreshed
    with pytest.raises(ConflictError) as info:
        a.append("s", _events(1), 2)  # A's index is stale: the server refuses
    assert info.value.actual_seq == 3
    a.append("s", _events(1), 3)
    assert [e.seq for e in b.read("s")] == [1, 2, 3, 4]


def test_two_nodes_racing_on_one_stream_never_both_append(
    pair: tuple[JetStreamEventLog, JetStreamEventLog],
) -> None:
    """Appenders on two instances at the same expected seq: exactly one wins each round."""
    a, b = pair
    for round_ in range(10):
        results: list[object] = []
        barrier = threading.Barrier(2)

        def go(
            log: JetStreamEventLog,
            who: str,
            expected: int = round_,
            results: list[object] = results,
            barrier: threading.Barrier = barrier,
        ) -> None:
            barrier.wait(5)
            try:
                results.append(log.append("race", _events(1, prefix=who), expected))
            except ConflictError as exc:
                results.append(exc)

        threads = [threading.Thread(target=go, args=(log, w)) for log, w in ((a, "a"), (b, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert sum(isinstance(r, ConflictError) for r in results) == 1, results
    assert [e.seq for e in a.read("race")] == list(range(1, 11))


def test_retry_through_another_node_returns_the_stored_events(
    pair: tuple[JetStreamEventLog, JetStreamEventLog],
) -> None:
    """A command retried on another node (after the stream moved on) is not stored twice."""
    a, b = pair
    first = a.append("s", _events(2, command_id="cmd-1"), 0)
    b.last_seq("s")
    a.append("s", _events(1), 2)
    again = b.append("s", _events(2, command_id="cmd-1"), 0)
    assert [(e.seq, e.position) for e in again] == [(e.seq, e.position) for e in first]
    assert a.count() == 3


def test_subscriber_sees_other_nodes_events_in_order(
    pair: tuple[JetStreamEventLog, JetStreamEventLog],
) -> None:
    """A's subscription gets B's appends (through the consumer) and its own, in order, once."""
    a, b = pair
    rec = Recorder()
    a.subscribe(rec)
    for k in range(5):
        b.append("from-b", _events(1), k)
        a.append("from-a", _events(1), k)
    assert rec.wait_for(lambda evs: len(evs) >= 10)
    got = rec.events
    assert len(got) == 10
    assert [e.position for e in got] == sorted({e.position for e in got})


def test_local_appends_are_delivered_before_append_returns(url: str) -> None:
    """Like sqlite: once append() returns, every subscriber of this log has its events."""
    log = JetStreamEventLog.from_url(url)
    try:
        rec = Recorder()
        log.subscribe(rec)
        for k in range(20):
            [event] = log.append("s", _events(1), k)
            assert rec.events[-1].position == event.position
    finally:
        log.close()


def test_snapshots_of_system_streams(url: str) -> None:
    """Snapshots of "~" streams live in the KV bucket like any other."""
    from eventlog.events import Snapshot

    log = JetStreamEventLog.from_url(url)
    try:
        log.save_snapshot(Snapshot("~memory:alice", 4, {"k": "v"}))
        snap = log.load_snapshot("~memory:alice")
        assert snap is not None and snap.state == {"k": "v"}
        log.delete_stream("~memory:alice")
        assert log.load_snapshot("~memory:alice") is None
    finally:
        log.close()


def test_unavailable_while_nats_is_down_then_recovers(tmp_path: Path) -> None:
    """With the server gone calls fail fast with UnavailableError; after its restart they work."""
    from tests.nats_fixtures import require_nats_server

    server = NatsServer(require_nats_server(), tmp_path)
    server.start()
    log = JetStreamEventLog.from_url(f"jetstream://127.0.0.1:{server.port}?timeout=2")
    try:
        log.append("s", _events(1, command_id="c1"), 0)
        server.stop()
        with pytest.raises(UnavailableError):
            log.append("s", _events(1), 1)
        with pytest.raises(UnavailableError):
            log.read("s")
        server.start()
        deadline = threading.Event()
        for _ in range(100):  # the client reconnects on its own schedule (0.25 s)
            if log.connected:
                break
            deadline.wait(0.05)
        assert log.connected
        assert [e.seq for e in log.read("s")] == [1]
        assert log.append("s", _events(1), 1)[0].seq == 2
    finally:
        log.close()
        server.stop()


def test_replicas_apply_to_stream_and_bucket(nats_cluster: NatsCluster) -> None:
    """replicas=3 on a 3-node cluster: the log stream and the snapshot bucket are R3."""
    import asyncio

    prefix = f"r{uuid.uuid4().hex[:8]}"
    hosts = ",".join(u.removeprefix("nats://") for u in nats_cluster.urls)
    log = JetStreamEventLog.from_url(f"jetstream://{hosts}?replicas=3&prefix={prefix}")
    try:
        log.append("s", _events(2), 0)
        assert [e.seq for e in log.read("s")] == [1, 2]

        async def replicas() -> tuple[int, int]:
            nc = await nats.connect(servers=nats_cluster.urls)
            try:
                js = nc.jetstream()
                stream = await js.stream_info(log.config.stream_name)
                bucket = await js.stream_info(f"KV_{log.config.snapshot_bucket}")
                return stream.config.num_replicas, bucket.config.num_replicas
            finally:
                await nc.close()

        assert asyncio.run(replicas()) == (3, 3)
    finally:
        log.close()


async def test_hub_runs_on_jetstream(url: str) -> None:
    """The whole session layer works on this backend: create, read back at once, run."""
    log = JetStreamEventLog.from_url(url)
    try:
        async with Hub.running(log) as hub:
            created = await hub.create_session(OPERATOR, {"session_id": "s1"})
            got = await hub.get_session(OPERATOR, "s1")
            assert got["session_id"] == created["session_id"] == "s1"
            reply = await hub.run(OPERATOR, "s1", {"message": "hello there"})
            assert reply["message"]["role"] == "assistant"
            events = await hub.read_events(OPERATOR, "s1", {})
            assert events["last_seq"] >= 3
    finally:
        log.close()


def test_subscription_resumes_after_a_nats_restart(tmp_path: Path) -> None:
    """A's subscription still gets B's appends after the server restarted, none twice."""
    from tests.nats_fixtures import require_nats_server

    server = NatsServer(require_nats_server(), tmp_path)
    server.start()
    url = f"jetstream://127.0.0.1:{server.port}?timeout=2"
    a, b = JetStreamEventLog.from_url(url), JetStreamEventLog.from_url(url)
    try:
        rec = Recorder()
        a.subscribe(rec)
        b.append("s", _events(1), 0)
        assert rec.wait_for(lambda evs: len(evs) == 1)
        server.restart()
        for _ in range(200):  # both clients reconnect on their own schedule
            if a.connected and b.connected:
                break
            threading.Event().wait(0.05)
        b.append("s", _events(2), 1)
        assert rec.wait_for(lambda evs: len(evs) == 3, timeout=15)
        assert [e.seq for e in rec.events] == [1, 2, 3]
    finally:
        a.close()
        b.close()
        server.stop()
