"""Atomic stock: one decision per purchase, made in memory, made durable before it is told.

The rules are pure (`StockPool.decide`); `StockLedger` runs them for a store: it rebuilds a
pool from durable records (its definition and its orders), reserves under the event loop's
single thread (no await between check and reserve), writes the order record, and only then
answers. A write that fails releases the reservation; a kill before the write commits
loses only an unacknowledged order, which the rebuild after restart does not count. So a
SIGKILL never loses an acknowledged order and never oversells.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from liveroom.record import Record

__all__ = ["POOL_KIND", "StockLedger", "StockOutcome", "StockPool", "StockRequest", "order_key"]

POOL_KIND = "stock.pool"
StockStatus = Literal["ok", "duplicate", "sold_out", "limit_reached", "unknown_pool"]


@dataclass(frozen=True, slots=True)
class StockRequest:
    pool: str
    user: str
    qty: int
    # Idempotency: the same (pool, user, request_id) always answers with the same order.
    request_id: str
    data: Mapping[str, Any] = field(default_factory=dict)
    created_ms: int = 0


@dataclass(frozen=True, slots=True)
class StockOutcome:
    status: StockStatus
    order: Record | None
    # Units left after this decision (0 once sold out).
    remaining: int


def order_key(pool: str, user: str, request_id: str) -> str:
    return f"{pool}/{user}/{request_id}"


class StockPool:
    """One pool's counts: pure, no I/O."""

    def __init__(self, room: str, total: int, per_user_limit: int, order_kind: str) -> None:
        self.room = room
        self.total = total
        self.per_user_limit = per_user_limit
        self.order_kind = order_kind
        self.taken = 0  # committed and in flight
        self.per_user: dict[str, int] = {}
        self.orders: dict[str, Record] = {}
        self.inflight: dict[str, asyncio.Future[StockOutcome]] = {}

    @property
    def remaining(self) -> int:
        return self.total - self.taken

    def decide(self, user: str, qty: int) -> StockStatus:
        if self.per_user.get(user, 0) + qty > self.per_user_limit:
            return "limit_reached"
        if self.taken + qty > self.total:
            return "sold_out"
        return "ok"

    def reserve(self, user: str, qty: int) -> None:
        self.taken += qty
        self.per_user[user] = self.per_user.get(user, 0) + qty

    def release(self, user: str, qty: int) -> None:
        self.taken -= qty
        self.per_user[user] -= qty


PutRecord = Callable[[Record], Awaitable[tuple[Record, bool]]]
GetRecord = Callable[[str, str], Awaitable[Record | None]]
ListRecords = Callable[[str, str | None, int, int], Awaitable[list[Record]]]


class StockLedger:
    """The stock half of a store, over that store's own record methods."""

    def __init__(self, put: PutRecord, get: GetRecord, list_: ListRecords) -> None:
        self._put, self._get, self._list = put, get, list_
        self._pools: dict[str, StockPool] = {}
        self._loading: dict[str, asyncio.Future[StockPool | None]] = {}

    async def define(
        self, pool: str, room: str, total: int, per_user_limit: int, order_kind: str, created_ms: int
    ) -> None:
        data = {"total": total, "per_user_limit": per_user_limit, "order_kind": order_kind}
        await self._put(Record(POOL_KIND, pool, room, data, created_ms))

    async def take(self, request: StockRequest) -> StockOutcome:
        pool = await self._pool(request.pool)
        if pool is None:
            return StockOutcome("unknown_pool", None, 0)
        key = order_key(request.pool, request.user, request.request_id)
        done = pool.orders.get(key)
        if done is not None:
            return StockOutcome("duplicate", done, pool.remaining)
        inflight = pool.inflight.get(key)
        if inflight is not None:
            first = await asyncio.shield(inflight)
            return StockOutcome("duplicate", first.order, first.remaining) if first.order else first
        status = pool.decide(request.user, request.qty)
        if status != "ok":
            return StockOutcome(status, None, pool.remaining)
        pool.reserve(request.user, request.qty)
        record = Record(
            pool.order_kind,
            key,
            pool.room,
            {**request.data, "pool": request.pool, "user": request.user, "qty": request.qty},
            request.created_ms,
        )
        # The commit runs to its end even if the caller is cancelled (a timed-out handler):
        # the pool's counts must match what reaches the disk.
        commit = asyncio.ensure_future(self._commit(pool, key, record))
        pool.inflight[key] = commit
        return await asyncio.shield(commit)

    async def remaining(self, pool_id: str) -> int | None:
        pool = await self._pool(pool_id)
        return None if pool is None else pool.remaining

    async def _commit(self, pool: StockPool, key: str, record: Record) -> StockOutcome:
        user, qty = record.data["user"], record.data["qty"]
        try:
            stored, created = await self._put(record)
        except BaseException:
            pool.release(user, qty)
            raise
        finally:
            pool.inflight.pop(key, None)
        if not created:  # written before a restart and not rebuilt: count it once
            pool.release(user, qty)
        pool.orders[key] = stored
        return StockOutcome("ok" if created else "duplicate", stored, pool.remaining)

    async def _pool(self, pool_id: str) -> StockPool | None:
        pool = self._pools.get(pool_id)
        if pool is not None:
            return pool
        loading = self._loading.get(pool_id)
        if loading is None:
            loading = self._loading[pool_id] = asyncio.ensure_future(self._rebuild(pool_id))
            loading.add_done_callback(lambda _: self._loading.pop(pool_id, None))
        return await asyncio.shield(loading)

    async def _rebuild(self, pool_id: str) -> StockPool | None:
        """A pool from durable state: its definition, minus every order written for it."""
        definition = await self._get(POOL_KIND, pool_id)
        if definition is None:
            return None
        data = definition.data
        pool = StockPool(definition.room, data["total"], data["per_user_limit"], data["order_kind"])
        after = 0
        while page := await self._list(pool.order_kind, pool.room, after, 1000):
            for order in page:
                if order.data.get("pool") == pool_id:
                    pool.reserve(order.data["user"], order.data["qty"])
                    pool.orders[order.key] = order
            after = page[-1].position
        self._pools[pool_id] = pool
        return pool
