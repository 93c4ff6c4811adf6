"""What only the Redis broker has to prove: several nodes, one order, gaps filled, outages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis import Redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.crc import key_slot
from redis_support import RedisCluster, RedisServer

from liveroom.broker import PresenceReport, Publication
from liveroom.clock import SystemClock
from liveroom.errors import Unavailable
from liveroom.redis_broker import RedisBroker
from liveroom.redis_client import REDIS_ERRORS, connect_redis
from liveroom.redis_subscriber import ChannelSubscriber


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[list[tuple[RedisBroker, list[Publication]]]]:
    made = []
    for _ in range(3):
        broker = RedisBroker(connect_redis(redis_server.url, False), SystemClock(), 100, 60)
        received: list[Publication] = []
        broker.set_handler(received.append)
        await broker.start()
        made.append((broker, received))
    yield made
    for broker, _ in made:
        await broker.close()


async def until(condition: object, timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_three_nodes_see_one_order_once(nodes: list[tuple[RedisBroker, list[Publication]]]) -> None:
    for broker, _ in nodes:
        await broker.subscribe("room")
    await asyncio.gather(
        *(
            broker.publish("room", "t.x", {"from": i, "n": n})
            for n in range(30)
            for i, (broker, _) in enumerate(nodes)
        )
    )
    await until(lambda: all(len(received) == 90 for _, received in nodes))
    orders = [[p.seq for p in received] for _, received in nodes]
    assert orders[0] == list(range(1, 91))
    assert orders[0] == orders[1] == orders[2]
    assert [p.encoded for p in nodes[0][1]] == [p.encoded for p in nodes[2][1]]


async def test_a_lost_subscription_is_filled_from_the_stream(
    nodes: list[tuple[RedisBroker, list[Publication]]], redis_server: RedisServer
) -> None:
    (a, got_a), (b, _), _ = nodes
    await a.subscribe("room")
    await b.publish("room", "t.x", {"n": 0})
    await until(lambda: len(got_a) == 1)
    admin = aioredis.Redis.from_url(redis_server.url)
    await admin.client_kill_filter(_type="pubsub")  # a's subscription drops
    for n in range(1, 6):
        await b.publish("room", "t.x", {"n": n})
    await until(lambda: len(got_a) == 6)
    assert [p.seq for p in got_a] == [1, 2, 3, 4, 5, 6]
    await admin.aclose()


async def test_redis_down_means_unavailable_then_recovery(
    nodes: list[tuple[RedisBroker, list[Publication]]], redis_server: RedisServer
) -> None:
    (a, got_a), (b, _), _ = nodes
    await a.subscribe("room")
    await b.publish("room", "t.x", {"n": 1})
    await until(lambda: len(got_a) == 1)
    redis_server.stop()
    with pytest.raises(Unavailable):
        await b.publish("room", "t.x", {"n": 2})
    with pytest.raises(Unavailable):
        await b.history("room", 0)
    redis_server.start()  # same port, empty (no persistence): a new epoch
    published = await b.publish("room", "t.x", {"n": 3})
    history = await b.history("room", None)
    assert published.seq == 1 and history.latest == 1
    await until(lambda: len(got_a) >= 3, timeout=10)
    # The restarted Redis kept nothing: a new epoch, announced, then its items in order.
    assert got_a[1].type == "room.reset" and got_a[1].seq is None
    assert got_a[2].encoded == published.encoded


async def lose_the_last_write(admin: aioredis.Redis, room: str) -> None:
    """What a promoted replica that lacked its master's last acknowledged write holds: the
    room's Stream and seq counter one item short."""
    meta, stream = f"lr:{{{room}}}:meta", f"lr:{{{room}}}:hist"
    latest = int(await admin.hget(meta, "seq") or 0)
    kept: list[Any] = await admin.xrange(stream, "-", f"{latest - 1}-1") or []
    await admin.delete(stream)  # rebuilt: a Stream never takes an ID below its last one again
    for entry_id, fields in kept:
        await admin.xadd(stream, fields, id=entry_id)
    await admin.hset(meta, "seq", latest - 1)


@pytest.mark.parametrize("subscription", ["live", "dropped"])
async def test_a_seq_given_again_after_lost_writes_is_a_reset_not_a_repeat(
    nodes: list[tuple[RedisBroker, list[Publication]]], redis_server: RedisServer, subscription: str
) -> None:
    """A failover that lost the last write numbers the next item with a seq this node already
    delivered: it is told apart by its content, announced as a reset, and delivered (on the
    live channel, or at the catch-up after a dropped subscription)."""
    (a, got_a), (b, _), _ = nodes
    await a.subscribe("room")
    for n in range(5):
        await b.publish("room", "t.x", {"n": n})
    await until(lambda: len(got_a) == 5)
    admin = aioredis.Redis.from_url(redis_server.url)
    await lose_the_last_write(admin, "room")
    if subscription == "dropped":
        await admin.client_kill_filter(_type="pubsub")
    after = await b.publish("room", "t.x", {"n": "after"})
    assert after.seq == 5
    await until(lambda: len(got_a) == 7)
    assert got_a[5].type == "room.reset" and got_a[5].seq is None
    assert got_a[6].encoded == after.encoded
    await b.publish("room", "t.x", {"n": "next"})  # and on from there, once
    await until(lambda: len(got_a) == 8)
    assert got_a[7].seq == 6
    await asyncio.sleep(0.2)
    assert len(got_a) == 8
    await admin.aclose()


