"""The delivery engine: room membership on this node, and one batch per room per tick.

Publications arrive from the broker into their room's pending list. Every tick (or at once
for a priority item) each room with pending items is flushed: its items, through the
room's lanes (see `liveroom.room`), are joined into one `batch` message and one WebSocket
frame, built once, and the same bytes are written to every member: one `transport.write`
per member per flush, no task, queue or allocation per recipient. Connections that cannot
keep up are closed as `slow_consumer`.

The tick stretches under load, between `tick_ms` and `max_tick_ms`: when the process
has been busy more than 60% of the last second it grows by a quarter (and shrinks back
below 30%), and it is never shorter than twice the last flush. A write costs about the
same whatever it carries, so a longer tick under load means fewer, fuller writes; when
the server is idle enough, latency wins and the tick stays short. For the same reason a
room whose frame would be thin (fewer than `fill_items` normal items) skips ticks until
it fills or its oldest item would pass the budget, `max_tick_ms` (`LocalRoom.flush_due`):
the tick adapts per room to the room's rate.

Membership follows the transport: a connection that starts closing (the client went away,
the server dropped it) is detached from every room at once (`detach`), before its queued
commands run and before the next flush, so no flush ever writes to a dead transport. What
a plugin hears of the leave (`on_leave`) comes later, through `leave`. With
`check_members` on (tests), every flush checks that each member is live and logs (and
counts) any that is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

from liveroom.broker import RESET_TYPE, Broker, PresenceReport, Publication
from liveroom.clock import Clock
from liveroom.config import DeliveryConfig, RoomConfig
from liveroom.connection import Connection
from liveroom.errors import ConnectionGone, Unavailable
from liveroom.fanout import FanoutWriter
from liveroom.frames import batch_message, msgpack_batch_message, ws_binary_frame, ws_text_frame
from liveroom.metrics import Metrics
from liveroom.presence import PresenceReporter
from liveroom.protocol import encode_item
from liveroom.room import Lanes, LocalRoom

__all__ = ["CONTROL_PREFIX", "Hub", "JoinResult"]

# Item types of this prefix are the nodes' own (a personal item or a removal for a user
# connected through another node): handled by the node, never delivered to a client.
CONTROL_PREFIX = "lr."

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JoinResult:
    room: LocalRoom
    seq: int
    epoch: str
    missed: list[Publication]
    reset: bool


class Hub:
    def __init__(
        self,
        broker: Broker,
        clock: Clock,
        metrics: Metrics,
        delivery: DeliveryConfig,
        room_config: RoomConfig,
        on_slow: Callable[[Connection], None],
        check_members: bool = False,
        report_joins: bool = False,
    ) -> None:
        self.rooms: dict[str, LocalRoom] = {}
        # One of a machine's workers: a join's presence is reported before it is answered.
        self._report_joins = report_joins
        self._broker = broker
        self._clock = clock
        self._metrics = metrics
        self._tick_s = delivery.tick_ms / 1000.0
        self._max_tick_s = max(delivery.max_tick_ms, delivery.tick_ms) / 1000.0
        self.interval_s = self._tick_s
        self._stretch_s = self._tick_s
        self._load_stamp = time.monotonic()
        self._load_cpu = time.process_time()
        self._lanes = Lanes.from_config(delivery)
        self._on_slow = on_slow  # drops a connection whose deliver said False (its drop_reason)
        self._check_members = check_members
        self._dirty: dict[LocalRoom, None] = {}
        self._fanout = FanoutWriter(delivery.writes_per_slice, metrics, on_slow, self._fanout_done)
        self.presence = PresenceReporter(
            broker,
            clock,
            self.rooms,
            self.deliver_local,
            room_config.online_interval_ms,
            room_config.presence_refresh_s,
        )
        self._urgent: asyncio.Handle | None = None
        self._joining: dict[str, int] = {}
        # Control publications (type `lr.*`: between nodes, never to clients) go here.
        self.on_control: Callable[[Publication], None] = lambda publication: None
        broker.set_handler(self._on_publication)

    # -- membership ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def reserving(self, room_id: str) -> AsyncIterator[LocalRoom]:
        """The room, subscribed and kept (not dropped for want of members) while a join is
        prepared: its `delivered_seq` is where a fresh joiner's `missed` starts."""
        self._joining[room_id] = self._joining.get(room_id, 0) + 1
        try:
            yield await self._ready_room(room_id)
        finally:
            self._joining[room_id] -= 1
            if not self._joining[room_id]:
                del self._joining[room_id]
                room = self.rooms.get(room_id)
                if room is not None and not room.members:
                    await self._drop_room(room_id)

    async def join(
        self,
        connection: Connection,
        room_id: str,
        since: int | None,
        epoch: str | None,
        fresh: bool = False,
    ) -> JoinResult:
        """Enter the room's delivery. `fresh`: a join without `since` whose state was taken
        when delivery stood at `since`: `missed` holds what came after, never a reset."""
        self._joining[room_id] = self._joining.get(room_id, 0) + 1
        try:
            while True:
                room = await self._ready_room(room_id)
                history = await self._broker.history(room_id, since, epoch)
                if self.rooms.get(room_id) is not room:
                    continue  # the room was dropped while we waited: subscribe again
                if history.latest < room.delivered_seq:
                    continue  # items were delivered meanwhile that this history read missed
                if connection.closing:  # it went away while we waited: never a dead member
                    raise ConnectionGone("the connection is closing")
                room.add(connection)
                if history.latest > room.delivered_seq:
                    # Items up to history.latest are in this join's `missed`; with a shared
                    # broker some may still be on their way here: never send them again.
                    room.fresh[connection] = history.latest
                connection.rooms.add(room_id)
                self.presence.changed(room_id)
                if self._report_joins:
                    await self.presence.flush()
                if fresh and history.reset:
                    return JoinResult(room, history.latest, history.epoch, [], False)
                return JoinResult(room, history.latest, history.epoch, history.items, history.reset)
        finally:
            self._joining[room_id] -= 1
            if not self._joining[room_id]:
                del self._joining[room_id]

    def detach(self, connection: Connection) -> None:
        """Stop delivering to a connection that is closing, in every room, at once.

        Its rooms stay in `connection.rooms` until `leave` (the plugins' side, the room's
        release) runs for each of them."""
        for room_id in connection.rooms:
            room = self.rooms.get(room_id)
            if room is not None and room.remove(connection):
                self.presence.changed(room_id)

    async def leave(self, connection: Connection, room_id: str) -> bool:
        """Leave one room; False if the connection was not in it."""
        if room_id not in connection.rooms:
            return False
        connection.rooms.discard(room_id)
        room = self.rooms.get(room_id)
        if room is None:
            return True
        if room.remove(connection):
            self.presence.changed(room_id)
        if not room.members and room_id not in self._joining:
            await self._drop_room(room_id)
        return True

    async def _drop_room(self, room_id: str) -> None:
        del self.rooms[room_id]
        self._metrics.rooms.set(len(self.rooms))
        await self._broker.unsubscribe(room_id)

    async def drop(self, connection: Connection) -> None:
        for room_id in list(connection.rooms):
            await self.leave(connection, room_id)

    async def _ready_room(self, room_id: str) -> LocalRoom:
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = LocalRoom(room_id, self._lanes)
            self._metrics.rooms.set(len(self.rooms))
            try:
                await self._broker.subscribe(room_id)
                latest = (await self._broker.history(room_id, None)).latest
            except BaseException as exc:
                self.rooms.pop(room_id, None)
                room.ready.set_exception(exc)
                room.ready.exception()  # retrieved here; joiners waiting on it re-raise it
                raise
            room.delivered_seq = max(room.delivered_seq, latest)
            await self._count_others(room)
            room.ready.set_result(None)
        else:
            await asyncio.shield(room.ready)
        return room

    async def _count_others(self, room: LocalRoom) -> None:
        """A room new here starts from the users other nodes (workers) have in it, so the
        first joiner's `online` counts them (a report of nothing from here: the broker's
        total). Unreachable: the local count stands in, as in a presence round."""
        with contextlib.suppress(Unavailable, TimeoutError):
            empty = {room.id: PresenceReport((), (), 0)}
            totals = await asyncio.wait_for(self._broker.report_presence(empty), 2.0)
            room.online_total, room.online_reported = totals.get(room.id, 0), 0

    # -- delivery -----------------------------------------------------------------------

    def deliver_local(self, publication: Publication) -> None:
        """Deliver to this node's members only (presence, or publishing while the broker is down)."""
        self._on_publication(publication)

    def _on_publication(self, publication: Publication) -> None:
        room = self.rooms.get(publication.room)
        if room is None:
            return
        if publication.type.startswith(CONTROL_PREFIX):
            self.on_control(publication)
            return
        if publication.type == RESET_TYPE:
            # The broker's seq starts over (a new epoch): nothing delivered so far counts.
            room.delivered_seq = room.pending_seq = 0
            room.fresh.clear()
        room.put(publication, self._clock.monotonic())
        self._dirty[room] = None
        if publication.priority and self._urgent is None:
            self._urgent = asyncio.get_running_loop().call_soon(self._flush_now)

    def send_personal(self, connection: Connection, room: LocalRoom, item_type: str, data: object) -> None:
        """An item for one connection only (`seq: null`), written at once."""
        item = encode_item(None, item_type, int(self._clock.now_ms()), data)
        if not connection.closing and not connection.send_batch(room.id_json, [item]):
            self._on_slow(connection)
        self._metrics.items_sent.inc()
        self._metrics.batches_sent.inc()

    async def run(self) -> None:
        """Tick, and report presence, until cancelled."""
        presence = asyncio.create_task(self.presence.run(), name="liveroom-presence")
        try:
            await self._tick_forever()
        finally:
            presence.cancel()

    async def _tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            next_tick += self.interval_s
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            if loop.time() - next_tick > self.interval_s:
                next_tick = loop.time()  # we fell behind: do not try to catch up in a burst
            try:
                spent = await self.tick(hold=True)
            except Exception:  # one bad tick must not stop delivery
                log.exception("delivery tick failed")
                continue
            self.interval_s = self._next_interval(spent)
            self._metrics.tick_interval.set(self.interval_s)

    def _next_interval(self, spent: float) -> float:
        now = time.monotonic()
        if now - self._load_stamp >= 1.0:
            cpu = time.process_time()
            busy = (cpu - self._load_cpu) / (now - self._load_stamp)
            self._load_stamp, self._load_cpu = now, cpu
            if busy > 0.6:
                self._stretch_s = min(self._max_tick_s, self._stretch_s * 1.25)
            elif busy < 0.3:
                self._stretch_s = max(self._tick_s, self._stretch_s / 1.25)
        return min(self._max_tick_s, max(self._stretch_s, 2.0 * spent))

    async def tick(self, hold: bool = False) -> float:
        """Flush every room; returns the seconds it took. `hold` (the running node's ticks):
        a room whose frame would be thin waits, within its budget (`LocalRoom.flush_due`)."""
        started = self._clock.monotonic()
        self._flush_now(hold)
        spent = self._clock.monotonic() - started
        self._metrics.tick_seconds.observe(spent)
        return spent

    def _flush_now(self, hold: bool = True) -> None:
        self._urgent = None
        dirty, self._dirty = self._dirty, {}
        slow: list[Connection] = []
        now = self._clock.monotonic()
        for room in dirty:
            if self._fanout.busy(room):  # its last flush is still being written: wait for it
                self._dirty[room] = None
                continue
            if hold and not room.flush_due(now, self.interval_s):  # a thin frame: fill it first
                self._dirty[room] = None
                continue
            self._flush(room, now, slow)
            if room.counters:  # held back by the counter rate: try again next tick
                self._dirty[room] = None
        for connection in slow:
            self._on_slow(connection)

    def _flush(self, room: LocalRoom, now: float, slow: list[Connection]) -> None:
        sampled_out = room.sampled_out
        publications = room.take_pending(now)
        if room.sampled_out != sampled_out:
            self._metrics.items_sampled_out.inc(room.sampled_out - sampled_out)
        fresh = room.fresh
        if fresh:  # a joiner's marker lasts until delivery has passed what its join carried
            room.fresh = {c: seen for c, seen in fresh.items() if seen > room.delivered_seq}
        if not publications or not room.members:
            if not room.members:
                room.take_skipped()  # nobody to tell; a joiner starts after them anyway
            return  # what was skipped goes with the next batch
        if self._check_members:
            self._check(room)
        skipped = room.take_skipped()
        message = batch_message(room.id_json, [p.encoded for p in publications], skipped)
        frame = ws_text_frame(message)
        sent = 0
        members: Iterable[Connection] = room.members
        if fresh or room.msgpack_members:  # rare: someone joined this tick, or takes msgpack
            for connection in fresh:
                if connection in room.members:
                    sent += self._deliver_unseen(
                        room, connection, publications, fresh[connection], skipped, slow
                    )
            sent += self._deliver_msgpack(room, publications, fresh, skipped, slow)
            members = [c for c in room.members if c not in fresh and c not in room.msgpack_members]
        # The same bytes to every member, one write each (in slices for a big room).
        sent += self._fanout.send(room, frame, message, members, len(publications), slow)
        self._metrics.items_sent.inc(sent)
        self._metrics.batches_sent.inc(len(room.members))

    def _check(self, room: LocalRoom) -> None:
        """The debug invariant: every member of a room being flushed is live."""
        dead = [c for c in room.members if not c.live]
        if dead:
            self._metrics.invariant_violations.inc(len(dead))
            log.error(
                "room %s: %d member(s) without a live transport at a flush: %s",
                room.id,
                len(dead),
                [c.sid for c in dead],
            )

    def _fanout_done(self, room: LocalRoom) -> None:
        """A big flush is written: what waited behind it goes now if it cannot wait a tick."""
        if room in self._dirty and self._urgent is None and room.urgent:
            self._urgent = asyncio.get_running_loop().call_soon(self._flush_now)

    def flush_all(self) -> None:
        """Write everything pending and queued now (before closing every connection)."""
        self._fanout.drain()
        self._flush_now(hold=False)
        self._fanout.drain()

    def _deliver_unseen(
        self,
        room: LocalRoom,
        connection: Connection,
        publications: list[Publication],
        seen: int,
        skipped: list[list[int]],
        slow: list[Connection],
    ) -> int:
        """For a member that joined this tick: only what its join ack did not already carry."""
        unseen = [p.encoded for p in publications if p.seq is None or p.seq > seen]
        skipped = [r for r in skipped if r[1] > seen]
        if unseen and not connection.deliver(*connection.frames_for(room.id_json, unseen, skipped)):
            slow.append(connection)
        return len(unseen)

    def _deliver_msgpack(
        self,
        room: LocalRoom,
        publications: list[Publication],
        fresh: dict[Connection, int],
        skipped: list[list[int]],
        slow: list[Connection],
    ) -> int:
        """The msgpack members' batch: encoded once for all of them, like the JSON one."""
        members = [c for c in room.msgpack_members if c not in fresh]
        if not members:
            return 0
        message = msgpack_batch_message(room.id_json, [p.encoded for p in publications], skipped)
        frame = ws_binary_frame(message)
        for connection in members:
            if not connection.deliver(frame, message):
                slow.append(connection)
        return len(publications) * len(members)
