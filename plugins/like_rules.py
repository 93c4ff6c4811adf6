"""Like rules, pure: a per-user allowance of likes over time, likes waiting to be stored,
and per-minute counts."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = [
    "MINUTE_MS",
    "MinuteCounts",
    "PendingLikes",
    "UnflushedLikes",
    "minute_of",
    "minutes_back",
]

MINUTE_MS = 60_000


def minute_of(now_ms: float) -> int:
    """The start of the wall-clock minute `now_ms` falls in."""
    return int(now_ms // MINUTE_MS) * MINUTE_MS


def minutes_back(now_ms: float, keep: int) -> list[int]:
    """The starts of the last `keep` minutes, oldest first, the current one last."""
    current = minute_of(now_ms)
    return [current - MINUTE_MS * n for n in range(keep - 1, -1, -1)]


@dataclass(slots=True)
class PendingLikes:
    """A room's likes acknowledged but not stored yet: the total and its per-minute split."""

    total: int = 0
    minutes: dict[int, int] = field(default_factory=dict)


class UnflushedLikes:
    """Likes counted in memory between two writes to the store, per room.

    A tap `add`s here (no I/O). A flush reads `pending`, writes it, and then marks each part
    it wrote as `stored`: what was added meanwhile, or what failed to write, stays pending
    for the next flush, and the room's total (store + pending) never moves back."""

    def __init__(self) -> None:
        self._rooms: dict[str, PendingLikes] = {}

    def add(self, room: str, count: int, now_ms: float) -> None:
        pending = self._rooms.setdefault(room, PendingLikes())
        pending.total += count
        minute = minute_of(now_ms)
        pending.minutes[minute] = pending.minutes.get(minute, 0) + count

    def pending(self, room: str) -> PendingLikes:
        """A copy of what the room has pending (empty if nothing)."""
        found = self._rooms.get(room)
        return PendingLikes() if found is None else PendingLikes(found.total, dict(found.minutes))

    def stored_total(self, room: str, count: int) -> None:
        self._rooms[room].total -= count
        self._drop_if_empty(room)

    def stored_minute(self, room: str, minute: int, count: int) -> None:
        minutes = self._rooms[room].minutes
        minutes[minute] -= count
        if not minutes[minute]:
            del minutes[minute]
        self._drop_if_empty(room)

    def rooms(self) -> list[str]:
        return list(self._rooms)

    def _drop_if_empty(self, room: str) -> None:
        pending = self._rooms[room]
        if not pending.total and not pending.minutes:
            del self._rooms[room]


class MinuteCounts:
    """Likes per wall-clock minute, the last `keep` minutes."""

    def __init__(self, keep: int = 60) -> None:
        self._keep = keep
        self._minutes: OrderedDict[int, int] = OrderedDict()

    def add(self, count: int, now_ms: float) -> None:
        minute = minute_of(now_ms)
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
