"""Redis pub/sub subscriptions for the broker: one connection per Redis server (per shard
node on a cluster, with sharded SSUBSCRIBE), each read by its own task.

redis-py reconnects and resubscribes a dropped subscription by itself; the subscriber
notices (an error surfaced, or the connection's connect callback ran again) and calls
`on_reconnect` so the broker can fetch from the Streams what was published meanwhile.
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

from liveroom.redis_client import retry_options

__all__ = ["ChannelSubscriber"]

log = logging.getLogger(__name__)
OnMessage = Callable[[bytes, bytes], Awaitable[None]]
OnReconnect = Callable[[], Awaitable[None]]


@dataclass(eq=False)
class _Connection:
    pubsub: PubSub
    client: Redis | None  # a cluster node's own client, closed with the subscription
    channels: set[str] = field(default_factory=set)
    reader: asyncio.Task[None] | None = None
    reconnected: bool = False


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
        with contextlib.suppress(redis_errors.RedisError, OSError):
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
            with contextlib.suppress(redis_errors.RedisError, OSError):
                await connection.pubsub.aclose()  # type: ignore[no-untyped-call]
                if connection.client is not None:
                    await connection.client.aclose()
        self._connections.clear()
        self._where.clear()

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
            connection = self._connections[name] = _Connection(pubsub, client)
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
        lost = False
        while True:
            try:
                message = await connection.pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (redis_errors.RedisError, OSError) as exc:
                if not lost:
                    log.warning("room bus connection lost (%s); reconnecting", exc)
                lost = True
                await asyncio.sleep(0.5)
                continue
            if lost or connection.reconnected:  # back and resubscribed: catch up from the Streams
                if lost:
                    log.warning("room bus connection restored")
                lost = connection.reconnected = False
                await self._on_reconnect()
            if message is not None and message["type"] in ("message", "smessage"):
                await self._on_message(message["channel"], message["data"])
