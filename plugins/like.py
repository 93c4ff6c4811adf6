"""Likes: clients send counts, the server caps each user's rate, one total per room goes out
at most every `total_interval_ms`; per-minute counts and the peak are kept for the dashboard.

Durability. A tap is counted in memory (`UnflushedLikes`) and acknowledged at once; the
room's pending likes are added to the Store's counters (the total and one counter per
minute) on the broadcast tick, at most `total_interval_ms` after the first of them, and
before `like.total` goes out. So a kill of the process loses at most the likes acknowledged
in the last `total_interval_ms` (plus the time of one store write); a clean stop writes
them all. A write that fails (the store unreachable) is retried on the next tick."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from liveroom.errors import RateLimited, Unavailable
from liveroom.plugin import (
    Activity,
    CommandContext,
    CommandSpec,
    Plugin,
    PluginHost,
    QueryContext,
    QuerySpec,
    RoomContext,
)
from liveroom.protocol import RoomId
from liveroom.ratelimit import KeyedBuckets

from .like_rules import MINUTE_MS, MinuteCounts, UnflushedLikes, minutes_back

__all__ = ["LikeConfig", "LikePlugin", "SendPayload"]

log = logging.getLogger(__name__)
SETTLED_MS = 5_000  # a minute over for this long gets no more like writes


def total_key(room: str) -> str:
    return f"like:{room}"


def minute_key(room: str, minute: int) -> str:
    return f"like:{room}:minute:{minute}"


@dataclass(frozen=True, slots=True)
class LikeConfig:
    rate_per_s: float = 20.0  # likes per user per second that count...
    burst: int = 100  # ...with this many saved up
    max_per_command: int = 1000
    total_interval_ms: int = 500  # like.total at most twice a second; likes stored as often
    minutes_kept: int = 60
    max_users: int = 200_000  # users whose allowance is remembered (the longest idle dropped)


@dataclass(frozen=True, slots=True)
class SendPayload:
    room: RoomId
    count: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1


class LikePlugin(Plugin):
    name = "like"
    config_type = LikeConfig
    item_types = ("like.total",)
    config: LikeConfig

    def __init__(self, config: LikeConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        self._allowance = KeyedBuckets(config.rate_per_s, config.burst, config.max_users)
        self._unflushed = UnflushedLikes()
        self._stored: dict[str, int] = {}  # the room's total in the store, as last seen
        self._flushing: dict[str, asyncio.Task[bool]] = {}
        self._settled_minutes: dict[str, dict[int, int]] = {}  # room -> minute -> stored count
        self._locks: dict[str, asyncio.Lock] = {}
        self._throttle = host.throttle(config.total_interval_ms, self._flush_and_publish)

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return (CommandSpec("like.send", SendPayload, self.send, summary="Send likes"),)

    def queries(self) -> Sequence[QuerySpec]:
        return (QuerySpec("likes", self.stats, "The room's like total, per-minute counts and peak"),)

    async def load_room(self, ctx: RoomContext) -> None:
        """The room's total as stored (every like counted before this node held the room)."""
        await self._read_stored(ctx.room)

    def release_room(self, room: str) -> None:
        # Released only when idle, so nothing is pending: a flush keeps its throttle timer.
        for index in (self._stored, self._settled_minutes, self._locks, self._flushing):
            index.pop(room, None)
        self._throttle.forget(room)

    async def snapshot(self, room: str) -> Mapping[str, Any] | None:
        total = self._total(room)
        return None if total == 0 else {"total": total}

    async def send(self, ctx: CommandContext, payload: SendPayload) -> Mapping[str, Any]:
        wanted = min(payload.count, self.config.max_per_command)
        accepted = self._allowance.grant(ctx.caller.user_id, wanted, self.host.clock.monotonic())
        if accepted == 0:
            raise RateLimited(f"at most {self.config.rate_per_s:g} likes a second")
        self._unflushed.add(ctx.room, accepted, ctx.now_ms)
        self._throttle.touch(ctx.room, room=ctx.room)
        await self.host.signals.emit(Activity(ctx.room, ctx.caller, "like", accepted, ctx.now_ms))
        return {"accepted": accepted, "total": self._total(ctx.room)}

    async def stats(self, query: QueryContext) -> Any:
        return await self.figures(query.room, query.now_ms)

    async def figures(self, room: str, now_ms: float) -> Mapping[str, Any] | None:
        """The total and the per-minute counts with the peak minute: the store's (every
        node's likes, kept across restarts) plus this node's likes not yet written."""
        minutes = minutes_back(now_ms, self.config.minutes_kept)
        async with self._writing(room):  # not halfway through a flush: counted once, not 0 or 2 times
            stored_total, stored_minutes = await asyncio.gather(
                self.host.store.get_counter(total_key(room)), self._stored_minutes(room, minutes, now_ms)
            )
            pending = self._unflushed.pending(room)
        counts = MinuteCounts(self.config.minutes_kept)
        for minute, count in zip(minutes, stored_minutes, strict=True):
            if count + pending.minutes.get(minute, 0):
                counts.add(count + pending.minutes.get(minute, 0), minute)
        return {"total": stored_total + pending.total, "per_minute": counts.series(), "peak": counts.peak()}

    async def _stored_minutes(self, room: str, minutes: list[int], now_ms: float) -> list[int]:
        """The store's count of each minute. Minutes over for `SETTLED_MS` get no more writes
        from any node (each flushes every `total_interval_ms`), so they are read once and kept:
        a dashboard asking every second reads one or two counters, not `minutes_kept`."""
        settled = self._settled_minutes.setdefault(room, {})
        for minute in [m for m in settled if m < minutes[0]]:
            del settled[minute]
        wanted = [m for m in minutes if m not in settled]
        read = await asyncio.gather(*(self.host.store.get_counter(minute_key(room, m)) for m in wanted))
        fresh = dict(zip(wanted, read, strict=True))
        for minute, count in fresh.items():
            if minute + MINUTE_MS + SETTLED_MS <= now_ms:
                settled[minute] = count
        return [settled.get(m, fresh.get(m, 0)) for m in minutes]

    async def stop(self) -> None:
        for room in {*self._unflushed.rooms(), *self._flushing}:
            await self._flush(room)
        for room in self._unflushed.rooms():
            log.error("%d likes of room %s could not be stored", self._unflushed.pending(room).total, room)

    def _total(self, room: str) -> int:
        return self._stored.get(room, 0) + self._unflushed.pending(room).total

    async def _read_stored(self, room: str) -> None:
        value = await self.host.store.get_counter(total_key(room))
        # Totals only grow: a read that raced a flush must not move the total back.
        self._stored[room] = max(self._stored.get(room, 0), value)

    async def _flush(self, room: str) -> bool:
        """Write the room's pending likes to the store; True once nothing is left pending.

        The write runs in a task of its own, shielded: a cancelled caller (the timers loop
        stopping) must not leave a write done in the store but not marked done here."""
        task = self._flushing.get(room)
        if task is None or task.done():
            task = self._flushing[room] = asyncio.ensure_future(self._write_pending(room))
        return await asyncio.shield(task)

    def _writing(self, room: str) -> asyncio.Lock:
        """Held while the room's pending likes are written, and while figures are read."""
        lock = self._locks.get(room)
        if lock is None:
            lock = self._locks[room] = asyncio.Lock()
        return lock

    async def _write_pending(self, room: str) -> bool:
        async with self._writing(room):
            pending, store = self._unflushed.pending(room), self.host.store
            try:
                if pending.total:
                    stored = await store.incr(total_key(room), pending.total)
                    self._stored[room] = max(self._stored.get(room, 0), stored)
                    self._unflushed.stored_total(room, pending.total)
                for minute, count in pending.minutes.items():
                    stored = await store.incr(minute_key(room, minute), count)
                    self._unflushed.stored_minute(room, minute, count)
                    settled = self._settled_minutes.get(room, {})
                    if minute in settled:  # written late (after a store outage): keep it true
                        settled[minute] = stored
            except Unavailable:
                return False
            except Exception:  # kept pending and retried, like an unreachable store
                log.exception("storing the likes of room %s failed", room)
                return False
            return True

    async def _flush_and_publish(self, room: str) -> None:
        if not await self._flush(room):
            self._throttle.touch(room, room=room)  # retry on the next tick
        await self.host.services.publish(room, "like.total", {"total": self._total(room)}, history=False)
