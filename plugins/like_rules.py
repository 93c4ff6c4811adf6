"""Like rules, pure: a per-user allowance of likes over time, and per-minute counts."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["LikeAllowance", "MinuteCounts"]


class LikeAllowance:
    """At most `rate` likes a second per user, `burst` saved up; a tap storm is cut, not refused."""

    def __init__(self, rate: float, burst: int, max_users: int = 200_000) -> None:
        self.rate, self.burst, self._max_users = rate, burst, max_users
        self._users: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def grant(self, user: str, count: int, now_s: float) -> int:
        """How many of `count` likes count now."""
        tokens, stamp = self._users.pop(user, (float(self.burst), now_s))
        tokens = min(float(self.burst), tokens + max(0.0, now_s - stamp) * self.rate)
        granted = min(count, int(tokens))
        self._users[user] = (tokens - granted, now_s)
        if len(self._users) > self._max_users:
            self._users.popitem(last=False)  # the longest idle: its bucket would be full anyway
        return granted


class MinuteCounts:
    """Likes per wall-clock minute, the last `keep` minutes."""

    def __init__(self, keep: int = 60) -> None:
        self._keep = keep
        self._minutes: OrderedDict[int, int] = OrderedDict()

    def add(self, count: int, now_ms: float) -> None:
        minute = int(now_ms // 60_000) * 60_000
        self._minutes[minute] = self._minutes.get(minute, 0) + count
        while len(self._minutes) > self._keep:
            self._minutes.popitem(last=False)

    def series(self) -> list[dict[str, int]]:
        return [{"minute": minute, "count": count} for minute, count in self._minutes.items()]

    def peak(self) -> dict[str, int] | None:
        if not self._minutes:
            return None
        minute = max(self._minutes, key=lambda m: self._minutes[m])
        return {"minute": minute, "count": self._minutes[minute]}
