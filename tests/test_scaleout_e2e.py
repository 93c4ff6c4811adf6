"""Several real node processes sharing rooms through a real redis-server."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_support import Cluster
from redis_support import RedisCluster
from support import Viewer


@pytest.fixture(params=["redis", "redis-cluster"])
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Three nodes of the test's own: for the tests that kill or stop one."""
    shared = request.getfixturevalue("redis_cluster") if request.param == "redis-cluster" else None
    made = Cluster(tmp_path, 3, shared)
    yield made
    made.stop()


@pytest.fixture(scope="module", params=["redis", "redis-cluster"])
def nodes(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Three nodes for the module's tests that leave them running (each in a room of its own)."""
    shared = request.getfixturevalue("redis_cluster") if request.param == "redis-cluster" else None
    made = Cluster(tmp_path_factory.mktemp("scaleout"), 3, shared)
    yield made
    made.stop()


async def test_danmaku_crosses_nodes_once_in_one_order(nodes: Cluster) -> None:
    cluster = nodes
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


async def test_a_ban_through_one_node_removes_the_user_from_every_node(nodes: Cluster) -> None:
    """Personal items and removals reach the user's connections on other nodes (before, only
    the node that ran the command: the banned user stayed in the room through the others)."""
    cluster = nodes
    moderator = Viewer(cluster.nodes[0].url, "mod", role="moderator")
    banned = [Viewer(node.url, "troll") for node in cluster.nodes[1:]]  # one user, two nodes
    bystander = Viewer(cluster.nodes[2].url, "fan")
    try:
        for client in (moderator, *banned, bystander):
            await client.connect()
            assert (await client.join("bans"))["ok"]
        ack = await moderator.call("danmaku.ban", {"room": "bans", "user": "troll", "duration_s": 60})
        assert ack["ok"], ack
        for connection in banned:
            (item,) = await connection.wait_for(lambda i: i["type"] == "danmaku.banned")
            assert item["seq"] is None  # personal: in no history
            for _ in range(100):  # out of the room: its command is refused as not joined
                refused = await connection.call("danmaku.send", {"room": "bans", "text": "still here?"})
                if not refused["ok"] and refused["error"]["code"] == "not_joined":
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"the banned user is still in the room: {refused}")
        await asyncio.sleep(0.3)
        assert not bystander.of_type("danmaku.banned")  # nobody else hears of it
        assert not any(i["type"].startswith("lr.") for i in bystander.items)  # nor of the nodes' own
    finally:
        for client in (moderator, *banned, bystander):
            await client.close()


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


