"""The Broker contract (see liveroom/broker.py), run against every implementation.

The Redis broker joins the `broker` fixture's parameters when it lands; the assertions
are the contract and stay as they are.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from ipc_support import ipc_pair
from redis_support import redis_for

from liveroom.broker import Broker, PresenceReport, Publication
from liveroom.ipc_client import IpcBroker
from liveroom.memory_broker import MemoryBroker
from liveroom.redis_broker import RedisBroker
from liveroom.testing import FakeClock


@pytest.fixture(params=["memory", "ipc", "redis", "redis-cluster"])
async def broker(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Broker]:
    made: Broker
    if request.param == "ipc":  # workers: the bus in the supervisor, reached over a Unix socket
        async with ipc_pair(MemoryBroker(clock, history_count=5, history_age_s=60), None) as (_, channels):
            made = IpcBroker(channels[0])
            await made.start()
            yield made
            await made.close()
        return
    if request.param == "memory":
        made = MemoryBroker(clock, history_count=5, history_age_s=60)
    else:
        client, prefix = redis_for(request, tmp_path)
        made = RedisBroker(client, clock, history_count=5, history_age_s=60, prefix=prefix)
    await made.start()
    yield made
    await made.close()


async def settle(received: list[Publication], count: int) -> None:
    """Delivery may be asynchronous (Redis pub/sub): wait until `count` have arrived."""
    for _ in range(200):
        if len(received) >= count:
            return
        await asyncio.sleep(0.01)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(now_ms=1_000_000)


def collect(broker: Broker) -> list[Publication]:
    received: list[Publication] = []
    broker.set_handler(received.append)
    return received


async def test_seq_is_assigned_in_order_and_delivered_once_in_order(broker: Broker) -> None:
    received = collect(broker)
    await broker.subscribe("a")
    await broker.subscribe("a")  # idempotent: still delivered once
    published = [await broker.publish("a", "t.x", {"n": n}) for n in range(4)]
    assert [p.seq for p in published] == [1, 2, 3, 4]
    await settle(received, 4)
    assert [p.seq for p in received] == [1, 2, 3, 4]
    assert orjson.loads(received[0].encoded) == {
        "seq": 1,
        "type": "t.x",
        "ts": received[0].ts,
        "data": {"n": 0},
    }


async def test_rooms_have_their_own_seq_and_only_subscribed_rooms_arrive(broker: Broker) -> None:
    received = collect(broker)
    await broker.subscribe("a")
    await broker.publish("b", "t.x", {})
    assert (await broker.publish("a", "t.x", {})).seq == 1
    assert (await broker.publish("b", "t.x", {})).seq == 2
    await settle(received, 1)
    await asyncio.sleep(0.05)
    assert [p.room for p in received] == ["a"]
    await broker.unsubscribe("a")
    await broker.publish("a", "t.x", {})
    await asyncio.sleep(0.05)
    assert len(received) == 1


async def test_ephemeral_items_have_no_seq_and_are_not_replayed(broker: Broker) -> None:
    received = collect(broker)
    await broker.subscribe("a")
    await broker.publish("a", "t.keep", {})
    ephemeral = await broker.publish("a", "room.online", {"count": 3}, history=False)
    await settle(received, 2)
    assert ephemeral.seq is None and received[-1].seq is None
    history = await broker.history("a", 0)
    assert [p.type for p in history.items] == ["t.keep"] and history.latest == 1


async def test_history_since_and_reset_by_count_and_age(broker: Broker, clock: FakeClock) -> None:
    for n in range(7):
        await broker.publish("a", "t.x", {"n": n})
    window = await broker.history("a", 4)
    assert [p.seq for p in window.items] == [5, 6, 7] and not window.reset and window.latest == 7
    assert (await broker.history("a", 1)).reset  # seq 2 fell out of the 5-item window
    assert (await broker.history("a", 2)).items[0].seq == 3
    assert (await broker.history("a", None)).items == []
    clock.advance(61)
    aged = await broker.history("a", 6)
    assert aged.reset and aged.items == []
    assert not (await broker.history("a", 7)).reset


async def test_since_from_another_epoch_resets(broker: Broker) -> None:
    await broker.publish("a", "t.x", {})
    current = await broker.history("a", 0)
    assert not current.reset
    assert (await broker.history("a", 0, epoch=current.epoch)).items
    assert (await broker.history("a", 0, epoch="another-epoch")).reset
    # The same seq as the latest, from another epoch (Redis restarted empty and counted up
    # to the same number): still a reset, never "nothing new".
    assert (await broker.history("a", current.latest, epoch="another-epoch")).reset
    assert not (await broker.history("a", current.latest, epoch=current.epoch)).reset
    assert (await broker.history("never-used", 3)).reset


async def test_delivered_bytes_equal_the_published_bytes(broker: Broker) -> None:
    received = collect(broker)
    await broker.subscribe("a")
    published = await broker.publish("a", "t.x", {"text": "弹幕 ✓", "n": [1, 2.5, None]})
    await settle(received, 1)
    assert received[0].encoded == published.encoded
    assert (await broker.history("a", 0)).items[0].encoded == published.encoded


async def test_seq_is_not_reused_after_everyone_unsubscribes(broker: Broker) -> None:
    await broker.subscribe("a")
    await broker.publish("a", "t.x", {})
    await broker.unsubscribe("a")
    assert (await broker.publish("a", "t.x", {})).seq == 2


async def test_priority_flag_travels(broker: Broker) -> None:
    received = collect(broker)
    await broker.subscribe("a")
    await broker.publish("a", "t.x", {}, priority=True)
    await settle(received, 1)
    assert received[0].priority


async def test_presence_totals(broker: Broker) -> None:
    came = {"a": PresenceReport(["u1", "u2", "u3"], [], 3), "b": PresenceReport(["u1"], [], 1)}
    assert await broker.report_presence(came) == {"a": 3, "b": 1}
    assert await broker.report_presence({"a": PresenceReport([], ["u3"], 2)}) == {"a": 2}
    again = {"a": PresenceReport(["u1", "u2"], [], 2)}  # a refresh: every user again, counted once
    assert await broker.report_presence(again) == {"a": 2}
    assert await broker.report_presence({"a": PresenceReport([], ["u1", "u2"], 0)}) == {"a": 0}
    await broker.withdraw_presence()


async def test_a_publish_repeated_with_its_once_key_publishes_nothing(broker: Broker) -> None:
    received = collect(broker)
    await broker.subscribe("a")
    first = await broker.publish("a", "t.x", {"n": 1}, once="req-1")
    again = await broker.publish("a", "t.x", {"n": 1}, once="req-1")
    other_room = await broker.publish("b", "t.x", {"n": 1}, once="req-1")  # keys are per room
    second = await broker.publish("a", "t.x", {"n": 2}, once="req-2")
    assert (first.seq, first.repeated) == (1, False)
    assert (again.seq, again.repeated) == (1, True)
    assert (other_room.seq, other_room.repeated) == (1, False)
    assert (second.seq, second.repeated) == (2, False)
    await settle(received, 2)
    await asyncio.sleep(0.05)
    assert [p.seq for p in received] == [1, 2]
    assert [p.seq for p in (await broker.history("a", 0)).items] == [1, 2]
