"""The Redis Broker: many nodes share rooms through Redis pub/sub and Streams.

* One channel per room; a node subscribes only to rooms with local members.
* One Lua script assigns the room's next `seq`, appends the item to the room's Stream
  (the history, trimmed to `history_count`) and publishes it, atomically, so the order
  on the channel is the order of `seq` and every node delivers the same order.
* Every node, the publisher included, delivers from the channel: no item is delivered
  twice and none ahead of an older one. A gap in `seq` (a message lost while the
  subscription was down) is filled from the Stream before delivery goes on.
* A room's meta hash holds its `seq` counter and `epoch`; when it expires (idle room) the
  room starts a new epoch, and clients that resume with the old one are told `reset`.
* All keys of a room share the hash tag `{room}`, so the room lives on one slot of a
  Redis Cluster, where sharded pub/sub (SPUBLISH/SSUBSCRIBE) is used.
* Redis unreachable: `publish` raises `Unavailable`; the node decides what to do with it.
* A promoted replica may lack the last writes its master acknowledged (Redis replicates
  asynchronously), and then it numbers new items with seqs this node already delivered for
  other items. A seq alone cannot tell, so each node keeps the digests of the last
  `LINEAGE` items it delivered per room and compares them with the Stream at every catch-up
  (and whenever a seq comes again with other content): where they differ, the room's
  history forked, and the node announces `room.reset` and delivers the Stream's items from
  the fork on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Sequence
from typing import Any

import msgpack
import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from liveroom.broker import RESET_TYPE, HistorySlice, PresenceReport, Publication, PublicationHandler
from liveroom.clock import Clock
from liveroom.errors import Unavailable
from liveroom.protocol import assemble_item
from liveroom.redis_client import MAX_IN_FLIGHT, REDIS_ERRORS, backend_failure
from liveroom.redis_subscriber import ChannelSubscriber

__all__ = ["LINEAGE", "RedisBroker"]

log = logging.getLogger(__name__)

LINEAGE = 16  # the last items' digests a node keeps per room, to notice a seq given twice

# KEYS: meta, stream, channel, once key (or the meta key again when there is none). ARGV:
# body, keep in history (0/1), max count, stream ttl (s), meta ttl (s), epoch if new,
# sharded (0/1), once (0/1). Returns {seq, epoch, repeated (0/1)}.
_PUBLISH = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[6]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
if ARGV[8] == '1' then
  local earlier = redis.call('GET', KEYS[4])
  if earlier then return {tonumber(earlier), epoch, 1} end
end
local seq = 0
if ARGV[2] == '1' then
  seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], seq .. '-1', 'p', ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
local message = seq .. ':' .. ARGV[1]
if ARGV[7] == '1' then
  redis.call('SPUBLISH', KEYS[3], message)
else
  redis.call('PUBLISH', KEYS[3], message)
end
if ARGV[8] == '1' then redis.call('SET', KEYS[4], seq, 'EX', ARGV[4]) end
return {seq, epoch, 0}
"""

# KEYS: meta, stream. ARGV: since (or -1), epoch if new, meta ttl, the first seq wanted (at
# most since + 1: a catch-up also reads what it delivered last, to compare). Returns {epoch,
# latest, entries from the first seq wanted on}.
_HISTORY = """
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[2]) == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local latest = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local entries = {}
local since = tonumber(ARGV[1])
local first = tonumber(ARGV[4])
if since >= 0 and first <= latest then
  entries = redis.call('XRANGE', KEYS[2], first .. '-0', '+')
end
return {epoch, latest, entries}
"""


