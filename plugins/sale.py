"""Flash sales: the host schedules, the server's clock opens and closes, the Store decides stock.

`sale.buy` is one `Store.take_stock` call (idempotency, per-user limit and stock in one
atomic operation); the order is durable before the ack. Items go on the priority lane:
`sale.scheduled`, `sale.started`, `sale.stock` (at most every `stock_interval_ms`),
`sale.sold_out`, `sale.ended`. Orders are readable over HTTP and, if `webhook_url` is set,
handed to the merchant through the outbox.
"""

from __future__ import annotations

import contextlib
import secrets
from collections import OrderedDict
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from liveroom.errors import BadRequest, CommandError, NotFound
from liveroom.outbox import WebhookOutbox
from liveroom.plugin import CommandContext, CommandSpec, Plugin, PluginHost, QueryContext, QuerySpec
from liveroom.protocol import RequestId, RoomId
from liveroom.record import Record, derived_id
from liveroom.stock import StockRequest, order_key
from liveroom.timers import Throttle

from .sale_rules import Sale, SalesTally, phase

__all__ = ["BuyPayload", "SaleConfig", "SalePlugin", "SchedulePayload"]

SALE_KIND, ORDER_KIND = "sale", "sale.order"
MAX_TALLIES = 10_000  # rooms whose sales figures are kept for the dashboard
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Ident = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]


@dataclass(frozen=True, slots=True)
class SaleConfig:
    stock_interval_ms: int = 500  # sale.stock at most twice a second
    max_duration_s: int = 86_400
    # Orders POSTed here (with an Idempotency-Key) by the outbox; empty: no webhook.
    webhook_url: str = ""
    webhook_timeout_s: float = 5.0
    webhook_max_backoff_s: float = 30.0


@dataclass(frozen=True, slots=True)
class SchedulePayload:
    room: RoomId
    sku: Ident
    title: Text
    price: Annotated[float, msgspec.Meta(ge=0)]
    stock: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
    starts_at: Annotated[int, msgspec.Meta(ge=0)]
    duration_s: Annotated[int, msgspec.Meta(ge=1)]
    per_user_limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    # Idempotency: the same request_id schedules one sale, however often it is sent.
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class BuyPayload:
    room: RoomId
    sale: Ident
    request_id: Ident
    qty: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1


