"""Helpers for plugin authors' tests: a clock that moves only when told to.

clock = FakeClock()
timers = Timers(clock)
...schedule things...
clock.advance(30)
await timers.fire_due()
"""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """Implements `liveroom.clock.Clock`. Starts at a fixed wall time; `advance` moves both clocks."""

    def __init__(self, now_ms: float = 1_700_000_000_000.0, monotonic: float = 1000.0) -> None:
        self._now_ms = now_ms
        self._monotonic = monotonic

    def now_ms(self) -> float:
        return self._now_ms

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not go back")
        self._now_ms += seconds * 1000.0
        self._monotonic += seconds
