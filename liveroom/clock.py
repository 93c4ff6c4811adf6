"""Time, injected. Rules take `now` from a `Clock`; tests drive a `FakeClock` instead of sleeping."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    def now_ms(self) -> float:
        """Wall-clock milliseconds since the epoch (what clients see as `server_time`)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (durations, rate limits)."""
        ...


class SystemClock:
    def now_ms(self) -> float:
        return time.time() * 1000.0

    def monotonic(self) -> float:
        return time.monotonic()
