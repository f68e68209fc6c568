"""The nats-server fixtures: a real server and a real 3-node cluster start and stop."""

from __future__ import annotations

import nats

from tests.nats_fixtures import NatsCluster, NatsServer, nats_cluster, nats_server

__all__ = ["nats_cluster", "nats_server"]


async def test_single_server_takes_jetstream_publishes(nats_server: NatsServer) -> None:
    """The single-server fixture runs JetStream: a stream takes a publish."""
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="FIXTURE", subjects=["fixture.>"])
        ack = await js.publish("fixture.x", b"hello")
        assert ack.seq == 1
        await js.delete_stream("FIXTURE")
    finally:
        await nc.close()


async def test_cluster_holds_an_r3_stream(nats_cluster: NatsCluster) -> None:
    """The cluster fixture has three routed JetStream nodes: an R3 stream is placed on all."""
    nc = await nats.connect(servers=nats_cluster.urls)
    try:
        js = nc.jetstream()
        info = await js.add_stream(name="R3", subjects=["r3.>"], num_replicas=3)
        assert info.config.num_replicas == 3
        await js.publish("r3.x", b"1")
        info = await js.stream_info("R3")
        assert info.cluster is not None
        assert len(info.cluster.replicas or []) == 2
        await js.delete_stream("R3")
    finally:
        await nc.close()


def test_stop_terminates_the_process(tmp_path) -> None:
    """stop() ends the server by its pid; start() brings it back on the same port."""
    from tests.nats_fixtures import require_nats_server

    server = NatsServer(require_nats_server(), tmp_path)
    server.start()
    port = server.port
    server.stop()
    assert not server.running()
    server.start()
    assert server.running() and server.port == port
    server.kill()
    assert not server.running()
