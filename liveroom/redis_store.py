"""The Redis Store: counters, durable records and atomic stock shared by every node.

Layout. All records of one kind share the hash tag `{rec:<kind>}` (one Redis Cluster slot),
so one Lua script can check idempotency, decide stock and write the order together:

* `<p>:{rec:K}:data`       hash  key -> the record (msgpack)
* `<p>:{rec:K}:log`        stream, one entry per record in write order (id = position)
* `<p>:{rec:K}:room:<room>` sorted set of keys by position, for listing a room's records
* `<p>:{rec:K}:pool:<id>`  hash  total, limit, taken, room (a stock pool whose orders are K)
* `<p>:{rec:K}:pool:<id>:users` hash user -> units bought
* `<p>:{pools}`            hash  pool id -> order kind (read once per pool, then cached)
* `<p>:{c:<key>}`          a counter
* `<p>:{rooms}:awake`       set of rooms with pending work (the awake index)
* `<p>:{lease:<name>}`     a lease: its holder, expiring (PX) unless renewed

Durability is Redis's: run it with `appendonly yes` and `appendfsync always` for commerce
data (`everysec` may lose the last second if Redis itself dies). Redis unreachable: a read,
or a write that never left, raises `Unavailable` (nothing was done); a write sent without
an answer in time raises `OutcomeUnknown` (see liveroom.redis_client). Nothing is
half-done, since each write is one script, and every write is idempotent by its key, so a
retry converges.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from liveroom.record import Record
from liveroom.redis_client import MAX_IN_FLIGHT, REDIS_ERRORS, backend_failure
from liveroom.redis_lease import HOLD_LEASE, RELEASE_LEASE
from liveroom.stock import POOL_KIND, StockOutcome, StockRequest, order_key

__all__ = ["RedisStore"]

# Shared by both scripts: write a record unless its key exists. KEYS[1..4]: data, log, room
# index, position counter. The position is the record's place in the kind's log.
_WRITE_RECORD = """
local function write_record(key, blob_without_position)
  local existing = redis.call('HGET', KEYS[1], key)
  if existing then return {0, existing} end
  local position = redis.call('INCR', KEYS[4])
  redis.call('XADD', KEYS[2], position .. '-1', 'k', key)
  local blob = blob_without_position .. struct_position(position)
  redis.call('HSET', KEYS[1], key, blob)
  redis.call('ZADD', KEYS[3], position, key)
  return {1, blob}