# KEYS: the room's node leases (hash node -> expires ms), its users (hash user -> how many
# nodes it is connected through), this node's users (set). ARGV: node id, now (ms), lease (ms),
# the prefix of a node's users set, keep (ms), gone (0/1), how many joined, the joined users,
# then the left ones. Returns the room's distinct users. A node's lease that ran out is
# cleaned up here by whichever node reports next: its users leave the count.
# (Every key carries the room's hash tag, so the dead node's set, named from the prefix, is on
# the same Redis Cluster slot as the declared keys.)
_PRESENCE = """
local node, now, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local keep, joined = tonumber(ARGV[5]), tonumber(ARGV[7])
for i = 8, 7 + joined do
  if redis.call('SADD', KEYS[3], ARGV[i]) == 1 then redis.call('HINCRBY', KEYS[2], ARGV[i], 1) end
end
for i = 8 + joined, #ARGV do
  if redis.call('SREM', KEYS[3], ARGV[i]) == 1 then
    if redis.call('HINCRBY', KEYS[2], ARGV[i], -1) <= 0 then redis.call('HDEL', KEYS[2], ARGV[i]) end
  end
end
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[1], node, 0)  -- gone: cleaned up below, like a dead node
elseif redis.call('SCARD', KEYS[3]) > 0 then
  redis.call('HSET', KEYS[1], node, now + lease)
else
  redis.call('HDEL', KEYS[1], node)
end
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if tonumber(fields[i + 1]) < now then
    local users = ARGV[4] .. fields[i]
    for _, user in ipairs(redis.call('SMEMBERS', users)) do
      if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then redis.call('HDEL', KEYS[2], user) end
    end
    redis.call('DEL', users)
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], keep) end
return redis.call('HLEN', KEYS[2])
"""


