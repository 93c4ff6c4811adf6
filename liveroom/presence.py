"""Presence: how many distinct users each room has, on this node and everywhere.

Every `online_interval_ms` the node reports, for each room whose members changed, which
users came and which left through it (the difference from its last report), and the broker
answers with each room's distinct users across live nodes: a user connected through two
nodes counts once (a one-node broker answers with the local counts). A changed total goes
to the room's local members as `room.online` (an ephemeral item, `seq: null`). Every few
seconds every room is reported again with all its users (repeats count once), which keeps
the node's lease alive in a shared broker and puts the users back after Redis lost them; a
killed node stops reporting and drops out of the totals when its lease runs out; a node that
stops cleanly withdraws at once (`Broker.withdraw_presence`).
If the broker cannot be reached, the local counts stand in for the totals.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from liveroom.broker import Broker, PresenceReport, Publication
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
        self._reported: dict[str, set[str]] = {}  # room -> the users the broker has from here
        self._lock = asyncio.Lock()  # one report at a time: each is a difference from the last
        self._round: asyncio.Future[None] | None = None  # the next `flush`, joiners waiting on it
        self._flushing: set[asyncio.Task[None]] = set()

    def changed(self, room_id: str) -> None:
        """A member came or went: report the room in the next round (0 if it emptied)."""
        self._changed.add(room_id)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                async with self._lock:
                    await self.report()
            except Exception:  # presence must never stop; the next round tries again
                log.exception("presence round failed")

    async def flush(self) -> None:
        """Report what changed now rather than at the next round (a join through one of a
        machine's workers waits for it, so its `online` and every later joiner's, through any
        worker, count it). Joins that come while a report is on its way share the next one."""
        if self._round is None:
            loop = asyncio.get_running_loop()
            self._round = loop.create_future()
            task = loop.create_task(self._flush_round(self._round))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)
        await asyncio.shield(self._round)

    async def _flush_round(self, done: asyncio.Future[None]) -> None:
        try:
            async with self._lock:
                if self._round is done:
                    self._round = None  # joiners from now on wait for the round after this one
                await self.report()
        except Exception:
            log.exception("presence round failed")
        finally:
            if self._round is done:
                self._round = None
            if not done.done():
                done.set_result(None)

    async def report(self) -> None:
        now = self._clock.monotonic()
        wanted = set(self._changed)
        refresh = now >= self._next_refresh
        if refresh:
            wanted.update(self._rooms)
            wanted.update(self._reported)
            self._next_refresh = now + self._refresh_s
        if not wanted:
            return
        self._changed.clear()
        current = {room_id: self._users(room_id) for room_id in wanted}
        reports = {}
        for room_id, users in current.items():
            before = self._reported.get(room_id, set())
            joined = users if refresh else users - before
            reports[room_id] = PresenceReport(sorted(joined), sorted(before - users), len(users))
        try:
            totals = await asyncio.wait_for(self._broker.report_presence(reports), self._interval_s * 4)
        except (Unavailable, TimeoutError):
            # The local view is better than none; the same changes go again next round (a
            # report the broker did take meanwhile is taken again as a no-op).
            self._changed.update(wanted)
            totals = {room_id: len(users) for room_id, users in current.items()}
        else:
            for room_id, users in current.items():
                if users:
                    self._reported[room_id] = users
                else:
                    self._reported.pop(room_id, None)
        for room_id, total in totals.items():
            room = self._rooms.get(room_id)
            if room is not None:
                self._announce(room, total, len(current[room_id]))

    def _users(self, room_id: str) -> set[str]:
        room = self._rooms.get(room_id)
        return set() if room is None else set(room.users)

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
