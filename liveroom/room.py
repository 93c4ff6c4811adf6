"""A room as this node sees it: local members, and the items waiting for the next flush.

The room also applies the delivery lanes to what it hands the hub, so that every member
gets the same batch (one encoding, one frame for all):

* **priority** items (`Publication.priority`) always pass, and make the hub flush at once;
* **normal** items pass at most `normal_per_s` a second on average (a token bucket with a
  second's worth of burst); past that, a uniform random sample of each flush's normal
  items is kept, so no sender and no moment is favoured. Every member sees the same
  stream, so this room-wide cap is the per-viewer cap. Sampled-out items stay in the
  room's history: a client that rejoins with `since` still gets them;
* **counters** (`counter_types`, e.g. `room.online`): only the latest of each type is
  kept, and they go out at most `counter_updates_per_s` times a second.

A flush costs one write per member whatever the frame carries, so a room whose pending
normal items would make a thin frame (fewer than `fill_items`) holds them for a later
tick, as long as the oldest of them stays within the lane's latency budget
(`max_tick_ms`): see `Lanes.flush_due`. A quiet room's items wait up to the budget; a hot
room fills its frame every tick and goes as before.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass

import orjson

from liveroom.broker import Publication
from liveroom.config import DeliveryConfig
from liveroom.connection import Connection

__all__ = ["Lanes", "LocalRoom"]


@dataclass(frozen=True, slots=True)
class Lanes:
    """The per-room delivery limits, from `[delivery]`."""

    normal_per_s: float = 25.0  # 0: no cap
    counter_interval_s: float = 0.5
    counter_types: frozenset[str] = frozenset({"room.online"})
    fill_items: int = 1  # a frame with fewer normal items waits for a later tick (1: never)
    budget_s: float = 0.1  # ... but no normal item waits longer than this for its flush
    fill_members: int = 0  # ... only in rooms of at least this many members here

    @classmethod
    def from_config(cls, delivery: DeliveryConfig) -> Lanes:
        rate = delivery.counter_updates_per_s
        return cls(
            delivery.normal_per_s,
            1.0 / rate if rate > 0 else 0.0,
            frozenset(delivery.counter_types),
            delivery.fill_items,
            max(delivery.max_tick_ms, delivery.tick_ms) / 1000.0,
            delivery.fill_members,
        )

    def flush_due(self, pending: int, waited_s: float, next_tick_s: float, members: int) -> bool:
        """Whether `pending` normal items, the oldest `waited_s` old, go now or wait a tick.

        They go once they fill a frame, or when waiting for the next tick would take the
        oldest past the budget; in a room of fewer than `fill_members` members, always."""
        if members < self.fill_members or pending >= self.fill_items:
            return True
        return waited_s + next_tick_s > self.budget_s


class LocalRoom:
    __slots__ = (
        "_counter_due",
        "_stamp",
        "_tokens",
        "counters",
        "delivered_seq",
        "fresh",
        "id",
        "id_json",
        "lanes",
        "members",
        "msgpack_members",
        "online_reported",
        "online_sent",
        "online_sent_ms",
        "online_total",
        "pending",
        "pending_seq",
        "pending_since",
        "ready",
        "sampled_out",
        "skipped",
        "urgent",
        "users",
    )

    def __init__(self, room_id: str, lanes: Lanes | None = None) -> None:
        self.id = room_id
        self.id_json = orjson.dumps(room_id)
        self.lanes = lanes or Lanes()
        self.members: dict[Connection, None] = {}
        # The members (also in `members`) that take msgpack: their batches are encoded apart.
        self.msgpack_members: dict[Connection, None] = {}
        self.users: Counter[str] = Counter()
        # Items waiting for the next flush (both lanes, in seq order), the highest seq among
        # them, and the latest item of each counter type.
        self.pending: list[Publication] = []
        self.pending_seq = 0
        # When the oldest pending item arrived, and whether a priority item is pending.
        self.pending_since = 0.0
        self.urgent = False
        self.counters: dict[str, Publication] = {}
        self._counter_due = 0.0
        self._tokens = self.lanes.normal_per_s
        self._stamp = 0.0
        self.sampled_out = 0
        # Inclusive seq ranges left out on purpose since the last batch (see the module doc).
        self.skipped: list[list[int]] = []
        # Members that joined since the last flush, with the seq their join ack's `missed`
        # ended at: the next flush must not send them those items again.
        self.fresh: dict[Connection, int] = {}
        # Highest seq handed to members; a joiner's `missed` ends here, its batches start after.
        self.delivered_seq = 0
        # Presence: the last total across nodes, the local count it was computed with, and
        # the last total sent to members (see liveroom.presence).
        self.online_total = 0
        self.online_reported = 0
        self.online_sent = -1
        self.online_sent_ms = 0.0
        # Done once the broker subscription is up and `delivered_seq` is known.
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def online(self) -> int:
        """Distinct users present on this node."""
        return len(self.users)

    @property
    def online_everywhere(self) -> int:
        """The last total across nodes, moved by what changed here since it was taken."""
        return max(self.online, self.online_total + self.online - self.online_reported)

    def add(self, connection: Connection) -> None:
        if connection not in self.members:
            self.members[connection] = None
            if connection.msgpack:
                self.msgpack_members[connection] = None
            self.users[connection.identity.user_id] += 1

    def remove(self, connection: Connection) -> bool:
        if connection not in self.members:
            return False
        del self.members[connection]
        self.msgpack_members.pop(connection, None)
        self.fresh.pop(connection, None)
        user = connection.identity.user_id
        self.users[user] -= 1
        if self.users[user] <= 0:
            del self.users[user]
        return True

    def put(self, publication: Publication, now: float) -> None:
        """Queue a publication for the next flush, in its lane."""
        if (
            publication.seq is None
            and publication.type in self.lanes.counter_types
            and not publication.priority
        ):
            self.counters[publication.type] = publication
            return
        if not self.pending:
            self.pending_since = now
        self.pending.append(publication)
        self.urgent = self.urgent or publication.priority
        if publication.seq is not None:
            self.pending_seq = publication.seq

    def flush_due(self, now: float, next_tick_s: float) -> bool:
        """Whether this room's flush goes now or waits for a fuller frame (the module doc).

        A priority item, or nothing but counters pending, never waits."""
        if self.urgent or not self.pending:
            return True
        waited = now - self.pending_since
        return self.lanes.flush_due(len(self.pending), waited, next_tick_s, len(self.members))

    def take_pending(self, now: float) -> list[Publication]:
        """What this flush sends: the pending items through the lanes, then due counters."""
        items, self.pending, self.urgent = self.pending, [], False
        self.delivered_seq = max(self.delivered_seq, self.pending_seq)
        if self.lanes.normal_per_s > 0:
            items = self._capped(items, now)
        if self.counters and now >= self._counter_due:
            items.extend(self.counters.values())
            self.counters = {}
            self._counter_due = now + self.lanes.counter_interval_s
        return items

    def _capped(self, items: list[Publication], now: float) -> list[Publication]:
        rate = self.lanes.normal_per_s
        self._tokens = min(rate, self._tokens + max(0.0, now - self._stamp) * rate)
        self._stamp = now
        normal = [index for index, item in enumerate(items) if not item.priority]
        allowed = int(self._tokens)
        if len(normal) <= allowed:
            self._tokens -= len(normal)
            return items
        self._tokens -= allowed
        self.sampled_out += len(normal) - allowed
        dropped = set(normal) - set(random.sample(normal, allowed))
        for index in sorted(dropped):
            seq = items[index].seq
            if seq is not None:
                self._skip(seq)
        return [item for index, item in enumerate(items) if index not in dropped]

    def _skip(self, seq: int) -> None:
        """Note a seq left out on purpose: extend the last range or start one (seqs come in order)."""
        skipped = self.skipped
        if skipped and skipped[-1][1] + 1 == seq:
            skipped[-1][1] = seq
        else:
            skipped.append([seq, seq])

    def take_skipped(self) -> list[list[int]]:
        """The ranges for the batch about to go out (and forget them)."""
        skipped, self.skipped = self.skipped, []
        return skipped