end
"""
# The position is appended as a msgpack uint64 after the record's 5-element prefix array
# header was written for 6 elements: Lua has no msgpack, so the client lays out the bytes.
_POSITION = """
local function struct_position(position)
  local bytes = {}
  for i = 7, 0, -1 do bytes[#bytes + 1] = string.char(math.floor(position / (256 ^ i)) % 256) end
  return '\\207' .. table.concat(bytes)
end
"""

_PUT_RECORD = (
    _POSITION
    + _WRITE_RECORD
    + """
return write_record(ARGV[1], ARGV[2])
"""
)

# KEYS: data, log, room index, position, pool, pool users. ARGV: order key, blob, user, qty.
_TAKE_STOCK = (
    _POSITION
    + _WRITE_RECORD
    + """
local existing = redis.call('HGET', KEYS[1], ARGV[1])
local total = tonumber(redis.call('HGET', KEYS[5], 'total'))
if not total then return {'unknown_pool', false, 0} end
local taken = tonumber(redis.call('HGET', KEYS[5], 'taken') or '0')
if existing then return {'duplicate', existing, total - taken} end
local qty = tonumber(ARGV[4])
local mine = tonumber(redis.call('HGET', KEYS[6], ARGV[3]) or '0')
if mine + qty > tonumber(redis.call('HGET', KEYS[5], 'limit')) then
  return {'limit_reached', false, total - taken}
end
if taken + qty > total then return {'sold_out', false, total - taken} end
redis.call('HINCRBY', KEYS[5], 'taken', qty)
redis.call('HINCRBY', KEYS[6], ARGV[3], qty)
local written = write_record(ARGV[1], ARGV[2])
return {'ok', written[2], total - taken - qty}
"""
)

# KEYS: pool, pools map. ARGV: pool id, total, limit, room, order kind. First definition stays.
_DEFINE_STOCK = """
if redis.call('HSETNX', KEYS[1], 'total', ARGV[2]) == 1 then
  redis.call('HSET', KEYS[1], 'limit', ARGV[3], 'room', ARGV[4], 'taken', 0)
end
return 1
"""


class RedisStore:
    """Implements `Store` over Redis (a single server or a cluster)."""

    def __init__(self, redis: Redis | RedisCluster, prefix: str = "lr") -> None:
        self._redis = redis
        self._prefix = prefix
        self._kinds: dict[str, str] = {}
        # A cluster client fails (MaxConnectionsError) rather than waits when a burst needs
        # more connections than its pool has: queue here instead.
        self._gate = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._put = redis.register_script(_PUT_RECORD)
        self._take = redis.register_script(_TAKE_STOCK)
        self._define = redis.register_script(_DEFINE_STOCK)
        self._hold = redis.register_script(HOLD_LEASE)
        self._release = redis.register_script(RELEASE_LEASE)

    async def start(self) -> None:
        await self._call(self._redis.ping, write=False)

    async def close(self) -> None:
        await self._redis.aclose()

    # -- counters -----------------------------------------------------------------------

    async def incr(self, key: str, by: int = 1) -> int:
        return int(
            await self._call(lambda: self._redis.incrby(f"{self._prefix}:{{c:{key}}}", by), write=True)
        )

    async def set_counter(self, key: str, value: int) -> None:
        await self._call(lambda: self._redis.set(f"{self._prefix}:{{c:{key}}}", value), write=True)

    async def set_awake(self, room: str, awake: bool) -> None:
        key = f"{self._prefix}:{{rooms}}:awake"
        await self._call(
            lambda: self._redis.sadd(key, room) if awake else self._redis.srem(key, room), write=True
        )

    async def hold_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        key = f"{self._prefix}:{{lease:{name}}}"
        held = await self._call(lambda: self._hold(keys=(key,), args=(holder, int(ttl_ms))), write=True)
        return bool(held)

    async def release_lease(self, name: str, holder: str) -> None:
        key = f"{self._prefix}:{{lease:{name}}}"
        await self._call(lambda: self._release(keys=(key,), args=(holder,)), write=True)

    async def awake_rooms(self) -> list[str]:
        members = await self._call(
            lambda: self._redis.smembers(f"{self._prefix}:{{rooms}}:awake"), write=False
        )
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def get_counter(self, key: str) -> int:
        value = await self._call(lambda: self._redis.get(f"{self._prefix}:{{c:{key}}}"), write=False)
        return int(value or 0)

    # -- records ------------------------------------------------------------------------

    def _record_keys(self, kind: str, room: str) -> list[str]:
        tag = f"{self._prefix}:{{rec:{kind}}}"
        return [f"{tag}:data", f"{tag}:log", f"{tag}:room:{room}", f"{tag}:position"]

    async def put_record(self, record: Record) -> tuple[Record, bool]:
        keys = self._record_keys(record.kind, record.room)
        created, blob = await self._call(
            lambda: self._put(keys=keys, args=[record.key, _blob(record)]), write=True
        )
        return _unblob(blob), bool(int(created))

    async def get_record(self, kind: str, key: str) -> Record | None:
        blob = await self._call(lambda: self._redis.hget(self._record_keys(kind, "")[0], key), write=False)
        return None if blob is None else _unblob(blob)

    async def list_records(
        self, kind: str, room: str | None, after: int = 0, limit: int = 100
    ) -> list[Record]:
        data, log, index, _ = self._record_keys(kind, room or "")
        if room is None:
            entries = await self._call(
                lambda: self._redis.xrange(log, min=_stream_id_after(after), count=limit), write=False
            )
            keys = [fields[b"k"] for _, fields in entries]
        else:
            keys = await self._call(
                lambda: self._redis.zrangebyscore(index, f"({after}", "+inf", start=0, num=limit), write=False
            )
        if not keys:
            return []
        blobs = await self._call(lambda: self._redis.hmget(data, keys), write=False)
        return [_unblob(blob) for blob in blobs if blob is not None]

    # -- stock --------------------------------------------------------------------------

    def _pool_keys(self, pool: str, order_kind: str, room: str) -> list[str]:
        tag = f"{self._prefix}:{{rec:{order_kind}}}"
        return [*self._record_keys(order_kind, room), f"{tag}:pool:{pool}", f"{tag}:pool:{pool}:users"]

    async def define_stock(
        self, pool: str, room: str, total: int, per_user_limit: int, order_kind: str, created_ms: int
    ) -> None:
        keys = self._pool_keys(pool, order_kind, room)
        await self._call(
            lambda: self._define(keys=[keys[4]], args=[pool, total, per_user_limit, room, order_kind]),
            write=True,
        )
        await self._call(
            lambda: self._redis.hsetnx(f"{self._prefix}:{{pools}}", pool, f"{order_kind}\n{room}"), write=True
        )
        definition = {"total": total, "per_user_limit": per_user_limit, "order_kind": order_kind}
        await self.put_record(Record(POOL_KIND, pool, room, definition, created_ms))

    async def take_stock(self, request: StockRequest) -> StockOutcome:
        found = await self._pool_kind(request.pool)
        if found is None:
            return StockOutcome("unknown_pool", None, 0)
        order_kind, room = found
        key = order_key(request.pool, request.user, request.request_id)
        data = {**request.data, "pool": request.pool, "user": request.user, "qty": request.qty}
        blob = _blob(Record(order_kind, key, room, data, request.created_ms))
        keys = self._pool_keys(request.pool, order_kind, room)
        status, stored, remaining = await self._call(
            lambda: self._take(keys=keys, args=[key, blob, request.user, request.qty]), write=True
        )
        status = status.decode() if isinstance(status, bytes) else str(status)
        order = _unblob(stored) if stored else None
        return StockOutcome(status, order, int(remaining))  # type: ignore[arg-type]

    async def stock_remaining(self, pool: str) -> int | None:
        found = await self._pool_kind(pool)
        if found is None:
            return None
        total, taken = await self._call(
            lambda: self._redis.hmget(self._pool_keys(pool, found[0], found[1])[4], ["total", "taken"]),
            write=False,
        )
        return None if total is None else int(total) - int(taken or 0)

    async def _pool_kind(self, pool: str) -> tuple[str, str] | None:
        cached = self._kinds.get(pool)
        if cached is None:
            value = await self._call(lambda: self._redis.hget(f"{self._prefix}:{{pools}}", pool), write=False)
            if value is None:
                return None
            cached = self._kinds[pool] = value.decode() if isinstance(value, bytes) else str(value)
        order_kind, _, room = cached.partition("\n")
        return order_kind, room

    async def _call(self, operation: Callable[[], Awaitable[Any]], *, write: bool) -> Any:
        # redis-py's annotations are unions of every reply shape: Any is the honest type here.
        try:
            async with self._gate:
                return await operation()
        except REDIS_ERRORS as exc:
            raise backend_failure(exc, "the store", write=write) from None


def _blob(record: Record) -> bytes:
    """A 6-element msgpack array missing its last element (the position, added by Lua)."""
    head = msgpack.packb(
        [record.kind, record.key, record.room, dict(record.data), record.created_ms], use_bin_type=True
    )
    assert isinstance(head, bytes) and head[0] == 0x95  # fixarray of 5
    return b"\x96" + head[1:]


def _unblob(blob: bytes) -> Record:
    kind, key, room, data, created_ms, position = msgpack.unpackb(blob, raw=False)
    return Record(kind, key, room, data, created_ms, position)


def _stream_id_after(position: int) -> str:
    """Log entries have ids `<position>-1`: the range that starts after `position`."""
    return f"({position}-1" if position else "-"