class RedisBroker:
    """Implements `Broker` over Redis; see the module docstring for how."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        clock: Clock,
        history_count: int,
        history_age_s: float,
        *,
        prefix: str = "lr",
        meta_ttl_s: int = 7 * 86400,
        presence_ttl_s: float = 10.0,
        node_id: str | None = None,
    ) -> None:
        self._redis = redis
        self._clock = clock
        self._history_count = max(1, history_count)
        self._history_age_ms = history_age_s * 1000.0
        self._prefix = prefix
        self._meta_ttl_s = max(1, int(meta_ttl_s))
        self._stream_ttl_s = max(1, int(history_age_s) + 1)
        self._sharded = isinstance(redis, RedisCluster)
        self.node_id = node_id or secrets.token_hex(4)
        self._handler: PublicationHandler | None = None
        self._subscriber = ChannelSubscriber(redis, self._receive, self._recover_all)
        self._last_seq: dict[str, int] = {}
        # room -> (seq, digest of its body) of the last items delivered: see the docstring.
        self._lineage: dict[str, deque[tuple[int, int]]] = {}
        self._epochs: dict[str, str] = {}
        self._gate = asyncio.Semaphore(MAX_IN_FLIGHT)  # see RedisStore: cluster pools do not wait
        self._publish = redis.register_script(_PUBLISH)
        self._history = redis.register_script(_HISTORY)
        self._presence = redis.register_script(_PRESENCE)
        self.presence_ttl_ms = int(presence_ttl_s * 1000)
        self._present: set[str] = set()  # rooms this node reported users in

    def set_handler(self, handler: PublicationHandler) -> None:
        self._handler = handler

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self._subscriber.close()
        await self._redis.aclose()

    # -- keys ---------------------------------------------------------------------------

    def _keys(self, room: str) -> tuple[str, str, str]:
        tag = f"{self._prefix}:{{{room}}}"
        return f"{tag}:meta", f"{tag}:hist", f"{tag}:ch"

    # -- publish / history ---------------------------------------------------------------

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
        data_json = orjson.dumps(data)
        body = msgpack.packb([item_type, ts, data_json, priority, self.node_id], use_bin_type=True)
        args = [
            body,
            int(history),
            self._history_count,
            self._stream_ttl_s,
            self._meta_ttl_s,
            secrets.token_hex(4),
            int(self._sharded),
            int(once is not None),
        ]
        meta, stream, channel = self._keys(room)
        keys = (meta, stream, channel, meta if once is None else f"{self._prefix}:{{{room}}}:once:{once}")
        try:
            async with self._gate:
                seq, _, repeated = await self._publish(keys=keys, args=args)
        except REDIS_ERRORS as exc:
            raise backend_failure(exc, "the room bus", write=True) from None
        seq_or_none = int(seq) or None
        if repeated:
            return Publication(room, seq_or_none, ts, item_type, b"", priority, repeated=True)
        return Publication(
            room, seq_or_none, ts, item_type, assemble_item(seq_or_none, item_type, ts, data_json), priority
        )

    async def history(self, room: str, since: int | None, epoch: str | None = None) -> HistorySlice:
        first = 1 if since is None else since + 1
        current_epoch, latest, entries = await self._read_history(room, since, first)
        return self._slice(room, since, epoch, current_epoch, latest, entries)

    async def _read_history(
        self, room: str, since: int | None, first: int
    ) -> tuple[str, int, list[tuple[int, bytes]]]:
        """The room's epoch, latest seq, and its Stream's (seq, body) from `first` on."""
        meta, stream, _ = self._keys(room)
        try:
            async with self._gate:
                current, latest, entries = await self._history(
                    keys=(meta, stream),
                    args=(-1 if since is None else since, secrets.token_hex(4), self._meta_ttl_s, first),
                )
        except REDIS_ERRORS as exc:
            raise Unavailable(f"the room history is unreachable: {exc}") from None
        current_epoch = current.decode() if isinstance(current, bytes) else str(current)
        return current_epoch, int(latest), [self._entry(entry) for entry in entries]

    def _slice(
        self,
        room: str,
        since: int | None,
        epoch: str | None,
        current_epoch: str,
        latest: int,
        entries: list[tuple[int, bytes]],
    ) -> HistorySlice:
        """What `history` answers, from what `_read_history` read."""
        if since is None:
            return HistorySlice(current_epoch, latest, [], False)
        # The epoch is part of `since`: a seq of another epoch says nothing about this one's,
        # even when the numbers happen to match (Redis restarted empty and counted up again).
        if since > latest or (epoch is not None and epoch != current_epoch):
            return HistorySlice(current_epoch, latest, [], True)
        if since == latest:
            return HistorySlice(current_epoch, latest, [], False)
        horizon = self._clock.now_ms() - self._history_age_ms
        publications = (self._publication(room, seq, body) for seq, body in entries if seq > since)
        items = [p for p in publications if p.ts >= horizon]
        if not items or items[0].seq != since + 1:
            return HistorySlice(current_epoch, latest, [], True)
        return HistorySlice(current_epoch, latest, items, False)

    async def report_presence(self, reports: dict[str, PresenceReport]) -> dict[str, int]:
        """One script call per room (rooms live on different cluster slots), together."""
        rooms = list(reports)
        try:
            async with self._gate:
                totals = await asyncio.gather(*(self._report(room, reports[room], False) for room in rooms))
        except REDIS_ERRORS as exc:
            raise Unavailable(f"presence is unreachable: {exc}") from None
        self._present.update(room for room in rooms if reports[room].local)
        self._present.difference_update(room for room in rooms if not reports[room].local)
        return {room: int(total) for room, total in zip(rooms, totals, strict=True)}

    async def withdraw_presence(self) -> None:
        rooms, self._present = list(self._present), set()
        with contextlib.suppress(*REDIS_ERRORS):
            async with self._gate:
                await asyncio.gather(*(self._report(room, PresenceReport((), (), 0), True) for room in rooms))

    def _report(self, room: str, report: PresenceReport, gone: bool) -> Any:
        tag = f"{self._prefix}:{{{room}}}"
        return self._presence(
            keys=(f"{tag}:online", f"{tag}:users", f"{tag}:on:{self.node_id}"),
            args=(
                self.node_id,
                int(self._clock.now_ms()),
                self.presence_ttl_ms,
                f"{tag}:on:",
                # Far longer than a lease: a dead node's set outlives it until a live node
                # cleans it up; a room every node left is forgotten after this.
                self.presence_ttl_ms * 20,
                int(gone),
                len(report.joined),
                *report.joined,
                *report.left,
            ),
        )

    @staticmethod
    def _entry(entry: Sequence[Any]) -> tuple[int, bytes]:
        """A Stream entry as (seq, body)."""
        entry_id, fields = entry
        seq = int(entry_id.split(b"-")[0])
        body = (
            fields[b"p"]
            if isinstance(fields, dict)
            else dict(zip(fields[::2], fields[1::2], strict=True))[b"p"]
        )
        return seq, body

    @staticmethod
    def _publication(room: str, seq: int | None, body: bytes) -> Publication:
        item_type, ts, data_json, priority, _origin = msgpack.unpackb(body, raw=False)
        return Publication(room, seq, ts, item_type, assemble_item(seq, item_type, ts, data_json), priority)

    # -- subscriptions -------------------------------------------------------------------

    async def subscribe(self, room: str) -> None:
        if room in self._last_seq:
            return
        current = await self.history(room, None)
        self._last_seq[room] = current.latest
        self._epochs[room] = current.epoch
        try:
            await self._subscriber.subscribe(self._keys(room)[2])
        except REDIS_ERRORS as exc:
            del self._last_seq[room]
            raise Unavailable(f"cannot subscribe to the room bus: {exc}") from None

    async def unsubscribe(self, room: str) -> None:
        self._epochs.pop(room, None)
        self._lineage.pop(room, None)
        if self._last_seq.pop(room, None) is not None:
            await self._subscriber.unsubscribe(self._keys(room)[2])

    async def _receive(self, channel: bytes, data: bytes) -> None:
        room = channel.decode()[len(self._prefix) + 2 : -len("}:ch")]
        last = self._last_seq.get(room)
        if last is None:
            return  # unsubscribed meanwhile
        seq_text, _, body = data.partition(b":")
        seq = int(seq_text)
        if seq == 0:
            self._deliver(self._publication(room, None, body))
            return
        if seq <= last:
            # Already delivered (recovered from the Stream), unless this seq was delivered
            # with other content: the history forked (see the docstring).
            if self._delivered_otherwise(room, seq, body):
                await self._recover(room)
            return
        if seq > last + 1:
            await self._recover(room)  # fills last+1 .. seq from the Stream
            if seq <= self._last_seq.get(room, seq):
                return
        self._accept(room, seq, body)

    async def _recover_all(self) -> None:
        for room in list(self._last_seq):
            with contextlib.suppress(Unavailable):
                await self._recover(room)

    def _accept(self, room: str, seq: int, body: bytes) -> None:
        """Deliver the room's item `seq`, the next after what was delivered, and remember it."""
        self._last_seq[room] = seq
        lineage = self._lineage.get(room)
        if lineage is None:
            lineage = self._lineage[room] = deque(maxlen=LINEAGE)
        lineage.append((seq, hash(body)))
        self._deliver(self._publication(room, seq, body))

    def _delivered_otherwise(self, room: str, seq: int, body: bytes) -> bool:
        """This node delivered `seq` of `room` with other content (as far as it remembers)."""
        return any(known == seq and digest != hash(body) for known, digest in self._lineage.get(room, ()))

    async def _recover(self, room: str) -> None:
        last = self._last_seq.get(room)
        if last is None:
            return
        lineage = self._lineage.get(room) or ()
        first = min([last + 1, *(seq for seq, _ in lineage)])
        epoch, latest, entries = await self._read_history(room, last, first)
        stored = dict(entries)
        fork = next((seq for seq, digest in lineage if seq in stored and hash(stored[seq]) != digest), None)
        # Started over or forked: what this node delivered is not the room's history; it
        # says so, and delivers the history from where they part.
        parted = True
        if epoch != self._epochs.get(room, epoch):
            log.warning("room %s: its history started over (epoch %s)", room, epoch)
            self._epochs[room] = epoch
            last = 0
            epoch, latest, entries = await self._read_history(room, last, 1)
        elif fork is not None:
            log.warning("room %s: its history forked at seq %d (a failover lost writes)", room, fork)
            last = fork - 1
        else:
            parted = False
        window = self._slice(room, last, None, epoch, latest, entries)
        if parted:
            self._lineage.pop(room, None)
            self._last_seq[room] = last
            self._announce_reset(room, epoch)
        elif window.reset:
            log.warning("room %s: items were lost beyond the history window", room)
            self._last_seq[room] = window.latest
            self._lineage.pop(room, None)
            self._announce_reset(room, window.epoch)
            return
        bodies = dict(entries)
        for publication in window.items:
            assert publication.seq is not None
            if publication.seq > self._last_seq.get(room, publication.seq):
                self._accept(room, publication.seq, bodies[publication.seq])

    def _announce_reset(self, room: str, epoch: str) -> None:
        """Tell the node (and through it, clients) that seq continuity is broken in this room."""
        ts = int(self._clock.now_ms())
        data = {"epoch": epoch}
        self._deliver(
            Publication(
                room,
                None,
                ts,
                RESET_TYPE,
                assemble_item(None, RESET_TYPE, ts, orjson.dumps(data)),
                priority=True,
            )
        )

    def _deliver(self, publication: Publication) -> None:
        if self._handler is not None:
            self._handler(publication)