class SalePlugin(Plugin):
    name = "sale"
    config_type = SaleConfig
    item_types = ("sale.scheduled", "sale.started", "sale.stock", "sale.sold_out", "sale.ended")
    config: SaleConfig

    def __init__(self, config: SaleConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        self._sales: dict[str, Sale] = {}
        self._remaining: dict[str, int] = {}
        self._stock = Throttle(host.timers, config.stock_interval_ms, self._publish_stock)
        self._tallies: OrderedDict[str, SalesTally] = OrderedDict()
        self._prices: dict[str, float] = {}
        self._outbox: WebhookOutbox | None = None
        if config.webhook_url:
            self._outbox = WebhookOutbox(
                host.store,
                ORDER_KIND,
                config.webhook_url,
                lambda record: {"type": ORDER_KIND, "order": _order(record)},
                config.webhook_timeout_s,
                max_backoff_s=config.webhook_max_backoff_s,
            )

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return (
            CommandSpec("sale.schedule", SchedulePayload, self.schedule, True, "Schedule a flash sale"),
            CommandSpec("sale.buy", BuyPayload, self.buy, summary="Buy units of an open sale"),
        )

    def queries(self) -> Sequence[QuerySpec]:
        return (QuerySpec("sales/{sale}/orders", self.orders, "A sale's orders, in order"),)

    def snapshot(self, room: str) -> Mapping[str, Any] | None:
        now = self.host.clock.now_ms()
        sales = [
            {**s.wire(), "phase": phase(s, now), "remaining": self._remaining.get(s.id, 0)}
            for s in self._sales.values()
            if s.room == room and phase(s, now) != "ended"
        ]
        return {"sales": sales} if sales else None

    async def start(self) -> None:
        """Reload sales still to come or running, and set their timers again."""
        now, after = self.host.clock.now_ms(), 0
        while page := await self.host.store.list_records(SALE_KIND, None, after, 500):
            for record in page:
                sale = Sale.from_wire(record.data)
                if phase(sale, now) != "ended":
                    await self._track(sale, announce_start=phase(sale, now) == "scheduled")
            after = page[-1].position
        if self._outbox is not None:
            await self._outbox.start()

    async def stop(self) -> None:
        if self._outbox is not None:
            await self._outbox.stop()

    async def schedule(self, ctx: CommandContext, payload: SchedulePayload) -> Mapping[str, Any]:
        if payload.duration_s > self.config.max_duration_s:
            raise BadRequest(f"duration_s is at most {self.config.max_duration_s}")
        starts_at = max(payload.starts_at, int(ctx.now_ms))
        request = payload.request_id
        sale_id = "s-" + (
            secrets.token_hex(6) if request is None else derived_id("", ctx.room, ctx.caller.user_id, request)
        )
        sale = Sale(
            sale_id,
            ctx.room,
            payload.sku,
            payload.title,
            payload.price,
            payload.stock,
            payload.per_user_limit,
            starts_at,
            starts_at + payload.duration_s * 1000,
        )
        store = ctx.store
        await store.define_stock(sale.id, ctx.room, sale.stock, sale.per_user_limit, ORDER_KIND, starts_at)
        stored, created = await store.put_record(
            Record(SALE_KIND, sale.id, ctx.room, sale.wire(), int(ctx.now_ms))
        )
        if not created:  # a retry: the sale its first attempt made
            if sale.id not in self._sales:
                await self._track(Sale.from_wire(stored.data))
            return {"sale": sale.id}
        await self._track(sale)
        await ctx.publish("sale.scheduled", {**sale.wire(), "server_time": ctx.now_ms}, priority=True)
        return {"sale": sale.id}

    async def buy(self, ctx: CommandContext, payload: BuyPayload) -> Mapping[str, Any]:
        sale = self._sales.get(payload.sale)
        if sale is None or sale.room != ctx.room:
            sale = await self._load(ctx.room, payload.sale)
        user = ctx.caller.user_id
        current = phase(sale, ctx.now_ms)
        if current != "open":
            # A retry of an order made while open still gets that order.
            done = await ctx.store.get_record(ORDER_KIND, order_key(sale.id, user, payload.request_id))
            if done is not None:
                return {"order": _order(done)}
            code = "not_started" if current == "scheduled" else "ended"
            raise CommandError(f"the sale has {'not started' if code == 'not_started' else 'ended'}", code)
        data = {"id": "o-" + secrets.token_hex(8), "sale": sale.id}
        request = StockRequest(sale.id, user, payload.qty, payload.request_id, data, int(ctx.now_ms))
        outcome = await ctx.store.take_stock(request)
        await self._stock_changed(ctx, sale, outcome.remaining)
        if outcome.order is None:
            if outcome.status == "limit_reached":
                raise CommandError(f"at most {sale.per_user_limit} per customer", "limit_reached")
            raise CommandError("sold out", "sold_out")
        if outcome.status == "ok" and self._outbox is not None:
            self._outbox.notify()
        return {"order": _order(outcome.order)}

    async def orders(self, query: QueryContext) -> Any:
        sale = await self._load(query.room, query.params["sale"])
        after = int(query.params.get("after", "0") or 0)
        limit = max(1, min(int(query.params.get("limit", "500") or 500), 1000))
        found: list[dict[str, Any]] = []
        async with contextlib.aclosing(self._room_orders(query.room, after)) as records:
            async for record in records:
                after = record.position
                if record.data.get("sale") == sale.id:
                    found.append({**_order(record), "position": record.position, "at": record.created_ms})
                    if len(found) >= limit:
                        break
        return {"sale": sale.id, "orders": found, "next": after}

    async def figures(self, room: str, now_ms: float) -> Mapping[str, Any] | None:
        """The room's sales to come or running, and its orders, units, GMV and distinct buyers
        over all its sales (from the durable orders, every node's, read on from the last time)."""
        tally = self._tallies.pop(room, SalesTally())
        self._tallies[room] = tally  # most recently used last
        if len(self._tallies) > MAX_TALLIES:
            self._tallies.popitem(last=False)
        async for record in self._room_orders(room, tally.after):
            tally.add(_order(record), await self._price(room, record.data["sale"]), record.position)
        sales = [
            {**s.wire(), "phase": phase(s, now_ms), "remaining": self._remaining.get(s.id, 0)}
            for s in self._sales.values()
            if s.room == room
        ]
        if not sales and not tally.orders:
            return None
        return {"sales": sales, **tally.wire()}

    async def _room_orders(self, room: str, after: int) -> AsyncGenerator[Record]:
        """The room's orders (every sale's) written after position `after`, in write order."""
        while page := await self.host.store.list_records(ORDER_KIND, room, after, 1000):
            for record in page:
                yield record
            after = page[-1].position

    async def _price(self, room: str, sale_id: str) -> float:
        price = self._prices.get(sale_id)
        if price is None:
            live = self._sales.get(sale_id)
            price = (live or await self._load(room, sale_id)).price
            if len(self._prices) > 100_000:
                self._prices.clear()
            self._prices[sale_id] = price
        return price

    async def _stock_changed(self, ctx: CommandContext, sale: Sale, remaining: int) -> None:
        before = self._remaining.get(sale.id)
        self._remaining[sale.id] = remaining
        if before == remaining:
            return
        if remaining:
            self._stock.touch(sale.id)
            return
        # Sold out: the last `sale.stock` goes now, with `sale.sold_out`, in one frame, and
        # the throttle's pending update is dropped. In a 5,000-buyer storm each update is a
        # write to every buyer, so the throttled repeat of "0 left" cost a whole broadcast.
        self._stock.forget(sale.id)
        await self._publish_stock(sale.id)
        await ctx.publish("sale.sold_out", {"sale": sale.id}, priority=True)

    async def _publish_stock(self, sale_id: str) -> None:
        sale = self._sales.get(sale_id)
        if sale is not None:
            data = {"sale": sale_id, "remaining": self._remaining.get(sale_id, 0), "stock": sale.stock}
            await self.host.services.publish(sale.room, "sale.stock", data, priority=True)

    async def _load(self, room: str, sale_id: str) -> Sale:
        record = await self.host.store.get_record(SALE_KIND, sale_id)
        if record is None or record.room != room:
            raise NotFound(f"no sale {sale_id!r} in this room")
        return Sale.from_wire(record.data)

    async def _track(self, sale: Sale, announce_start: bool = True) -> None:
        """Keep a live sale in memory and set the timers that announce its start and end."""
        self._sales[sale.id] = sale
        remaining = await self.host.store.stock_remaining(sale.id)
        self._remaining[sale.id] = sale.stock if remaining is None else remaining
        services, timers = self.host.services, self.host.timers

        async def started(now_ms: float) -> None:
            data = {"sale": sale.id, "remaining": self._remaining.get(sale.id, 0), "ends_at": sale.ends_at}
            await services.publish(sale.room, "sale.started", data, priority=True)

        async def ended(now_ms: float) -> None:
            remaining = self._remaining.pop(sale.id, 0)
            self._sales.pop(sale.id, None)
            self._stock.forget(sale.id)
            data = {"sale": sale.id, "sold": sale.stock - remaining, "remaining": remaining}
            await services.publish(sale.room, "sale.ended", data, priority=True)

        if announce_start:
            timers.schedule(f"sale:{sale.id}:start", sale.starts_at, started)
        timers.schedule(f"sale:{sale.id}:end", sale.ends_at, ended)


def _order(record: Record) -> dict[str, Any]:
    data = record.data
    return {"id": data["id"], "sale": data["sale"], "qty": data["qty"], "user": data["user"]}
