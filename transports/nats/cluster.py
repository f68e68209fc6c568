"""Several sessionhub nodes on one NATS cluster: session ownership held in JetStream KV.

Two buckets (``<PREFIX>`` is the subject prefix, upper-cased):

- ``<PREFIX>_NODES``: one key per live node, ``<node_id>``, put again every ``ttl / 3``;
  the bucket's ``max_age`` is ``ttl``, so the key of a node that died (or lost NATS for
  longer than ``ttl``) disappears by itself. This is the lease.
- ``<PREFIX>_OWNERS``: one key per session, ``s.<token>``, holding the owner's node id.
  It is created if absent (the first node to touch a session owns it) and changed only by
  compare-and-set on its revision, and only when the owner's node key is gone: that is
  the takeover. One heartbeat per node, not one per session, keeps every lease alive.

Ownership is an optimisation of who serves a session (one live actor, fresh reads, one
place that streams its chunks); correctness never depends on it: two nodes that both
believe they own a session (a partition longer than ``ttl``) are still kept apart by the
event log's conditional append, and the loser catches up from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import nats.js.errors
import structlog

from eventlog.backends.jetstream import stream_token

__all__ = ["Leases", "new_node_id"]

log = structlog.get_logger("sessionhub.nats.cluster")


class Leases:
    """This node's view of session ownership.

    Args:
        js: a JetStream context of the node's NATS connection.
        prefix: the subject prefix (names the buckets).
        node_id: this node's id (letters, digits, ``-`` and ``_``).
        ttl_s: how long a silent node keeps its sessions.
        replicas: replicas of both buckets.
    """

    def __init__(
        self, js: Any, prefix: str, node_id: str, ttl_s: float = 10.0, replicas: int = 1
    ) -> None:
        name = "".join(c if c.isalnum() else "_" for c in prefix).upper()
        self.js = js
        self.node_id = node_id
        self.ttl_s = ttl_s
        self.replicas = replicas
        self.nodes_bucket = f"{name}_NODES"
        self.owners_bucket = f"{name}_OWNERS"
        self.nodes: Any = None
        self.owners: Any = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._last_beat = 0.0
        self._mine: set[str] = set()
        self.on_takeover: list[Any] = []  # callbacks(session_id) after taking a session over

    # -- provisioning and life cycle ---------------------------------------------------

    async def start(self) -> None:
        self.nodes = await self._bucket(self.nodes_bucket, ttl=self.ttl_s)
        self.owners = await self._bucket(self.owners_bucket, ttl=None)
        await self._beat()
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat_forever())

    async def _bucket(self, bucket: str, ttl: float | None) -> Any:
        try:
            return await self.js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            with contextlib.suppress(nats.js.errors.BadRequestError):  # created meanwhile
                return await self.js.create_key_value(
                    bucket=bucket, history=1, ttl=ttl, replicas=self.replicas
                )
            return await self.js.key_value(bucket)

    async def stop(self, release: bool = True) -> None:
        """Stop the heartbeat; with ``release`` hand the node's sessions back at once."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        if release and self.nodes is not None:
            with contextlib.suppress(Exception):
                await self.nodes.delete(self.node_id)

    async def _beat(self) -> None:
        await self.nodes.put(self.node_id, str(time.time()).encode())
        self._last_beat = time.monotonic()

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                await self._beat()
            except Exception as exc:
                log.warning("lease_heartbeat_failed", error=str(exc))

    @property
    def alive(self) -> bool:
        """Whether this node's own lease is certainly still valid."""
        return time.monotonic() - self._last_beat < self.ttl_s * 0.9

    # -- ownership ----------------------------------------------------------------------

    async def node_alive(self, node_id: str) -> bool:
        try:
            entry = await self.nodes.get(node_id)
        except nats.js.errors.KeyNotFoundError:
            return False
        return entry.value is not None

    async def owner(self, session_id: str, acquire: bool = True) -> str | None:
        """The node that serves ``session_id``, taking it (if ``acquire``) when nobody
        does or its owner's lease expired. Returns this node's id when it is the owner."""
        if session_id in self._mine and self.alive:
            return self.node_id
        key = "s." + stream_token(session_id)
        for _ in range(20):
            try:
                entry = await self.owners.get(key)
            except nats.js.errors.KeyNotFoundError:
                entry = None
            if entry is None or entry.value is None:
                if not acquire:
                    return None
                try:
                    await self.owners.create(key, self.node_id.encode())
                except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyNotFoundError):
                    # Another node was faster: read who. (nats-py's create re-reads the
                    # key after a wrong-last-sequence error; a replica that has not seen
                    # the other node's write yet answers "not found" to that read.)
                    await asyncio.sleep(0.01)
                    continue
                self._mine.add(session_id)
                return self.node_id
            owner = entry.value.decode()
            if owner == self.node_id:
                self._mine.add(session_id)
                return owner
            if await self.node_alive(owner) or not acquire:
                self._mine.discard(session_id)
                return owner
            try:  # the owner's lease expired: take the session over
                await self.owners.update(key, self.node_id.encode(), last=entry.revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
            log.info("session_taken_over", session_id=session_id, from_node=owner)
            self._mine.add(session_id)
            for callback in self.on_takeover:
                callback(session_id)  # a stale actor of an earlier ownership must reload
            return self.node_id
        raise RuntimeError(f"ownership of {session_id!r} kept changing")

    def forget(self, session_id: str) -> None:
        self._mine.discard(session_id)


def new_node_id() -> str:
    return uuid.uuid4().hex[:12]
