"""Liveroom nodes sharing rooms through a real Redis, for the scale-out tests: a `Cluster` of
node processes, and `until_ok` for the `unavailable` answers of a room whose owner is changing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis_support import RedisCluster, RedisServer
from support import ServerProcess

__all__ = ["Cluster", "until_ok"]


class Cluster:
    """Liveroom nodes on one Redis: a redis-server of the test's own (the outage test stops
    it), or the session's Redis Cluster with a key prefix of the test's own."""

    def __init__(
        self, root: Path, nodes: int, shared: RedisCluster | None = None, extra: dict[str, str] | None = None
    ) -> None:
        self.redis: RedisServer | RedisCluster = shared or RedisServer(root / "redis").start()
        self.owns_redis = shared is None
        env = {
            "LIVEROOM_BROKER_KIND": "redis",
            "LIVEROOM_STORE_KIND": "redis",
            "LIVEROOM_REDIS_URL": self.redis.url,
            "LIVEROOM_REDIS_CLUSTER": str(shared is not None).lower(),
            "LIVEROOM_REDIS_KEY_PREFIX": "e" + root.name.replace("_", "")[-12:],
            # Short leases so a dead node's viewers leave `online` within the test.
            "LIVEROOM_PRESENCE_REFRESH_S": "0.3",
            "LIVEROOM_PRESENCE_TTL_S": "1.5",
            "LIVEROOM_PLUGINS_DANMAKU_BURST": "50",
            "LIVEROOM_PLUGINS_DANMAKU_RATE_PER_S": "50",
            **(extra or {}),
        }
        self.nodes = [ServerProcess(root / f"node{i}", env=env).launch() for i in range(nodes)]
        for node in self.nodes:
            node.wait_ready()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.owns_redis:
            self.redis.stop()


async def until_ok(call: Callable[[], Awaitable[Any]], timeout: float = 60) -> dict[str, Any]:
    """Retry a command answered `unavailable` (a room's owner lease being taken, or a dead
    owner's running out) until it is answered otherwise; `unavailable` must say retry later."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        ack: dict[str, Any] = await call()
        if ack["ok"] or ack["error"]["code"] != "unavailable":
            return ack
        assert ack["error"].get("retry") == "later", ack
        assert asyncio.get_running_loop().time() < deadline, ack
        await asyncio.sleep(0.2)
