"""The in-process Broker: one node, history in memory, delivery by direct call."""

from __future__ import annotations

import secrets
from collections import OrderedDict
from typing import Any

from liveroom.broker import HistorySlice, PresenceReport, Publication, PublicationHandler
from liveroom.clock import Clock
from liveroom.history import HistoryRing
from liveroom.protocol import encode_item

__all__ = ["MemoryBroker"]

MAX_ONCE_KEYS = 100_000  # `once` keys remembered (each also forgotten after the history's age)


class MemoryBroker:
    """Implements `Broker` for one process. History lives as long as the process: a restart
    starts a new epoch, and clients that ask with the old epoch (or a seq from it) get `reset`.

    A room nobody has subscribed to for the history's age has nothing left to serve: its
    ring is dropped (rooms used once are not kept forever). Its seq must still never be
    reused in this epoch, so a ring made again starts above every dropped ring's last seq
    (`_seq_floor`): a client asking with a seq from before gets `reset`, never other items
    under the numbers it saw."""

    def __init__(self, clock: Clock, history_count: int, history_age_s: float) -> None:
        self._clock = clock
        self._history_count = history_count
        self._history_age_ms = history_age_s * 1000.0
        self._rings: dict[str, HistoryRing] = {}
        self._subscribed: set[str] = set()
        self._unsubscribed_at: OrderedDict[str, float] = OrderedDict()  # room -> when (ms), oldest first
        self._seq_floor = 0
        self._handler: PublicationHandler | None = None
        self._once: OrderedDict[tuple[str, str], tuple[int | None, int]] = OrderedDict()
        self.epoch = secrets.token_hex(4)

    def set_handler(self, handler: PublicationHandler) -> None:
        self._handler = handler

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._subscribed.clear()

    async def subscribe(self, room: str) -> None:
        self._subscribed.add(room)
        self._unsubscribed_at.pop(room, None)
        self._drop_idle_rings()

    async def unsubscribe(self, room: str) -> None:
        self._subscribed.discard(room)
        self._unsubscribed_at.pop(room, None)
        self._unsubscribed_at[room] = self._clock.now_ms()
        self._drop_idle_rings()

    def _drop_idle_rings(self) -> None:
        """Rings of rooms unsubscribed for longer than the history's age (amortised O(1))."""
        horizon = self._clock.now_ms() - self._history_age_ms
        idle = self._unsubscribed_at
        while idle and next(iter(idle.values())) < horizon:
            room, _ = idle.popitem(last=False)
            ring = self._rings.pop(room, None)
            if ring is not None:
                self._seq_floor = max(self._seq_floor, ring.latest)

    async def publish(
        self,
        room: str,
        item_type: str,
        data: Any,
        *,
        priority: bool = False,
        history: bool = True,
        once: str | None = None,
    ) -> Publication:
        ts = int(self._clock.now_ms())
        if once is not None:
            seen = self._seen(room, once, ts)
            if seen is not None:
                return Publication(room, seen[0], ts, item_type, b"", priority, repeated=True)
        seq: int | None = None
        ring = None
        if history:
            ring = self._ring(room)
            ring.trim(ts)
            seq = ring.latest + 1
        publication = Publication(room, seq, ts, item_type, encode_item(seq, item_type, ts, data), priority)
        if ring is not None:
            ring.append(publication)
        if once is not None:
            self._once[(room, once)] = (seq, ts)
        if self._handler is not None and room in self._subscribed:
            self._handler(publication)
        return publication

    async def history(self, room: str, since: int | None, epoch: str | None = None) -> HistorySlice:
        ring = self._rings.get(room)
        if epoch is not None and epoch != self.epoch and since is not None:
            # The epoch is part of `since`: another epoch's seq says nothing about this one's.
            return HistorySlice(self.epoch, self._seq_floor if ring is None else ring.latest, [], True)
        if ring is None:  # never used, or dropped: nothing to serve, numbers go on from the floor
            reset = since is not None and since > 0 and since != self._seq_floor
            return HistorySlice(self.epoch, self._seq_floor, [], reset)
        items, reset = ring.since(since, self._clock.now_ms())
        return HistorySlice(self.epoch, ring.latest, items, reset)

    async def report_presence(self, reports: dict[str, PresenceReport]) -> dict[str, int]:
        return {room: report.local for room, report in reports.items()}  # one node: its counts are the totals

    async def withdraw_presence(self) -> None:
        return None

    def _seen(self, room: str, once: str, now_ms: int) -> tuple[int | None, int] | None:
        """(seq, ts) of an earlier publish with this key, if it is remembered."""
        horizon = now_ms - self._history_age_ms
        once_keys = self._once
        while once_keys and (len(once_keys) > MAX_ONCE_KEYS or next(iter(once_keys.values()))[1] < horizon):
            once_keys.popitem(last=False)
        return once_keys.get((room, once))

    def _ring(self, room: str) -> HistoryRing:
        ring = self._rings.get(room)
        if ring is None:
            ring = self._rings[room] = HistoryRing(self._history_count, self._history_age_ms)
            ring.latest = self._seq_floor  # above every dropped ring's seq: none is reused
            if room not in self._subscribed:  # published to with nobody here (a timer): idle
                self._unsubscribed_at.setdefault(room, self._clock.now_ms())
        return ring
