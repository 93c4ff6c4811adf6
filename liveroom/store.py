"""The Store seam: counters and durable records, behind one interface per backend.

Plugins reach it only through their context; the core never imports a backend's client.
Implementations: `MemoryStore` (tests and throwaway nodes), `EmbeddedStore` (one node:
counters and records in SQLite), and the Redis store (scale-out). All pass the
conformance suite in `tests/test_store_conformance.py`.

Guarantees every implementation gives:

* **Counters** are atomic: concurrent `incr` calls never lose an update, and durable like
  records: when `incr` returns, the increment survives a kill of the process (SIGKILL) in
  the embedded and Redis (AOF) stores. Each `incr` is a write (a commit share, a round
  trip): count hot events in memory and add them up once per interval.
* **Records** are written exactly once per `(kind, key)`: a second `put_record` with the
  same key writes nothing and returns the record already stored, so a retried command
  (same idempotency key) gets the same answer.
* **Durability.** When `put_record` returns, the record survives a kill of the process
  (SIGKILL) in the embedded and Redis (AOF) stores. `MemoryStore` keeps nothing.
* **Stock** is decided atomically, in ONE operation (`take_stock`: idempotency by
  `(pool, user, request_id)`, the per-user limit, then the units left), and the order is a
  durable record before `take_stock` returns. Stock never goes below zero. After a restart
  the pool is rebuilt from its durable definition and orders, so a kill neither loses an
  acknowledged order nor sells a unit twice. (The Redis store does the same in one Lua
  script over the same keys.)
* **Counters can be set** (`set_counter`): a cursor or a reset, durable like `incr`.
* **The awake index** (`set_awake` / `awake_rooms`): the rooms whose interaction state has
  something pending that must happen even with nobody there (a poll's deadline, a sale's
  end). The node that holds such a room marks it, and unmarks it when the room is released;
  after a restart (or, scaled out, an owner's death) the rooms still marked are loaded
  again, so their timers fire. Durable like records.
* **Never blocks the event loop** on disk or network.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Protocol

from liveroom.record import Record
from liveroom.stock import StockLedger, StockOutcome, StockRequest

__all__ = ["MemoryStore", "Record", "StockOutcome", "StockRequest", "Store", "records_of"]


class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None:
        """Flush pending writes, then release resources."""
        ...

    async def incr(self, key: str, by: int = 1) -> int:
        """Add `by` to a counter (created at 0) and return its new value."""
        ...

    async def get_counter(self, key: str) -> int: ...

    async def set_counter(self, key: str, value: int) -> None:
        """Set a counter to `value` (0 resets it)."""
        ...

    async def set_awake(self, room: str, awake: bool) -> None:
        """Mark (or unmark) a room as having pending work (see the awake index above)."""
        ...

    async def awake_rooms(self) -> list[str]:
        """Every room marked awake."""
        ...

    async def hold_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        """Take the lease `name` for `holder`, or renew it if `holder` has it, for `ttl_ms`;
        False while another holder's lease runs. One job (an outbox) runs on one node of a
        cluster: the one whose renewals keep succeeding."""
        ...

    async def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up at once if `holder` has it (a clean stop: no one waits it out)."""
        ...

    async def put_record(self, record: Record) -> tuple[Record, bool]:
        """Store the record unless its `(kind, key)` exists. Returns (stored record, created)."""
        ...

    async def get_record(self, kind: str, key: str) -> Record | None: ...

    async def list_records(
        self, kind: str, room: str | None, after: int = 0, limit: int = 100
    ) -> list[Record]:
        """Records of a kind in a room (None: every room), in write order, with `position > after`."""
        ...

    async def define_stock(
        self, pool: str, room: str, total: int, per_user_limit: int, order_kind: str, created_ms: int
    ) -> None:
        """Create a stock pool durably (idempotent: the first definition of `pool` stays)."""
        ...

    async def take_stock(self, request: StockRequest) -> StockOutcome:
        """Decide one purchase atomically; when "ok", the order record is already durable."""
        ...

    async def stock_remaining(self, pool: str) -> int | None:
        """Units left, or None for an unknown pool."""
        ...


async def records_of(
    store: Store, kind: str, room: str | None, after: int = 0, page: int = 500
) -> AsyncIterator[Record]:
    """Every record of a kind (in a room, or everywhere) after `after`, in write order, a page at a time."""
    while records := await store.list_records(kind, room, after, page):
        for record in records:
            yield record
        after = records[-1].position


class LocalLeases:
    """Leases of one process: a node-local store serves one node, so its leases are in memory."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, float]] = {}  # name -> (holder, expires, monotonic s)

    def hold(self, name: str, holder: str, ttl_ms: int) -> bool:
        now = time.monotonic()
        current = self._held.get(name)
        if current is not None and current[0] != holder and current[1] > now:
            return False
        self._held[name] = (holder, now + ttl_ms / 1000.0)
        return True

    def release(self, name: str, holder: str) -> None:
        current = self._held.get(name)
        if current is not None and current[0] == holder:
            del self._held[name]


class MemoryStore:
    """Everything in process memory: for tests and nodes whose records may be lost."""

    def __init__(self) -> None:
        self._counters: dict[str, int] = {}
        self._records: dict[tuple[str, str], Record] = {}
        self._awake: set[str] = set()
        self.leases = LocalLeases()
        self._stock = StockLedger(self.put_record, self.get_record, self.list_records)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def incr(self, key: str, by: int = 1) -> int:
        value = self._counters.get(key, 0) + by
        self._counters[key] = value
        return value

    async def get_counter(self, key: str) -> int:
        return self._counters.get(key, 0)

    async def set_counter(self, key: str, value: int) -> None:
        self._counters[key] = value

    async def set_awake(self, room: str, awake: bool) -> None:
        if awake:
            self._awake.add(room)
        else:
            self._awake.discard(room)

    async def awake_rooms(self) -> list[str]:
        return sorted(self._awake)

    async def hold_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        return self.leases.hold(name, holder, ttl_ms)

    async def release_lease(self, name: str, holder: str) -> None:
        self.leases.release(name, holder)

    async def put_record(self, record: Record) -> tuple[Record, bool]:
        existing = self._records.get((record.kind, record.key))
        if existing is not None:
            return existing, False
        stored = Record(
            record.kind, record.key, record.room, record.data, record.created_ms, len(self._records) + 1
        )
        self._records[(record.kind, record.key)] = stored
        return stored, True

    async def get_record(self, kind: str, key: str) -> Record | None:
        return self._records.get((kind, key))

    async def list_records(
        self, kind: str, room: str | None, after: int = 0, limit: int = 100
    ) -> list[Record]:
        found = (
            r
            for r in self._records.values()
            if r.kind == kind and (room is None or r.room == room) and r.position > after
        )
        return [record for record, _ in zip(found, range(limit), strict=False)]

    async def define_stock(
        self, pool: str, room: str, total: int, per_user_limit: int, order_kind: str, created_ms: int
    ) -> None:
        await self._stock.define(pool, room, total, per_user_limit, order_kind, created_ms)

    async def take_stock(self, request: StockRequest) -> StockOutcome:
        return await self._stock.take(request)

    async def stock_remaining(self, pool: str) -> int | None:
        return await self._stock.remaining(pool)
