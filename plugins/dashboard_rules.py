"""Live dashboard rules, pure: who watches a room's dashboard, its peak online, its viewers.

The figures of the other plugins are theirs (`Plugin.figures`); what belongs to the
dashboard itself is what no other plugin sees: the online count's peak, sampled on the
server whether or not anyone watches, the distinct viewers who came (the denominator of
the conversion), and which staff members are present to receive the figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["RoomWatch", "conversion"]


@dataclass(slots=True)
class RoomWatch:
    max_viewers: int = 1_000_000  # distinct viewers remembered; past that the count stops growing
    online: int = 0
    peak_online: int = 0
    peak_at: float | None = None  # server ms
    watchers: set[str] = field(default_factory=set)  # staff user ids present in the room
    viewers: set[str] = field(default_factory=set)  # distinct non-staff users who joined here
    new_viewers: int = 0  # joined here since the room's shared count was last raised
    viewers_everywhere: int = 0  # the shared count (every node's), as last read
    ticking: bool = False

    def joined(self, user_id: str, staff: bool) -> None:
        if staff:
            self.watchers.add(user_id)
        elif user_id not in self.viewers and len(self.viewers) < self.max_viewers:
            self.viewers.add(user_id)
            self.new_viewers += 1

    def take_new_viewers(self) -> int:
        """The viewers to add to the shared count now (and forget)."""
        count, self.new_viewers = self.new_viewers, 0
        return count

    def left(self, user_id: str) -> None:
        self.watchers.discard(user_id)

    def sample(self, online: int, now_ms: float) -> None:
        self.online = online
        if online > self.peak_online:
            self.peak_online, self.peak_at = online, now_ms

    def wire(self) -> dict[str, Any]:
        return {
            "online": self.online,
            "peak_online": self.peak_online,
            "peak_at": self.peak_at,
            "viewers": self.viewers_everywhere,
        }


def conversion(buyers: int, viewers: int) -> float | None:
    """Buyers ÷ viewers (a fraction), None before any viewer came."""
    return None if viewers <= 0 else round(buyers / viewers, 4)
