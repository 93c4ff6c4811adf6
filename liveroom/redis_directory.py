"""The room directory of a cluster on Redis (`cluster.RoomDirectory`): each room's owner is a
lease key (`<p>:{<room>}:owner`, `SET NX PX`, liveroom/redis_lease.py) and each node's inbox a
pub/sub channel (`<p>:{node:<id>}:rpc`, sharded on a Redis Cluster)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from liveroom.errors import Unavailable
from liveroom.redis_client import REDIS_ERRORS
from liveroom.redis_lease import HOLD_LEASE, RELEASE_LEASE
from liveroom.redis_subscriber import ChannelSubscriber

__all__ = ["RedisDirectory"]

# KEYS: a node's inbox. ARGV: the message, sharded (0/1). Returns how many nodes heard it.
_SEND = """
if ARGV[2] == '1' then return redis.call('SPUBLISH', KEYS[1], ARGV[1]) end
return redis.call('PUBLISH', KEYS[1], ARGV[1])
"""


class RedisDirectory:
    def __init__(self, redis: Redis | RedisCluster, prefix: str = "lr") -> None:
        self._redis = redis
        self._prefix = prefix
        self._sharded = isinstance(redis, RedisCluster)
        self._hold = redis.register_script(HOLD_LEASE)
        self._give_up = redis.register_script(RELEASE_LEASE)
        self._send = redis.register_script(_SEND)
        self._subscriber: ChannelSubscriber | None = None

    async def owner(self, room: str) -> str | None:
        try:
            found = await self._redis.get(self._key(room))
        except REDIS_ERRORS as exc:
            raise Unavailable(str(exc)) from None
        return None if found is None else found.decode() if isinstance(found, bytes) else str(found)

    async def hold(self, room: str, node: str, ttl_ms: int) -> bool:
        try:
            return bool(await self._hold(keys=(self._key(room),), args=(node, ttl_ms)))
        except REDIS_ERRORS as exc:
            raise Unavailable(str(exc)) from None

    async def release(self, room: str, node: str) -> None:
        try:
            await self._give_up(keys=(self._key(room),), args=(node,))
        except REDIS_ERRORS as exc:
            raise Unavailable(str(exc)) from None

    async def send(self, node: str, message: bytes) -> int:
        try:
            return int(await self._send(keys=(self._inbox(node),), args=(message, int(self._sharded))))
        except REDIS_ERRORS as exc:
            raise Unavailable(str(exc)) from None

    async def listen(self, node: str, handler: Callable[[bytes], Coroutine[Any, Any, None]]) -> None:
        async def receive(_channel: bytes, data: bytes) -> None:
            await handler(data)

        async def reconnected() -> None:
            return None  # calls lost meanwhile time out: their callers are told

        if isinstance(self._redis, RedisCluster):
            await self._redis.initialize()  # the slot map, before subscribing by slot
        self._subscriber = ChannelSubscriber(self._redis, receive, reconnected)
        await self._subscriber.subscribe(self._inbox(node))

    async def listeners(self, node: str) -> int:
        inbox = self._inbox(node)
        try:
            if isinstance(self._redis, RedisCluster):
                where = self._redis.get_node_from_key(inbox)
                counts = await self._redis.pubsub_shardnumsub(inbox, target_nodes=where)
            else:
                counts = await self._redis.pubsub_numsub(inbox)
        except REDIS_ERRORS as exc:
            raise Unavailable(str(exc)) from None
        return sum(int(count) for _, count in counts)

    async def close(self) -> None:
        if self._subscriber is not None:
            await self._subscriber.close()

    def _key(self, room: str) -> str:
        return f"{self._prefix}:{{{room}}}:owner"

    def _inbox(self, node: str) -> str:
        return f"{self._prefix}:{{node:{node}}}:rpc"