async def test_presence_adds_up_across_nodes_and_forgets_dead_ones(
    nodes: list[tuple[RedisBroker, list[Publication]]],
) -> None:
    (a, _), (b, _), (c, _) = nodes

    def came(*users: str) -> PresenceReport:
        return PresenceReport(users, (), len(users))

    c.presence_ttl_ms = 300  # c will "die": stop reporting
    assert (await a.report_presence({"room": came("u1", "u2")}))["room"] == 2
    # u2 is connected through b too: distinct users, not connections per node
    assert (await b.report_presence({"room": came("u2", "u3", "u4")}))["room"] == 4
    assert (await c.report_presence({"room": came("u5"), "other": came("u1", "u2")})) == {
        "room": 5,
        "other": 2,
    }
    await asyncio.sleep(0.4)  # c's lease ran out: whoever reports next takes its users out
    assert (await a.report_presence({"room": PresenceReport((), (), 2)}))["room"] == 4
    assert (await b.report_presence({"room": PresenceReport((), ("u3",), 2)}))["room"] == 3
    await a.withdraw_presence()  # a stops cleanly: its users leave at once (u2 stays, through b)
    assert (await b.report_presence({"room": came()}))["room"] == 2


async def test_a_failed_handling_does_not_end_the_subscription(redis_server: RedisServer) -> None:
    """A message whose handling fails (its gap's Stream read failed: a new master not ready)
    once stopped the channel's reader for good: the node's viewers received nothing more. Now
    the failure is logged, the catch-up tried again, and the messages after it delivered."""
    redis = connect_redis(redis_server.url, False)
    received: list[bytes] = []
    catch_ups: list[int] = []
    failures = [RuntimeError("the Stream's node is not ready")]

    async def on_message(channel: bytes, data: bytes) -> None:
        if failures:
            raise failures.pop()
        received.append(data)

    async def on_reconnect() -> None:
        catch_ups.append(1)

    subscriber = ChannelSubscriber(redis, on_message, on_reconnect)
    try:
        await subscriber.subscribe("ch")
        await redis.publish("ch", b"first")  # its handling fails
        await until(lambda: not failures)
        await redis.publish("ch", b"second")
        await until(lambda: received == [b"second"] and catch_ups, timeout=10)
    finally:
        await subscriber.close()
        await redis.aclose()


@pytest.fixture
def three_masters(tmp_path: Path) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path / "redis3", masters=3).start()
    yield cluster
    cluster.stop()


async def test_a_channel_whose_slot_lost_its_master_is_placed_again(three_masters: RedisCluster) -> None:
    """A shard channel dropped by the server while no master serves its slot (a promotion
    under way) once ended the reader: redis-py raises SlotNotCoveredError, which is not a
    RedisError. Now the channel waits, unplaced, and is subscribed again once a master
    takes the slot, here another one (the slot deleted everywhere, then added elsewhere)."""
    cluster = three_masters
    redis = connect_redis(cluster.url, True)
    received: list[bytes] = []

    async def on_message(channel: bytes, data: bytes) -> None:
        received.append(data)

    async def on_reconnect() -> None:
        pass

    subscriber = ChannelSubscriber(redis, on_message, on_reconnect)
    channel = "lr:{unplaced}:ch"
    slot = key_slot(b"unplaced")
    try:
        assert isinstance(redis, AsyncRedisCluster)
        await redis.initialize()  # (the broker's first read does it)
        await subscriber.subscribe(channel)
        owner = next(port for port in cluster.ports if _serves(port, slot))
        for port in cluster.ports:  # the slot has no master anywhere: the cluster is down
            with Redis(port=port) as node:
                node.execute_command("CLUSTER", "DELSLOTS", slot)
        await asyncio.sleep(1.5)  # the server dropped the channel; the reader tried to place it
        target = next(port for port in cluster.ports if port != owner)
        with Redis(port=target) as node:
            node.execute_command("CLUSTER", "ADDSLOTS", slot)

        async def published() -> bool:
            with contextlib.suppress(*REDIS_ERRORS):
                await redis.execute_command("SPUBLISH", channel, b"placed")
            return bool(received)

        deadline = asyncio.get_running_loop().time() + 30
        while not await published():
            assert asyncio.get_running_loop().time() < deadline, "the channel was never placed again"
            await asyncio.sleep(0.3)
        assert received[0] == b"placed"
    finally:
        await subscriber.close()
        await redis.aclose()


def _serves(port: int, slot: int) -> bool:
    with Redis(port=port) as node:
        return any(
            first <= slot <= last and int(master[1]) == port
            for first, last, master, *_ in node.cluster("slots")
        )
