"""Redis pub/sub subscriptions for the broker: one connection per Redis server (per shard
node on a cluster, with sharded SSUBSCRIBE), each read by its own task.

redis-py reconnects and resubscribes a dropped subscription by itself; the subscriber
notices (an error surfaced, or the connection's connect callback ran again) and calls
`on_reconnect` so the broker can fetch from the Streams what was published meanwhile.

On a Redis Cluster a shard channel lives on the master that holds its slot, and redis-py
would reconnect to that one address for ever. So when a shard node's connection fails, or
the server drops a shard channel itself (`sunsubscribe` when its slot moves to another
node), the subscriber asks the cluster where each of the connection's channels lives now
(a keyed probe through the pooled client, which refreshes its slot map on a dead or moved
node) and moves the channels whose slot has a new master: subscribed there, then
`on_reconnect` fills the gap from the Streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster

from liveroom.redis_client import REDIS_ERRORS, retry_options

__all__ = ["ChannelSubscriber"]

log = logging.getLogger(__name__)
OnMessage = Callable[[bytes, bytes], Awaitable[None]]
OnReconnect = Callable[[], Awaitable[None]]


@dataclass(eq=False)
class _Connection:
    name: str  # the cluster node's host:port; "" off a cluster
    pubsub: PubSub
    client: Redis | None  # a cluster node's own client, closed with the subscription
    channels: set[str] = field(default_factory=set)
    reader: asyncio.Task[None] | None = None
    reconnected: bool = False  # resubscribed by redis-py: catch up from the Streams
    lost: bool = False  # its last read failed
    # Channels the server dropped whose slot had no master yet (a promotion or a reshard
    # under way): placed again at every read until their slot has one.
    unplaced: set[str] = field(default_factory=set)
    place_again_at: float = 0.0


class ChannelSubscriber:
    def __init__(self, redis: Redis | RedisCluster, on_message: OnMessage, on_reconnect: OnReconnect) -> None:
        self._redis = redis
        self._sharded = isinstance(redis, RedisCluster)
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._connections: dict[str, _Connection] = {}
        self._where: dict[str, _Connection] = {}

    async def subscribe(self, channel: str) -> None:
        if channel in self._where:
            return
        connection = self._connection_for(channel)
        if self._sharded:
            await connection.pubsub.ssubscribe(channel)
        else:
            await connection.pubsub.subscribe(channel)
        connection.channels.add(channel)
        self._where[channel] = connection
        if connection.reader is None or connection.reader.done():
            connection.reader = asyncio.create_task(self._read(connection), name="liveroom-redis-subscriber")

    async def unsubscribe(self, channel: str) -> None:
        connection = self._where.pop(channel, None)
        if connection is None:
            return
        connection.channels.discard(channel)
        with contextlib.suppress(*REDIS_ERRORS):
            if self._sharded:
                await connection.pubsub.sunsubscribe(channel)
            else:
                await connection.pubsub.unsubscribe(channel)

    async def close(self) -> None:
        for connection in self._connections.values():
            if connection.reader is not None:
                connection.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await connection.reader
            await self._close_connection(connection)
        self._connections.clear()
        self._where.clear()

    @staticmethod
    async def _close_connection(connection: _Connection) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            await connection.pubsub.aclose()  # type: ignore[no-untyped-call]
            if connection.client is not None:
                await connection.client.aclose()

    def _connection_for(self, channel: str) -> _Connection:
        name, client = "", None
        if isinstance(self._redis, RedisCluster):
            node = self._redis.get_node_from_key(channel)
            if node is None:
                raise redis_errors.ConnectionError(f"no cluster node serves {channel}")
            name = node.name
            if name not in self._connections:
                client = Redis(host=node.host, port=int(node.port), **retry_options())
        connection = self._connections.get(name)
        if connection is None:
            pubsub = (client or self._redis).pubsub()
            connection = self._connections[name] = _Connection(name, pubsub, client)
            self._watch_reconnects(connection)
        return connection

    @staticmethod
    def _watch_reconnects(connection: _Connection) -> None:
        resubscribe = connection.pubsub.on_connect

        async def on_connect(_: Any, redis_connection: Any) -> None:
            await resubscribe(redis_connection)
            connection.reconnected = True

        # A bound method: redis-py keeps the connection's callback as a weak method reference.
        setattr(connection.pubsub, "on_connect", types.MethodType(on_connect, connection.pubsub))  # noqa: B010

    async def _read(self, connection: _Connection) -> None:
        """Read `connection` until it is left with no channel. Nothing ends it but that or
        cancellation: a reader that died would leave its channels' viewers receiving nothing
        more, silently, so a failure no handler expected is logged and the reading goes on."""
        while True:
            try:
                if await self._read_one(connection):
                    return
            except Exception:
                log.exception("room bus: reading %s failed; reading on", connection.name or "Redis")
                connection.lost = True
                await asyncio.sleep(0.5)

    async def _read_one(self, connection: _Connection) -> bool:
        """Handle one message (or one second without); True when the reader should end."""
        try:
            message = await connection.pubsub.get_message(timeout=1.0)
        except REDIS_ERRORS as exc:
            if not connection.lost:
                log.warning("room bus connection lost (%s); reconnecting", exc)
            connection.lost = True
            await asyncio.sleep(0.5)
            everything = set(connection.channels)
            # An error answer on a live connection (CLUSTERDOWN while a slot has no master)
            # dropped the channels with no reconnect to resubscribe them: subscribe again.
            dropped = not isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError))
            return self._sharded and await self._follow_slots(connection, everything, dropped=dropped)
        if connection.lost or connection.reconnected:  # back and resubscribed: catch up from the Streams
            if connection.lost:
                log.warning("room bus connection restored")
            connection.lost = False
            # Not caught up (the Streams' node not ready yet): try again within a second.
            connection.reconnected = not await _survived(self._on_reconnect(), "catching up")
        if self._sharded and await self._check_placement(connection):
            return True
        if message is None:
            return False
        if message["type"] in ("message", "smessage"):
            # A message past a gap reads the gap from the Stream first; if that read fails
            # the gap is filled at the next catch-up rather than the reader dying with it.
            if not await _survived(self._on_message(message["channel"], message["data"]), "a message"):
                connection.reconnected = True
        elif message["type"] == "sunsubscribe":
            channel = _text(message["channel"])
            # Dropped by the server, not by us (`unsubscribe` forgets a channel first):
            # its slot moved to another node.
            ours = channel in connection.channels
            return ours and await self._follow_slots(connection, {channel}, dropped=True)
        return False

    async def _check_placement(self, connection: _Connection) -> bool:
        """Twice a second, move the channels the cluster's slot map (as the pooled client
        last learnt it, from any command's MOVED or failure) now places on another node,
        and try the unplaced ones again: a channel dropped without a word (its node lost
        the slot while the cluster was down) is otherwise never read again."""
        now = asyncio.get_running_loop().time()
        if now < connection.place_again_at:
            return False
        connection.place_again_at = now + 0.5
        astray = set(connection.unplaced)
        if isinstance(self._redis, RedisCluster):
            for channel in connection.channels:
                try:
                    node = self._redis.get_node_from_key(channel)
                except REDIS_ERRORS:
                    node = None
                if node is None or node.name != connection.name:
                    astray.add(channel)
        return bool(astray) and await self._follow_slots(connection, astray, dropped=True)

    async def _follow_slots(self, connection: _Connection, channels: set[str], *, dropped: bool) -> bool:
        """Move `channels` whose slot now has another master there; True when `connection`
        is left with none (it is closed, and its reader should end). `dropped`: the server
        unsubscribed them on a live connection (a lost one resubscribes by itself)."""
        moved = set()
        for channel in channels:
            with contextlib.suppress(*REDIS_ERRORS):
                await self._redis.exists(channel)  # refreshes the slot map if it is stale
            node = None
            if isinstance(self._redis, RedisCluster):
                try:
                    node = self._redis.get_node_from_key(channel)
                except REDIS_ERRORS:  # its slot has no master in the map yet: later
                    connection.unplaced.add(channel)
                    continue
            connection.unplaced.discard(channel)
            if node is not None and node.name != connection.name:
                moved.add(channel)
            elif dropped:  # same node, dropped by the server all the same: subscribe again
                try:
                    await connection.pubsub.ssubscribe(channel)
                except REDIS_ERRORS:
                    connection.unplaced.add(channel)
        if not moved:
            return False
        for channel in moved:
            connection.channels.discard(channel)
            self._where.pop(channel, None)
        for channel in moved:
            try:
                await self.subscribe(channel)
            except REDIS_ERRORS as exc:  # the new master is not ready yet
                log.warning("room bus: could not subscribe %s on its new node (%s)", channel, exc)
                connection.channels.add(channel)
                self._where[channel] = connection
        log.warning("room bus: %d channel(s) followed their slot to a new node", len(moved))
        for channel in moved:  # the new connections' readers catch up (one read for them all)
            self._where[channel].reconnected = True
        if connection.channels:
            return False
        if self._connections.get(connection.name) is connection:
            del self._connections[connection.name]
        await self._close_connection(connection)
        return True


async def _survived(work: Awaitable[None], what: str) -> bool:
    """Run the broker's handling of `what`; False (logged) when it failed."""
    try:
        await work
    except Exception as exc:  # the reader must outlive any one failure
        log.warning("room bus: %s failed (%s); caught up later", what, exc or type(exc).__name__)
        return False
    return True


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
