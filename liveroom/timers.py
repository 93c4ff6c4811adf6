"""Timers for plugins: named deadlines on the node's clock, fired by one loop.

A plugin schedules `key` at an absolute server time (`at_ms`); scheduling the same key
again moves it, `cancel(key)` drops it. A timer may belong to a room (`room=`): a room's
timers are dropped together when the room is released (`cancel_room`), and a room with a
*waking* timer pending (one that must fire even with nobody in the room: a deadline, not a
throttle) is reported once through `on_wake(room)`, so the node keeps it in the awake
index. `fire_due(now_ms)` runs every callback whose time has come, each contained (a
raising callback is logged, the others still run). The node drives `run()` on its real
clock; tests call `fire_due` after moving a `FakeClock`.
`Throttle` is the one "at most every N ms" rule (tallies, stock, like totals) built on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable

from liveroom.clock import Clock
from liveroom.errors import CommandError

__all__ = ["Throttle", "TimerCallback", "Timers"]

log = logging.getLogger(__name__)
TimerCallback = Callable[[float], Awaitable[None]]
# The loop never sleeps longer than this, so a wall clock stepping forward is noticed.
MAX_SLEEP_S = 0.25


class Timers:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, str]] = []
        self._live: dict[str, tuple[float, int, TimerCallback]] = {}
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._room_of: dict[str, str] = {}  # key -> its room
        self._by_room: dict[str, set[str]] = {}  # room -> its pending keys
        self._waking: dict[str, set[str]] = {}  # room -> its pending waking keys
        self.on_wake: Callable[[str], None] = lambda room: None

    def schedule(
        self, key: str, at_ms: float, callback: TimerCallback, *, room: str | None = None, wake: bool = True
    ) -> None:
        """Run `callback(now_ms)` once the clock reaches `at_ms` (replacing `key` if set).

        `room`: the timer is the room's (see the module docstring); `wake=False` for one that
        may be lost with the room (a throttle's trailing update)."""
        self._forget(key)
        stamp = next(self._order)
        self._live[key] = (at_ms, stamp, callback)
        heapq.heappush(self._heap, (at_ms, stamp, key))
        if room is not None:
            self._room_of[key] = room
            self._by_room.setdefault(room, set()).add(key)
            if wake:
                waking = self._waking.setdefault(room, set())
                if not waking:
                    self.on_wake(room)
                waking.add(key)
        self._wake.set()

    def cancel(self, key: str) -> bool:
        self._forget(key)
        return self._live.pop(key, None) is not None

    def cancel_room(self, room: str) -> int:
        """Drop every timer of the room; returns how many there were."""
        keys = self._by_room.pop(room, set())
        self._waking.pop(room, None)
        for key in keys:
            self._room_of.pop(key, None)
            self._live.pop(key, None)
        return len(keys)

    def pending_in(self, room: str) -> int:
        """How many timers the room has pending."""
        return len(self._by_room.get(room, ()))

    def waking_in(self, room: str) -> int:
        """How many of them must fire even with nobody in the room."""
        return len(self._waking.get(room, ()))

    def _forget(self, key: str) -> None:
        room = self._room_of.pop(key, None)
        if room is None:
            return
        for index in (self._by_room, self._waking):
            keys = index.get(room)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[room]

    def pending(self, key: str) -> float | None:
        """When `key` will fire, or None if it is not scheduled."""
        entry = self._live.get(key)
        return None if entry is None else entry[0]

    def next_due(self) -> float | None:
        while self._heap:
            at_ms, stamp, key = self._heap[0]
            live = self._live.get(key)
            if live is not None and live[1] == stamp:
                return at_ms
            heapq.heappop(self._heap)  # cancelled or moved: a stale heap entry
        return None

    async def fire_due(self, now_ms: float | None = None) -> int:
        """Run the callbacks due at `now_ms` (default: the clock's now). Returns how many ran."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        fired = 0
        while (due := self.next_due()) is not None and due <= now:
            _, _, key = heapq.heappop(self._heap)
            _, _, callback = self._live.pop(key)
            self._forget(key)
            fired += 1
            try:
                await callback(now)
            except CommandError as exc:  # the store unreachable (a Redis failover): one line
                log.warning("timer %s failed: %s (%s)", key, exc.code, exc)
            except Exception:
                log.exception("timer %s failed", key)
        return fired

    async def run(self) -> None:
        """Fire timers on the clock until cancelled."""
        while True:
            await self.fire_due()
            due = self.next_due()
            delay = MAX_SLEEP_S if due is None else (due - self.clock.now_ms()) / 1000.0
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, min(delay, MAX_SLEEP_S)))


class Throttle:
    """Call `emit(key)` at most once per `interval_ms` per key, trailing: the last change wins.

    Its timers belong to the room given to `touch` (they go with the room, and never keep it
    awake); `forget` drops a key's pending call. Given the room's `audience` (how many are
    online) and `writes_per_s`, the interval also grows with the room: each emit is one
    write to every member, so a 5,000-viewer room's auction price at 10 a second would be
    50,000 writes a second, most of a core, and every ack in the room would wait behind
    them. The interval is then at least `audience / writes_per_s` seconds."""

    def __init__(
        self,
        timers: Timers,
        interval_ms: float,
        emit: Callable[[str], Awaitable[None]],
        audience: Callable[[str], int] | None = None,
        writes_per_s: float = 0.0,
    ) -> None:
        self._timers = timers
        self._interval_ms = interval_ms
        self._emit = emit
        self._audience = audience if writes_per_s > 0 else None
        self._writes_per_s = writes_per_s
        self._last: dict[str, float] = {}

    def interval_ms(self, room: str | None) -> float:
        """The spacing of emits for a key of `room` now."""
        if self._audience is None or room is None:
            return self._interval_ms
        return max(self._interval_ms, 1000.0 * self._audience(room) / self._writes_per_s)

    def touch(self, key: str, room: str | None = None) -> None:
        timer = f"throttle:{id(self)}:{key}"
        if self._timers.pending(timer) is not None:
            return
        now = self._timers.clock.now_ms()
        if len(self._last) > 1024:  # bounded: a key last emitted an interval ago no longer matters
            self._last = {k: t for k, t in self._last.items() if t + self._interval_ms > now}
        at = max(now, self._last.get(key, -1e18) + self.interval_ms(room))

        async def fire(now_ms: float) -> None:
            self._last[key] = now_ms
            await self._emit(key)

        self._timers.schedule(timer, at, fire, room=room, wake=False)

    def forget(self, key: str) -> None:
        self._timers.cancel(f"throttle:{id(self)}:{key}")
        self._last.pop(key, None)
