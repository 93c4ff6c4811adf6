"""Room litter (issue 17): rooms joined once and left are released from every plugin's memory
and every timer, and coupon watch timers start only for watch-time rules still granting.
On the in-process harness (fake clock); the RSS figure is loadtest/room_litter.py."""

from __future__ import annotations

from typing import Any

from liveroom.config import Config, LimitsConfig, RoomConfig
from liveroom.testing import NodeHarness

ROOMS = 300


def mentions(value: Any, rooms: set[str], depth: int = 0) -> set[str]:
    """Room names found among the keys of `value`'s dicts and sets (and its attributes')."""
    found: set[str] = set()
    if depth > 3:
        return found
    if isinstance(value, dict):
        for key in value:
            parts = key if isinstance(key, tuple) else (key,)
            found |= {p for p in parts if isinstance(p, str) and (p in rooms or p.split(" ")[0] in rooms)}
            found |= mentions(value[key], rooms, depth + 1)
    elif isinstance(value, set | frozenset):
        found |= {k for k in value if isinstance(k, str) and k in rooms}
    elif hasattr(value, "__dict__") or hasattr(value, "__slots__"):
        attributes = getattr(value, "__dict__", None) or {
            name: getattr(value, name, None) for name in getattr(value, "__slots__", ())
        }
        for item in attributes.values():
            found |= mentions(item, rooms, depth + 1)
    return found


async def test_rooms_joined_once_and_left_are_released_everywhere() -> None:
    limits = LimitsConfig(commands_per_s=1e6, commands_burst=10**6)
    config = Config(room=RoomConfig(idle_release_s=5), limits=limits)
    fast = {"rate_per_s": 1e6, "burst": 10**6}
    async with NodeHarness(config, plugins={"danmaku": fast, "like": fast}) as h:
        rooms = {f"litter-{n}" for n in range(ROOMS)}
        clients = [await h.connect(f"u{n}") for n in range(6)]
        for n, room in enumerate(sorted(rooms)):
            client = clients[n % len(clients)]
            await client.join(room)
            assert (await client.command("danmaku.send", {"room": room, "text": "hi"}))["ok"]
            assert (await client.command("like.send", {"room": room, "count": 3}))["ok"]
            assert (await client.command("leave", {"room": room}))["ok"]
        held = {plugin.name for plugin in h.node.plugins if mentions(plugin, rooms)}
        assert {"danmaku", "like", "coupon"} <= held  # the inspection sees rooms while they are held
        await h.advance(7, step=0.5)
        assert not [r for r in rooms if r in h.node.rooms]
        assert not [r for r in rooms if h.node.timers.pending_in(r)]
        for plugin in h.node.plugins:
            assert not mentions(plugin, rooms), (plugin.name, sorted(mentions(plugin, rooms))[:5])


async def test_coupon_watch_timers_only_for_rules_still_granting() -> None:
    rule = 'id=w trigger=watch_time minutes=1 budget=1 title="Thanks"'
    async with NodeHarness(plugins={"coupon": {"rules": [rule]}}) as h:
        first, second, third = await h.connect("a"), await h.connect("b"), await h.connect("c")
        await first.join("r")
        assert h.node.timers.pending_in("r") >= 1  # a's watch timer
        await h.advance(61, step=1)
        assert first.of_type("coupon.granted")
        await second.join("r")
        await h.advance(61, step=1)  # the budget (1) is spent: b gets nothing...
        assert not second.of_type("coupon.granted")
        await third.join("r")  # ...and c's join sets no timer for the spent rule
        assert not any(key.startswith("coupon:watch:r:c:") for key in h.node.timers._by_room.get("r", ()))
    async with NodeHarness(plugins={"coupon": {"rules": []}}) as h:
        fan = await h.connect("f")
        await fan.join("quiet")
        assert not [key for key in h.node.timers._by_room.get("quiet", ()) if "coupon" in key]  # no rule


async def test_the_memory_broker_drops_idle_rings_without_reusing_a_seq() -> None:
    from liveroom.memory_broker import MemoryBroker
    from liveroom.testing import FakeClock

    clock = FakeClock()
    broker = MemoryBroker(clock, history_count=100, history_age_s=300)
    await broker.subscribe("old")
    for n in range(3):
        await broker.publish("old", "x", {"n": n})
    await broker.unsubscribe("old")
    clock.advance(301)
    await broker.subscribe("other")  # any later call sweeps: the idle ring is gone
    assert "old" not in broker._rings
    back = await broker.history("old", 2, broker.epoch)
    assert back.reset and back.latest == 3  # a seq from before: reset, never a reused number
    again = await broker.publish("old", "x", {"n": 3})
    assert again.seq == 4
    fresh = await broker.history("new-room", None)
    assert (fresh.latest, fresh.reset) == (3, False)
    assert (await broker.history("new-room", fresh.latest, broker.epoch)).reset is False


async def test_a_ring_made_by_a_publish_to_an_empty_room_is_dropped_too() -> None:
    from liveroom.memory_broker import MemoryBroker
    from liveroom.testing import FakeClock

    clock = FakeClock()
    broker = MemoryBroker(clock, history_count=100, history_age_s=300)
    await broker.publish("nobody-here", "sale.started", {})  # a timer's item, no member
    clock.advance(301)
    await broker.subscribe("elsewhere")
    assert "nobody-here" not in broker._rings