async def latest_online(viewer: Viewer, expected: int, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        counts = [i["data"]["count"] for i in viewer.of_type("room.online")]
        if counts and counts[-1] == expected:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{viewer.user}: online never became {expected}: {counts}")
        await asyncio.sleep(0.05)


async def test_online_counts_distinct_users_across_nodes_and_falls_when_a_node_goes(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    viewers = [Viewer(node.url, f"p{i}-{n}") for i, node in enumerate((a, b, c)) for n in range(2)]
    twice = [Viewer(a.url, "twice"), Viewer(b.url, "twice")]  # one user through two nodes: one
    try:
        for viewer in (*viewers, *twice):
            await viewer.connect()
            await viewer.join("presence")
        for viewer in viewers:
            await latest_online(viewer, 7)
        assert c.process is not None
        c.process.send_signal(signal.SIGKILL)  # its lease runs out
        c.process.wait(10)
        for viewer in viewers[:4]:
            await latest_online(viewer, 5)
        b.stop()  # SIGTERM: it withdraws its users as it stops ("twice" stays, through a)
        for viewer in viewers[:2]:
            await latest_online(viewer, 3)
        ack = await viewers[0].join("presence")
        assert ack["online"] == 3
    finally:
        for viewer in (*viewers, *twice):
            await viewer.close()


@pytest.fixture
def nodes_on_a_redis_of_their_own(tmp_path: Path) -> Iterator[Cluster]:
    """The outage test stops and restarts Redis in place: a single server of its own."""
    made = Cluster(tmp_path, 3)
    yield made
    made.stop()


async def test_redis_down_keeps_local_rooms_going_and_commerce_unavailable(
    nodes_on_a_redis_of_their_own: Cluster,
) -> None:
    from plugin_support import api

    cluster = nodes_on_a_redis_of_their_own
    a, b, _ = cluster.nodes
    here, there = Viewer(a.url, "here"), Viewer(a.url, "there")
    host = Viewer(a.url, "host", role="host")
    try:
        for viewer in (here, there, host):
            await viewer.connect()
            await viewer.join("outage")
        cluster.redis.stop()
        # Danmaku still flows between members on the same node (not in history: no seq).
        sent = await here.call("danmaku.send", {"room": "outage", "text": "still here"})
        assert sent["ok"], sent
        [item] = await there.wait_for(lambda i: i["type"] == "danmaku.message")
        assert item["data"]["text"] == "still here" and item["seq"] is None
        # What needs Redis answers unavailable, over Socket.IO and HTTP alike.
        vote = await host.call(
            "poll.create", {"room": "outage", "question": "Q?", "options": ["a", "b"], "duration_s": 60}
        )
        assert vote["ok"] is False and vote["error"]["code"] == "unavailable", vote
        status, body = api(
            b,
            "POST",
            "/api/rooms/outage/commands/sale.schedule",
            {"sku": "s", "title": "t", "price": 1, "stock": 5, "starts_at": 0, "duration_s": 60},
        )
        assert status == 503 and body["error"]["code"] == "unavailable"
        joiner = Viewer(b.url, "late")
        await joiner.connect()
        assert (await joiner.call("join", {"room": "outage"}))["error"]["code"] == "unavailable"
        await joiner.close()
        # Redis comes back (empty: no persistence in this test): everything recovers by itself.
        cluster.redis.start()
        for _ in range(100):
            ack = await here.call("danmaku.send", {"room": "outage", "text": "back"})
            if ack["ok"]:
                break
            await asyncio.sleep(0.1)
        items = await there.wait_for(lambda i: i["type"] == "danmaku.message" and i["data"]["text"] == "back")
        assert items[-1]["seq"] == 1  # a new epoch after Redis lost everything
        late = Viewer(b.url, "late2")
        await late.connect()
        assert (await late.call("join", {"room": "outage"}))["ok"]
        await late.close()
    finally:
        for viewer in (here, there, host):
            await viewer.close()


async def test_the_dashboard_counts_every_nodes_viewers_and_orders(
    tmp_path: Path, redis_cluster: RedisCluster
) -> None:
    """A host on one node, viewers on another: online, viewers and orders are every node's."""
    cluster = Cluster(tmp_path, 2, redis_cluster)
    a, b = cluster.nodes
    host, fans = Viewer(a.url, "dash-host", "host"), [Viewer(b.url, f"dash-fan{n}") for n in range(2)]
    try:
        for viewer in (host, *fans):
            await viewer.connect()
            await viewer.join("dash")
        now = (await host.call("time", {}))["server_time"]
        schedule = {"room": "dash", "sku": "t", "title": "Tea", "price": 2.5, "stock": 9, "per_user_limit": 2}
        sale = await host.call("sale.schedule", {**schedule, "starts_at": int(now), "duration_s": 60})
        for fan in fans:
            buy = {"room": "dash", "sale": sale["sale"], "qty": 2, "request_id": "r"}
            assert (await fan.call("sale.buy", buy))["ok"]

        def counted(item: dict[str, Any]) -> bool:
            data = item["data"] if item["type"] == "dashboard.stats" else {}
            orders = data.get("figures", {}).get("sale", {}).get("orders")
            return (data.get("online"), data.get("viewers"), orders) == (3, 2, 2)

        [stats, *_] = reversed(await host.wait_for(counted, timeout=10))
        assert stats["data"]["figures"]["sale"]["gmv"] == "10.00" and stats["data"]["conversion"] == 1.0
        assert all(fan.of_type("dashboard.stats") == [] for fan in fans)
    finally:
        for viewer in (host, *fans):
            await viewer.close()
        cluster.stop()
