"""Presence: how many distinct users each room has, on this node and everywhere.

Every `online_interval_ms` the node reports its rooms' local counts to the broker, which
answers with each room's total across live nodes (a one-node broker answers with the
local counts). A changed total goes to the room's local members as `room.online` (an
ephemeral item, `seq: null`). Rooms whose count did not change are still reported every
few seconds, so that the node's lease on its counts stays alive in a shared broker; a
killed node stops reporting and drops out of the totals when its lease runs out.
If the broker cannot be reached, the local counts stand in for the totals.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from liveroom.broker import Broker, Publication
from liveroom.clock import Clock
from liveroom.errors import Unavailable
from liveroom.protocol import encode_item
from liveroom.room import LocalRoom

__all__ = ["PresenceReporter"]

log = logging.getLogger(__name__)

# In a big room every presence update is a write to every member, and during a join storm
# the count changes all the time: send it when it moved by 1% (exact below 100 members),
# and otherwise at least every STALE_MS.
STALE_MS = 10_000.0


def presence_moved(online: int, sent: int, age_ms: float) -> bool:
    return abs(online - sent) * 100 >= max(sent, 100) or age_ms >= STALE_MS


class PresenceReporter:
    def __init__(
        self,
        broker: Broker,
        clock: Clock,
        rooms: dict[str, LocalRoom],
        deliver: Callable[[Publication], None],
        interval_ms: int,
        refresh_s: float,
    ) -> None:
        self._broker = broker
        self._clock = clock
        self._rooms = rooms
        self._deliver = deliver
        self._interval_s = max(0.05, interval_ms / 1000.0)
        self._changed: set[str] = set()
        self._refresh_s = refresh_s
        self._next_refresh = 0.0

    def changed(self, room_id: str) -> None:
        """A member came or went: report the room in the next round (0 if it emptied)."""
        self._changed.add(room_id)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.report()
            except Exception:  # presence must never stop; the next round tries again
                log.exception("presence round failed")

    async def report(self) -> None:
        now = self._clock.monotonic()
        wanted = set(self._changed)
        if now >= self._next_refresh:
            wanted.update(self._rooms)
            self._next_refresh = now + self._refresh_s
        if not wanted:
            return
        self._changed.clear()
        counts = {room_id: self._local(room_id) for room_id in wanted}
        try:
            totals = await asyncio.wait_for(self._broker.report_presence(counts), self._interval_s * 4)
        except (Unavailable, TimeoutError):
            totals = counts  # the local view is better than none
        for room_id, total in totals.items():
            room = self._rooms.get(room_id)
            if room is not None:
                self._announce(room, total, counts[room_id])

    def _local(self, room_id: str) -> int:
        room = self._rooms.get(room_id)
        return 0 if room is None else room.online

    def _announce(self, room: LocalRoom, total: int, local: int) -> None:
        room.online_total, room.online_reported = total, local
        now_ms = self._clock.now_ms()
        if total == room.online_sent or not presence_moved(
            total, room.online_sent, now_ms - room.online_sent_ms
        ):
            return
        room.online_sent, room.online_sent_ms = total, now_ms
        item = encode_item(None, "room.online", int(now_ms), {"count": total})
        self._deliver(Publication(room.id, None, int(now_ms), "room.online", item))
