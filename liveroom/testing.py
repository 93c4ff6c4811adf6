"""Helpers for testing liveroom and its plugins: a clock that moves only when told."""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """A `Clock` for tests: time stands still until `advance` moves it (no sleeps)."""

    def __init__(self, start_ms: float = 1_700_000_000_000.0) -> None:
        self._now_ms = start_ms
        self._monotonic = 0.0

    def now_ms(self) -> float:
        return self._now_ms

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, ms: float) -> None:
        self._now_ms += ms
        self._monotonic += ms / 1000.0
