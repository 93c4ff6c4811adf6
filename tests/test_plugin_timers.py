"""Timers and throttles over a FakeClock: no sleeps."""

from __future__ import annotations

import itertools

from liveroom.testing import FakeClock
from liveroom.timers import Throttle, Timers


async def test_timers_fire_in_order_and_can_be_moved_or_cancelled() -> None:
    clock = FakeClock()
    timers = Timers(clock)
    fired: list[str] = []

    def note(name: str):  # type: ignore[no-untyped-def]
        async def callback(now_ms: float) -> None:
            fired.append(name)

        return callback

    start = clock.now_ms()
    timers.schedule("b", start + 2000, note("b"))
    timers.schedule("a", start + 1000, note("a"))
    timers.schedule("gone", start + 500, note("gone"))
    timers.schedule("moved", start + 100, note("moved"))
    timers.schedule("moved", start + 3000, note("moved"))
    assert timers.cancel("gone") and not timers.cancel("gone")
    assert await timers.fire_due() == 0
    clock.advance(2)
    assert await timers.fire_due() == 2 and fired == ["a", "b"]
    clock.advance(1)
    await timers.fire_due()
    assert fired == ["a", "b", "moved"] and timers.next_due() is None


async def test_a_failing_timer_does_not_stop_the_others() -> None:
    clock = FakeClock()
    timers = Timers(clock)
    fired: list[float] = []

    async def boom(now_ms: float) -> None:
        raise RuntimeError("boom")

    async def fine(now_ms: float) -> None:
        fired.append(now_ms)

    timers.schedule("boom", clock.now_ms(), boom)
    timers.schedule("fine", clock.now_ms(), fine)
    assert await timers.fire_due() == 2 and fired == [clock.now_ms()]


async def test_throttle_emits_at_most_once_per_interval() -> None:
    clock = FakeClock()
    timers = Timers(clock)
    emitted: list[float] = []

    async def emit(key: str) -> None:
        emitted.append(clock.now_ms())

    throttle = Throttle(timers, 500, emit)
    for _ in range(10):
        throttle.touch("room")
        await timers.fire_due()
        clock.advance(0.1)
    throttle.touch("room")
    clock.advance(1)
    await timers.fire_due()
    gaps = [b - a for a, b in itertools.pairwise(emitted)]
    assert len(emitted) >= 2 and all(gap >= 500 for gap in gaps)


async def test_a_throttle_spaces_a_big_rooms_updates_by_its_audience() -> None:
    clock = FakeClock()
    timers = Timers(clock)
    emitted: list[float] = []
    audience = {"small": 10, "big": 5000}

    async def emit(key: str) -> None:
        emitted.append(clock.now_ms())

    throttle = Throttle(timers, 100, emit, audience.__getitem__, writes_per_s=20_000)
    assert throttle.interval_ms("small") == 100  # 10 / 20,000 s is less than its own interval
    assert throttle.interval_ms("big") == 250  # 5,000 members: 20,000 writes a second at most
    for _ in range(40):
        throttle.touch("big", room="big")
        clock.advance(0.05)
        await timers.fire_due()
    gaps = [b - a for a, b in itertools.pairwise(emitted)]
    assert len(emitted) >= 7 and all(gap >= 250 for gap in gaps)
    assert Throttle(timers, 100, emit, audience.__getitem__, writes_per_s=0).interval_ms("big") == 100
