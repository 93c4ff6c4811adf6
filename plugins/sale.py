"""Flash sales: the host schedules, the server's clock opens and closes, the Store decides stock.

`sale.buy` is one `Store.take_stock` call (idempotency, per-user limit and stock in one
atomic operation); the order is durable before the ack. Items go on the priority lane:
`sale.scheduled`, `sale.started`, `sale.stock` (at most every `stock_interval_ms`),
`sale.sold_out`, `sale.ended`. Orders are readable over HTTP and, if `webhook_url` is set,
handed to the merchant through the outbox. Prices are integer minor units
(`liveroom.money`): a record keeps `price_minor`, clients see both it and `price` as a
decimal string. A room's sales still to come or running are rebuilt from their records
when the room is loaded; the stock left is always the store's.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from liveroom.errors import BadRequest, CommandError, NotFound
from liveroom.money import Money, to_minor
from liveroom.outbox import WebhookSettings, outbox_from
from liveroom.plugin import (
    MAX_POSITION,
    CommandContext,
    CommandSpec,
    Plugin,
    PluginHost,
    QueryContext,
    QuerySpec,
    RoomContext,
    rate_limited,
)
from liveroom.protocol import RequestId, RoomId
from liveroom.ratelimit import UserRate
from liveroom.record import Record, derived_id
from liveroom.stock import StockRequest, order_key
from liveroom.store import records_of

from .sale_rules import Sale, SalesTally, phase

__all__ = ["BuyPayload", "SaleConfig", "SalePlugin", "SchedulePayload"]

SALE_KIND, ORDER_KIND = "sale", "sale.order"
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Ident = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
Tier = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]  # liveroom.auth's tier word


@dataclass(frozen=True, slots=True)
class SaleConfig(WebhookSettings):
    stock_interval_ms: int = 500  # sale.stock at most twice a second
    # Per user and room, for the commands that publish to the room (schedule, redeliver):
    # `publish_burst` in a row, then `publish_rate_per_s` a second (else rate_limited).
    publish_rate_per_s: float = 2.0
    publish_burst: int = 20
    max_duration_s: int = 86_400
    # starts_at at most this far ahead of the server's clock (the past means now).
    max_lead_s: int = 30 * 86_400
    # webhook_* (WebhookSettings): orders POSTed by the outbox; its dead letters are listed by
    # GET .../outbox/dead and sent again by sale.redeliver.


@dataclass(frozen=True, slots=True)
class SchedulePayload:
    room: RoomId
    sku: Ident
    title: Text
    price: Money  # a number or a decimal string: kept as minor units (liveroom.money)
    stock: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
    # Server ms, as `time` hands it out (a float is rounded). The past means now.
    starts_at: Annotated[float, msgspec.Meta(ge=0, le=9_007_199_254_740_991)]
    duration_s: Annotated[int, msgspec.Meta(ge=1, le=31_536_000)]  # and at most max_duration_s
    per_user_limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    # Idempotency: the same request_id schedules one sale, however often it is sent.
    request_id: RequestId | None = None
    # A VIP sale: only a token whose `tier` claim is one of these may buy (empty: anyone).
    tiers: Annotated[list[Tier], msgspec.Meta(max_length=10)] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BuyPayload:
    room: RoomId
    sale: Ident
    request_id: Ident
    qty: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1


@dataclass(frozen=True, slots=True)
class RedeliverPayload:
    room: RoomId
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]  # a dead letter's key


@dataclass(slots=True)
class RoomSales:
    """A room's sales as this node holds them."""

    live: dict[str, Sale] = field(default_factory=dict)  # to come or running
    remaining: dict[str, int] = field(default_factory=dict)  # units left, as last seen
    prices: dict[str, int] = field(default_factory=dict)  # every sale's price (minor units)
    tally: SalesTally = field(default_factory=SalesTally)


