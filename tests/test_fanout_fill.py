"""A thin frame waits for a fuller one, within the lane's budget (`Lanes.flush_due`): as pure
rules over a fake time, then on a node (the harness) whose ticks hold."""

from __future__ import annotations

import statistics

from liveroom.broker import Publication
from liveroom.config import Config, DeliveryConfig
from liveroom.room import Lanes, LocalRoom
from liveroom.testing import NodeHarness

TICK = 0.05
FILL = Lanes(normal_per_s=0, fill_items=4, budget_s=0.1)


def item(seq: int, priority: bool = False) -> Publication:
    return Publication("r", seq, 0, "danmaku.message", b'{"seq":%d}' % seq, priority)


def test_the_rule_fills_a_frame_or_keeps_the_budget() -> None:
    big = 5000  # members
    assert FILL.flush_due(4, 0.0, TICK, big)  # a full frame goes at once
    assert not FILL.flush_due(3, 0.03, TICK, big)  # a thin one waits: 30 + 50 ms is within 100
    assert not FILL.flush_due(1, 0.05, TICK, big)  # 50 + 50 ms: still within
    assert FILL.flush_due(1, 0.051, TICK, big)  # the next tick would take it past the budget
    assert FILL.flush_due(1, 0.001, 0.1, big)  # a tick as long as the budget: every tick flushes
    assert Lanes(fill_items=1).flush_due(1, 0.0, TICK, big)  # 1: the hold is off


def test_a_small_room_never_holds() -> None:
    """A flush to a few hundred members costs a few ms: holding it would add latency for
    nothing (`fill_members`, 1,000 by default)."""
    lanes = Lanes(normal_per_s=0, fill_items=4, budget_s=0.1, fill_members=1000)
    assert lanes.flush_due(1, 0.0, TICK, 999)
    assert not lanes.flush_due(1, 0.0, TICK, 1000)


async def test_priority_or_nothing_but_counters_never_waits() -> None:
    room = LocalRoom("r", FILL)
    assert room.flush_due(0.0, TICK)  # only counters (or nothing) pending
    room.put(item(1), 10.0)
    assert not room.flush_due(10.0, TICK)
    room.put(item(2, priority=True), 10.01)
    assert room.flush_due(10.01, TICK)
    assert [p.seq for p in room.take_pending(10.01)] == [1, 2]
    room.put(item(3), 10.02)
    assert not room.flush_due(10.02, TICK)  # taken: no longer urgent


def waits_in(room: LocalRoom, rate: float, seconds: float = 4.0) -> tuple[list[int], list[float]]:
    """Items at `rate` a second, a tick every 50 ms: (items per frame, each item's wait)."""
    arrived: dict[int, float] = {}
    frames: list[int] = []
    waits: list[float] = []
    seq, now, due = 0, 0.0, TICK
    step = 1.0 / rate
    while now < seconds:
        now = round(now + step, 9)
        while due <= now:  # the ticks before this arrival
            if room.pending and room.flush_due(due, TICK):
                taken = room.take_pending(due)
                frames.append(len(taken))
                waits += [due - arrived[p.seq] for p in taken if p.seq is not None]
            due = round(due + TICK, 9)
        seq += 1
        arrived[seq] = now
        room.put(item(seq), now)
    return frames, waits


async def test_a_quiet_room_fills_its_frames_within_the_budget() -> None:
    frames, waits = waits_in(LocalRoom("r", FILL), rate=50.0)  # 2.5 items a tick
    assert statistics.mean(frames) >= 4.0  # about half the writes of a frame every tick
    assert max(waits) <= 0.1 + 1e-9


async def test_a_hot_room_goes_every_tick() -> None:
    frames, waits = waits_in(LocalRoom("r", FILL), rate=200.0)  # 10 items a tick
    assert len(frames) >= 4.0 / TICK - 1
    assert max(waits) <= TICK + 1e-9


async def test_a_node_holds_a_thin_frame_until_its_budget() -> None:
    config = Config(delivery=DeliveryConfig(tick_ms=50, max_tick_ms=100, fill_items=4, fill_members=1))
    async with NodeHarness(config) as h:
        host, fan = await h.connect("h1", role="host"), await h.connect("u1")
        await host.join("r1")
        await fan.join("r1")
        hub, sender = h.node.hub, h.node.connections.by_sid[fan.sid]
        send = {"room": "r1", "text": "hi"}  # dispatched without the harness's settle (a tick)
        assert (await h.node.dispatcher.dispatch(sender, "danmaku.send", [send]))["ok"]
        await hub.tick(hold=True)
        assert not fan.of_type("danmaku.message")  # one item: a thin frame waits
        assert len(hub.rooms["r1"].pending) == 1
        h.clock.advance(0.06)
        await hub.tick(hold=True)
        assert [m["data"]["text"] for m in fan.of_type("danmaku.message")] == ["hi"]  # 60 + 50 > 100 ms
