"""Product showcase (the shopping bag and its pinned card): the host lists the show's
products and pins one at a time; viewers see both in `join` state and live, and a click on a
product (`showcase.click`) is counted per product before its checkout link is handed back.

The list and the pin are durable changes (`showcase.change` records, written first, replayed
when the room is loaded). A click adds one to the Store counter `showcase:<room>:clicks:<sku>`
and, a user's first click on a product, writes a `showcase.click` record (`<room>/<sku>/<user>`):
the distinct clickers. The dashboard's figures fold those records with the flash sales'
(`sale`, `sale.order`) read on from the last position: clicks, clickers, orders and the
click -> order conversion of each product that has a flash sale of its SKU.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from liveroom.errors import BadRequest, NotFound
from liveroom.money import MAX_MINOR
from liveroom.plugin import (
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
from liveroom.store import records_of

from .sale import ORDER_KIND, SALE_KIND
from .showcase_rules import ClickTally, Product, Showcase

__all__ = ["ClickPayload", "PinPayload", "SetPayload", "ShowcaseConfig", "ShowcasePlugin"]

CHANGE_KIND, CLICK_KIND = "showcase.change", "showcase.click"
Sku = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
Url = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s\"'<>]{1,500}$")]


@dataclass(frozen=True, slots=True)
class ShowcaseConfig:  # [plugins.showcase]
    max_products: int = 50  # per room
    click_rate_per_s: float = 1.0  # showcase.click per user and room (else rate_limited)
    click_burst: int = 5
    publish_rate_per_s: float = 2.0  # set, pin, unpin per user and room
    publish_burst: int = 20
    max_clickers: int = 100_000  # (product, user) first clicks remembered per room


@dataclass(frozen=True, slots=True)
class ProductPayload:
    sku: Sku
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    price_minor: Annotated[int, msgspec.Meta(ge=0, le=MAX_MINOR)]
    image: Url
    url: Url


@dataclass(frozen=True, slots=True)
class SetPayload:
    room: RoomId
    products: Annotated[list[ProductPayload], msgspec.Meta(max_length=1000)]
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class PinPayload:
    room: RoomId
    sku: Sku
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class UnpinPayload:
    room: RoomId
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class ClickPayload:
    room: RoomId
    sku: Sku


@dataclass(slots=True)
class RoomShowcase:
    showcase: Showcase = field(default_factory=Showcase)
    tally: ClickTally = field(default_factory=ClickTally)
    clicked: set[str] = field(default_factory=set)  # "sku/user" whose first click is written


class ShowcasePlugin(Plugin):
    name = "showcase"
    config_type = ShowcaseConfig
    item_types = ("showcase.products", "showcase.pinned", "showcase.unpinned")
    config: ShowcaseConfig

    def __init__(self, config: ShowcaseConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        self._rooms: dict[str, RoomShowcase] = {}
        self._publish_rate = UserRate(config.publish_rate_per_s, config.publish_burst, "showcase commands")
        self._click_rate = UserRate(config.click_rate_per_s, config.click_burst, "clicks")

    def commands(self) -> Sequence[CommandSpec[Any]]:
        clock = self.host.clock
        return (
            CommandSpec(
                "showcase.set",
                SetPayload,
                rate_limited(self.set_products, self._publish_rate, clock),
                True,
                "Set the show's product list",
            ),
            CommandSpec(
                "showcase.pin",
                PinPayload,
                rate_limited(self.pin, self._publish_rate, clock),
                True,
                "Pin a product",
            ),
            CommandSpec(
                "showcase.unpin",
                UnpinPayload,
                rate_limited(self.unpin, self._publish_rate, clock),
                True,
                "Unpin the pinned product",
            ),
            CommandSpec(
                "showcase.click",
                ClickPayload,
                rate_limited(self.click, self._click_rate, clock),
                summary="A viewer clicks a product: counted, its checkout link answered",
            ),
        )

    def queries(self) -> Sequence[QuerySpec]:
        return (QuerySpec("showcase", self.showcase_query, "The products, the pinned one and their clicks"),)

    # -- the room's life --------------------------------------------------------------

    async def load_room(self, ctx: RoomContext) -> None:
        room = RoomShowcase()
        async for record in records_of(ctx.store, CHANGE_KIND, ctx.room):
            room.showcase.apply(record.data)
        for sku in room.showcase.products:
            room.tally.clicks[sku] = await ctx.store.get_counter(_clicks_key(ctx.room, sku))
        self._rooms[ctx.room] = room

    def release_room(self, room: str) -> None:
        self._publish_rate.forget(room)
        self._click_rate.forget(room)
        self._rooms.pop(room, None)

    async def snapshot(self, room: str) -> Mapping[str, Any] | None:
        showcase = self._rooms[room].showcase
        return showcase.state() if showcase.products else None

    async def figures(self, room: str, now_ms: float) -> Mapping[str, Any] | None:
        state = self._rooms[room]
        if not state.showcase.products:
            return None
        await self._fold(room, state.tally)
        products = [
            {"sku": sku, "title": product.title, **state.tally.figures(sku)}
            for sku, product in state.showcase.products.items()
        ]
        return {"pinned": state.showcase.pinned, "products": products}

    # -- commands -----------------------------------------------------------------------

    async def set_products(self, ctx: CommandContext, payload: SetPayload) -> Mapping[str, Any]:
        if len(payload.products) > self.config.max_products:
            raise BadRequest(f"at most {self.config.max_products} products")
        skus = [p.sku for p in payload.products]
        if len(set(skus)) != len(skus):
            raise BadRequest("each sku at most once")
        products = [Product(p.sku, p.title, p.price_minor, p.image, p.url).record() for p in payload.products]
        state = await self._change(ctx, {"op": "set", "products": products}, payload.request_id)
        for sku in state.showcase.products:
            state.tally.clicks.setdefault(sku, await ctx.store.get_counter(_clicks_key(ctx.room, sku)))
        await ctx.publish("showcase.products", state.showcase.state(), priority=True)
        return {"products": len(state.showcase.products), "pinned": state.showcase.pinned}

    async def pin(self, ctx: CommandContext, payload: PinPayload) -> Mapping[str, Any]:
        if payload.sku not in self._rooms[ctx.room].showcase.products:
            raise NotFound(f"no product {payload.sku!r} in the showcase")
        state = await self._change(ctx, {"op": "pin", "sku": payload.sku}, payload.request_id)
        await ctx.publish("showcase.pinned", {"product": state.showcase.pinned_product()}, priority=True)
        return {"sku": payload.sku}

    async def unpin(self, ctx: CommandContext, payload: UnpinPayload) -> Mapping[str, Any]:
        if self._rooms[ctx.room].showcase.pinned is None:
            raise NotFound("no product is pinned")
        await self._change(ctx, {"op": "unpin"}, payload.request_id)
        await ctx.publish("showcase.unpinned", {}, priority=True)
        return {}

    async def click(self, ctx: CommandContext, payload: ClickPayload) -> Mapping[str, Any]:
        state, user = self._rooms[ctx.room], ctx.caller.user_id
        product = state.showcase.products.get(payload.sku)
        if product is None:
            raise NotFound(f"no product {payload.sku!r} in the showcase")
        first = f"{product.sku}/{user}"
        if first not in state.clicked:
            data = {"sku": product.sku, "user": user}
            await ctx.store.put_record(
                Record(CLICK_KIND, f"{ctx.room}/{first}", ctx.room, data, int(ctx.now_ms))
            )
            if len(state.clicked) < self.config.max_clickers:
                state.clicked.add(first)
        clicks = await ctx.store.incr(_clicks_key(ctx.room, product.sku), 1)
        state.tally.clicks[product.sku] = clicks
        return {"sku": product.sku, "url": product.url, "clicks": clicks}

    async def showcase_query(self, query: QueryContext) -> Any:
        state = self._rooms[query.room]
        await self._fold(query.room, state.tally)
        products = [
            {**product.wire(), **state.tally.figures(sku)} for sku, product in state.showcase.products.items()
        ]
        return {"products": products, "pinned": state.showcase.pinned}

    # -- helpers ------------------------------------------------------------------------

    async def _change(self, ctx: CommandContext, change: dict[str, Any], request: str | None) -> RoomShowcase:
        """Write the change first, then apply it (a retry with the same request_id: the first)."""
        key = (
            secrets.token_hex(8)
            if request is None
            else derived_id("c", ctx.room, ctx.caller.user_id, request)
        )
        stored, _ = await ctx.store.put_record(Record(CHANGE_KIND, key, ctx.room, change, int(ctx.now_ms)))
        state = self._rooms[ctx.room]
        state.showcase.apply(stored.data)
        return state

    async def _fold(self, room: str, tally: ClickTally) -> None:
        """The clicks, sales and orders written since the last time (sales before their orders)."""
        store = self.host.store
        async for record in records_of(store, CLICK_KIND, room, tally.after.get(CLICK_KIND, 0)):
            tally.click(record.data["sku"], record.data["user"])
            tally.read(CLICK_KIND, record.position)
        async for record in records_of(store, SALE_KIND, room, tally.after.get(SALE_KIND, 0)):
            tally.sale(record.data["id"], record.data["sku"])
            tally.read(SALE_KIND, record.position)
        async for record in records_of(store, ORDER_KIND, room, tally.after.get(ORDER_KIND, 0), page=1000):
            tally.order(record.data["sale"], record.data["user"])
            tally.read(ORDER_KIND, record.position)


def _clicks_key(room: str, sku: str) -> str:
    return f"showcase:{room}:clicks:{sku}"
