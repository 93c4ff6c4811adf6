"""Several real node processes sharing rooms through a real redis-server."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_support import RedisCluster, RedisServer
from support import ServerProcess, Viewer


class Cluster:
    def __init__(self, root: Path, nodes: int, redis_cluster: bool = False) -> None:
        self.redis: RedisServer | RedisCluster = (
            RedisCluster(root / "redis").start() if redis_cluster else RedisServer(root / "redis").start()
        )
        env = {
            "LIVEROOM_BROKER_KIND": "redis",
            "LIVEROOM_STORE_KIND": "redis",
            "LIVEROOM_REDIS_URL": self.redis.url,
            "LIVEROOM_REDIS_CLUSTER": str(redis_cluster).lower(),
            "LIVEROOM_PLUGINS_DANMAKU_BURST": "50",
            "LIVEROOM_PLUGINS_DANMAKU_RATE_PER_S": "50",
        }
        self.nodes = [ServerProcess(root / f"node{i}", env=env).start() for i in range(nodes)]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.redis.stop()


@pytest.fixture(params=["redis", "redis-cluster"])
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    made = Cluster(tmp_path, 3, redis_cluster=request.param == "redis-cluster")
    yield made
    made.stop()


async def test_danmaku_crosses_nodes_once_in_one_order(cluster: Cluster) -> None:
    viewers = [Viewer(node.url, f"user{i}") for i, node in enumerate(cluster.nodes)]
    try:
        for viewer in viewers:
            await viewer.connect()
            await viewer.join("shared")
        await asyncio.gather(
            *(
                v.call("danmaku.send", {"room": "shared", "text": f"{v.user}-{n}"})
                for n in range(5)
                for v in viewers
            )
        )
        orders = []
        for viewer in viewers:
            items = await viewer.wait_for(lambda i: i["type"] == "danmaku.message", count=15)
            await asyncio.sleep(0.2)
            items = viewer.of_type("danmaku.message")
            assert len(items) == 15  # each exactly once
            orders.append([(i["seq"], i["data"]["text"]) for i in items])
        assert orders[0] == orders[1] == orders[2]
        assert [seq for seq, _ in orders[0]] == list(range(1, 16))
    finally:
        for viewer in viewers:
            await viewer.close()


async def test_a_killed_nodes_viewer_resumes_on_another_without_a_gap(cluster: Cluster) -> None:
    a, b, _ = cluster.nodes
    sender = Viewer(b.url, "sender")
    victim = Viewer(a.url, "victim", reconnection=False)
    try:
        await sender.connect()
        await sender.join("stream")
        await victim.connect()
        await victim.join("stream")
        for n in range(3):
            await sender.call("danmaku.send", {"room": "stream", "text": f"before {n}"})
        seen = await victim.wait_for(lambda i: i["type"] == "danmaku.message", count=3)
        last = seen[-1]["seq"]
        assert a.process is not None
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(10)
        for n in range(4):
            await sender.call("danmaku.send", {"room": "stream", "text": f"during {n}"})
        moved = Viewer(b.url, "victim")
        await moved.connect()
        ack = await moved.join("stream", since=last)
        assert ack["reset"] is False
        assert [m["data"]["text"] for m in ack["missed"]] == [f"during {n}" for n in range(4)]
        assert [m["seq"] for m in ack["missed"]] == list(range(last + 1, last + 5))
        await moved.close()
    finally:
        await sender.close()
        await victim.close()