class SalePlugin(Plugin):
    name = "sale"
    config_type = SaleConfig
    item_types = ("sale.scheduled", "sale.started", "sale.stock", "sale.sold_out", "sale.ended")
    config: SaleConfig

    def __init__(self, config: SaleConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        self._publish_rate = UserRate(config.publish_rate_per_s, config.publish_burst, "sale commands")
        self._rooms: dict[str, RoomSales] = {}
        self._stock = host.throttle(config.stock_interval_ms, self._publish_stock)
        self._outbox = outbox_from(
            config, host.store, ORDER_KIND, lambda record: {"type": ORDER_KIND, "order": _order(record)}
        )

    def _limited(self, handler: Any) -> Any:
        """The handler under this plugin's per-user publish rate (`publish_rate_per_s`)."""
        return rate_limited(handler, self._publish_rate, self.host.clock)

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return (
            CommandSpec(
                "sale.schedule", SchedulePayload, self._limited(self.schedule), True, "Schedule a flash sale"
            ),
            CommandSpec("sale.buy", BuyPayload, self.buy, summary="Buy units of an open sale"),
            CommandSpec(
                "sale.redeliver",
                RedeliverPayload,
                self._limited(self.redeliver),
                True,
                "Send a dead-lettered order again",
            ),
        )

    def queries(self) -> Sequence[QuerySpec]:
        return (
            QuerySpec("sales/{sale}/orders", self.orders, "A sale's orders, in order"),
            QuerySpec("outbox/dead", self.dead_letters, "Orders the webhook gave up on"),
        )

    async def start(self) -> None:
        if self._outbox is not None:
            await self._outbox.start()

    async def stop(self) -> None:
        if self._outbox is not None:
            await self._outbox.stop()

    # -- the room's life --------------------------------------------------------------

    async def load_room(self, ctx: RoomContext) -> None:
        """Every sale of the room (its price, for the figures); those to come or running are
        tracked again, with their timers."""
        sales = self._rooms[ctx.room] = RoomSales()
        async for record in records_of(ctx.store, SALE_KIND, ctx.room):
            sale = Sale.from_wire(record.data)
            sales.prices[sale.id] = sale.price_minor
            if phase(sale, ctx.now_ms) != "ended":
                await self._track(ctx, sales, sale, announce_start=phase(sale, ctx.now_ms) == "scheduled")

    def release_room(self, room: str) -> None:
        self._publish_rate.forget(room)
        sales = self._rooms.pop(room, None)
        for sale_id in () if sales is None else sales.live:
            self._stock.forget(f"{room} {sale_id}")

    async def snapshot(self, room: str) -> Mapping[str, Any] | None:
        sales = self._live(room, self.host.clock.now_ms(), running=True)
        return {"sales": sales} if sales else None

    async def figures(self, room: str, now_ms: float) -> Mapping[str, Any] | None:
        """The room's sales to come or running, and its orders, units, GMV and distinct buyers
        over all its sales (from the durable orders, read on from the last time)."""
        sales = self._rooms[room]
        tally = sales.tally
        async for record in self._room_orders(room, tally.after):
            tally.add(_order(record), await self._price(room, sales, record.data["sale"]), record.position)
        live = self._live(room, now_ms, running=False)
        if not live and not tally.orders:
            return None
        return {"sales": live, **tally.wire()}

    def _live(self, room: str, now_ms: float, running: bool) -> list[dict[str, Any]]:
        sales = self._rooms[room]
        return [
            {**sale.wire(), "phase": phase(sale, now_ms), "remaining": sales.remaining.get(sale.id, 0)}
            for sale in sales.live.values()
            if not running or phase(sale, now_ms) != "ended"
        ]

    # -- commands -----------------------------------------------------------------------

    async def schedule(self, ctx: CommandContext, payload: SchedulePayload) -> Mapping[str, Any]:
        if payload.duration_s > self.config.max_duration_s:
            raise BadRequest(f"duration_s is at most {self.config.max_duration_s}")
        if payload.starts_at > ctx.now_ms + self.config.max_lead_s * 1000:
            raise BadRequest(f"starts_at is at most {self.config.max_lead_s} s after the server's time")
        price = to_minor(payload.price)
        starts_at = max(round(payload.starts_at), int(ctx.now_ms))
        request = payload.request_id
        sale_id = "s-" + (
            secrets.token_hex(6) if request is None else derived_id("", ctx.room, ctx.caller.user_id, request)
        )
        sale = Sale(
            sale_id,
            ctx.room,
            payload.sku,
            payload.title,
            price,
            payload.stock,
            payload.per_user_limit,
            starts_at,
            starts_at + payload.duration_s * 1000,
            tuple(payload.tiers),
        )
        store, sales = ctx.store, self._rooms[ctx.room]
        await store.define_stock(sale.id, ctx.room, sale.stock, sale.per_user_limit, ORDER_KIND, starts_at)
        stored, created = await store.put_record(
            Record(SALE_KIND, sale.id, ctx.room, sale.record(), int(ctx.now_ms))
        )
        sale = Sale.from_wire(stored.data)  # a retry: the sale its first attempt made
        sales.prices[sale.id] = sale.price_minor
        if sale.id not in sales.live:
            await self._track(ctx, sales, sale)
        if created:
            await ctx.publish("sale.scheduled", {**sale.wire(), "server_time": ctx.now_ms}, priority=True)
        return {"sale": sale.id}

    async def buy(self, ctx: CommandContext, payload: BuyPayload) -> Mapping[str, Any]:
        sales = self._rooms[ctx.room]
        sale = sales.live.get(payload.sale) or await self._load(ctx.room, payload.sale)
        user = ctx.caller.user_id
        current = phase(sale, ctx.now_ms)
        if current != "open":
            # A retry of an order made while open still gets that order.
            done = await ctx.store.get_record(ORDER_KIND, order_key(sale.id, user, payload.request_id))
            if done is not None:
                return {"order": _order(done)}
            code = "not_started" if current == "scheduled" else "ended"
            raise CommandError(f"the sale has {'not started' if code == 'not_started' else 'ended'}", code)
        if sale.tiers and ctx.caller.tier not in sale.tiers:
            raise CommandError(f"for {', '.join(sale.tiers)} members only", "tier_required")
        data = {"id": "o-" + secrets.token_hex(8), "sale": sale.id}
        request = StockRequest(sale.id, user, payload.qty, payload.request_id, data, int(ctx.now_ms))
        outcome = await ctx.store.take_stock(request)
        await self._stock_changed(ctx, sales, sale, outcome.remaining)
        if outcome.order is None:
            if outcome.status == "limit_reached":
                raise CommandError(f"at most {sale.per_user_limit} per customer", "limit_reached")
            raise CommandError("sold out", "sold_out")
        if outcome.status == "ok" and self._outbox is not None:
            self._outbox.notify()
        return {"order": _order(outcome.order)}

    async def redeliver(self, ctx: CommandContext, payload: RedeliverPayload) -> Mapping[str, Any]:
        if self._outbox is None:
            raise NotFound("no webhook is configured")
        record = await ctx.store.get_record(ORDER_KIND, payload.key)
        if record is None or record.room != ctx.room:
            raise NotFound("no such order in this room")
        if not await self._outbox.redeliver(payload.key):
            raise CommandError("the webhook refused it again (or it is not a dead letter)", "not_delivered")
        return {"key": payload.key, "delivered": True}

    async def dead_letters(self, query: QueryContext) -> Any:
        return {"dead": [] if self._outbox is None else await self._outbox.dead_letters(query.room)}

    async def orders(self, query: QueryContext) -> Any:
        sale = await self._load(query.room, query.params["sale"])
        after = query.int_param("after", 0, 0, MAX_POSITION)
        limit = query.int_param("limit", 500, 1, 1000)
        found: list[dict[str, Any]] = []
        async with contextlib.aclosing(self._room_orders(query.room, after)) as records:
            async for record in records:
                after = record.position
                if record.data.get("sale") == sale.id:
                    found.append({**_order(record), "position": record.position, "at": record.created_ms})
                    if len(found) >= limit:
                        break
        return {"sale": sale.id, "orders": found, "next": after}

    # -- helpers ------------------------------------------------------------------------

    async def _room_orders(self, room: str, after: int) -> AsyncGenerator[Record]:
        """The room's orders (every sale's) written after position `after`, in write order."""
        async for record in records_of(self.host.store, ORDER_KIND, room, after, page=1000):
            yield record

    async def _price(self, room: str, sales: RoomSales, sale_id: str) -> int:
        price = sales.prices.get(sale_id)
        if price is None:
            price = sales.prices[sale_id] = (await self._load(room, sale_id)).price_minor
        return price

    async def _stock_changed(self, ctx: CommandContext, sales: RoomSales, sale: Sale, remaining: int) -> None:
        before = sales.remaining.get(sale.id)
        sales.remaining[sale.id] = remaining
        if before == remaining:
            return
        key = f"{ctx.room} {sale.id}"
        if remaining:
            self._stock.touch(key, room=ctx.room)
            return
        # Sold out: the last `sale.stock` goes now, with `sale.sold_out`, in one frame, and
        # the throttle's pending update is dropped. In a 5,000-buyer storm each update is a
        # write to every buyer, so the throttled repeat of "0 left" cost a whole broadcast.
        self._stock.forget(key)
        await self._publish_stock(key)
        await ctx.publish("sale.sold_out", {"sale": sale.id}, priority=True)

    async def _publish_stock(self, key: str) -> None:
        """`key`: "room sale" (the throttle's key)."""
        room, _, sale_id = key.partition(" ")
        sales = self._rooms.get(room)
        sale = None if sales is None else sales.live.get(sale_id)
        if sales is not None and sale is not None:
            data = {"sale": sale_id, "remaining": sales.remaining.get(sale_id, 0), "stock": sale.stock}
            await self.host.services.publish(room, "sale.stock", data, priority=True)

    async def _load(self, room: str, sale_id: str) -> Sale:
        record = await self.host.store.get_record(SALE_KIND, sale_id)
        if record is None or record.room != room:
            raise NotFound(f"no sale {sale_id!r} in this room")
        return Sale.from_wire(record.data)

    async def _track(
        self, ctx: RoomContext, sales: RoomSales, sale: Sale, announce_start: bool = True
    ) -> None:
        """Keep a live sale in memory and set the timers that announce its start and end."""
        sales.live[sale.id] = sale
        remaining = await ctx.store.stock_remaining(sale.id)
        sales.remaining[sale.id] = sale.stock if remaining is None else remaining
        store, services = ctx.store, ctx.services

        async def started(now_ms: float) -> None:
            data = {"sale": sale.id, "remaining": sales.remaining.get(sale.id, 0), "ends_at": sale.ends_at}
            await services.publish(sale.room, "sale.started", data, priority=True)

        async def ended(now_ms: float) -> None:
            left = await store.stock_remaining(sale.id)  # the store's word, not this node's last sight
            remaining = sales.remaining.get(sale.id, 0) if left is None else left
            sales.live.pop(sale.id, None)
            sales.remaining.pop(sale.id, None)
            self._stock.forget(f"{sale.room} {sale.id}")
            data = {"sale": sale.id, "sold": sale.stock - remaining, "remaining": remaining}
            await services.publish(sale.room, "sale.ended", data, priority=True)

        if announce_start:
            ctx.schedule(f"sale:{sale.id}:start", sale.starts_at, started)
        ctx.schedule(f"sale:{sale.id}:end", sale.ends_at, ended)


def _order(record: Record) -> dict[str, Any]:
    data = record.data
    return {"id": data["id"], "sale": data["sale"], "qty": data["qty"], "user": data["user"]}
