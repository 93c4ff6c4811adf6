"""Auctions with anti-snipe: the host opens one, viewers bid, the server's clock ends it.

A room has one auction at a time (`auction.open`). Each bid is decided on the room's one
authority (the owner node of a cluster) under the auction's lock, in arrival order: at least
the current price plus the increment (else `bid_too_low`, the error carrying the current
price and the lowest acceptable bid), and a bid in the last `extend_s` pushes the end to
now + `extend_s`. An accepted bid is the durable record `auction.bid` keyed `<auction>/<n>`
(the nth accepted), written before the ack: write-once keys make a second writer of the
same place (a node that has just lost the room) find the bid already there rather than
accept a second one. Viewers see `auction.price` (price, leader, end) on the priority lane,
at most every `update_interval_ms`. At the end the highest bid wins if it meets the reserve;
the win is the durable order `auction.order` (handed to `webhook_url` through the outbox,
exactly once per Idempotency-Key), then `auction.ended` goes to the room and `auction.won`
to the winner. Loading the room rebuilds the auction from its records and sets its timer.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from liveroom.errors import BadRequest, CommandError, NotFound, OutcomeUnknown
from liveroom.money import Money, format_minor, to_minor
from liveroom.outbox import WebhookSettings, outbox_from
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

from .auction_rules import Auction, Bid, Terms

__all__ = ["AuctionConfig", "AuctionPlugin", "BidPayload", "OpenPayload"]

AUCTION_KIND, BID_KIND, RESULT_KIND, ORDER_KIND = "auction", "auction.bid", "auction.result", "auction.order"
RETRY_FINISH_MS = 1000  # an end that could not be written is tried again this much later
AuctionId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]


@dataclass(frozen=True, slots=True)
class AuctionConfig(WebhookSettings):
    update_interval_ms: int = 100  # auction.price at most this often (priority lane)
    extend_s: int = 10  # default anti-snipe window of auction.open
    max_duration_s: int = 86_400
    # Per user and room: bids (`bid_burst` in a row, then `bid_rate_per_s`), and the host's opens.
    bid_rate_per_s: float = 5.0
    bid_burst: int = 10
    publish_rate_per_s: float = 2.0
    publish_burst: int = 20
    # webhook_* (WebhookSettings): won auctions POSTed as orders (Idempotency-Key: the auction id).


@dataclass(frozen=True, slots=True)
class OpenPayload:
    room: RoomId
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    start_price: Money
    increment: Money
    duration_s: Annotated[int, msgspec.Meta(ge=1, le=31_536_000)]
    reserve: Money | None = None
    extend_s: Annotated[int, msgspec.Meta(ge=0, le=3600)] | None = None
    sku: Annotated[str, msgspec.Meta(max_length=64)] = ""
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class BidPayload:
    room: RoomId
    auction: AuctionId
    amount: Money
    request_id: RequestId


@dataclass(slots=True)
class RoomAuction:
    """A room's current (or last) auction as this node holds it."""

    auction: Auction | None = None
    sku: str = ""
    by_request: dict[str, Bid] = field(default_factory=dict)  # idempotency key -> accepted bid
    result: dict[str, Any] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class AuctionPlugin(Plugin):
    name = "auction"
    config_type = AuctionConfig
    item_types = ("auction.opened", "auction.price", "auction.ended", "auction.won")
    config: AuctionConfig

    def __init__(self, config: AuctionConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        self._rooms: dict[str, RoomAuction] = {}
        self._bid_rate = UserRate(config.bid_rate_per_s, config.bid_burst, "bids")
        self._publish_rate = UserRate(config.publish_rate_per_s, config.publish_burst, "auction commands")
        self._price = host.throttle(config.update_interval_ms, self._publish_price)
        self._outbox = outbox_from(
            config, host.store, ORDER_KIND, lambda record: {"type": ORDER_KIND, "order": dict(record.data)}
        )

    def commands(self) -> Sequence[CommandSpec[Any]]:
        clock = self.host.clock
        return (
            CommandSpec(
                "auction.open",
                OpenPayload,
                rate_limited(self.open, self._publish_rate, clock),
                True,
                "Open an auction",
            ),
            CommandSpec(
                "auction.bid", BidPayload, rate_limited(self.bid, self._bid_rate, clock), summary="Bid"
            ),
        )

    def queries(self) -> Sequence[QuerySpec]:
        return (QuerySpec("auctions/{auction}", self.describe, "An auction: terms, bids, result"),)

    async def start(self) -> None:
        if self._outbox is not None:
            await self._outbox.start()

    async def stop(self) -> None:
        if self._outbox is not None:
            await self._outbox.stop()

    # -- the room's life --------------------------------------------------------------

    async def load_room(self, ctx: RoomContext) -> None:
        """The room's latest auction with its bids in order; its end set again if still open."""
        state, latest = RoomAuction(), None
        async for record in records_of(ctx.store, AUCTION_KIND, ctx.room):
            latest = record
        if latest is not None:
            auction = Auction(Terms.from_record(latest.data))
            state.auction, state.sku = auction, str(latest.data.get("sku", ""))
            await self._catch_up(ctx, state, auction)
            result = await ctx.store.get_record(RESULT_KIND, auction.terms.id)
            if result is not None:
                auction.closed, state.result = True, dict(result.data)
            else:
                self._set_end(ctx, auction.terms.id, auction.ends_at)
        self._rooms[ctx.room] = state

    def release_room(self, room: str) -> None:
        self._bid_rate.forget(room)
        self._publish_rate.forget(room)
        self._price.forget(room)
        self._rooms.pop(room, None)

    async def snapshot(self, room: str) -> Mapping[str, Any] | None:
        state = self._rooms[room]
        if state.auction is None:
            return None
        now = self.host.clock.now_ms()
        return {**state.auction.wire(now), "server_time": now, "result": state.result}

    async def figures(self, room: str, now_ms: float) -> Mapping[str, Any] | None:
        return await self.snapshot(room)

    # -- commands -----------------------------------------------------------------------

    async def open(self, ctx: CommandContext, payload: OpenPayload) -> Mapping[str, Any]:
        if payload.duration_s > self.config.max_duration_s:
            raise BadRequest(f"duration_s is at most {self.config.max_duration_s}")
        increment = to_minor(payload.increment, "increment")
        if increment < 1:
            raise BadRequest("increment must be more than 0")
        state, request = self._rooms[ctx.room], payload.request_id
        auction_id = "a-" + (
            secrets.token_hex(6) if request is None else derived_id("", ctx.room, ctx.caller.user_id, request)
        )
        current = state.auction
        if current is not None and current.terms.id == auction_id:  # a retry of the open that made it
            return {"auction": auction_id, "ends_at": current.ends_at}
        if current is not None and not current.closed:  # open, or its end not written yet
            raise CommandError(f"auction {current.terms.id} has not ended yet", "auction_active")
        extend_s = self.config.extend_s if payload.extend_s is None else payload.extend_s
        now = int(ctx.now_ms)
        terms = Terms(
            auction_id,
            ctx.room,
            payload.title,
            to_minor(payload.start_price, "start_price"),
            increment,
            0 if payload.reserve is None else to_minor(payload.reserve, "reserve"),
            now,
            now + payload.duration_s * 1000,
            extend_s * 1000,
        )
        record = Record(AUCTION_KIND, auction_id, ctx.room, {**terms.record(), "sku": payload.sku}, now)
        stored, created = await ctx.store.put_record(record)  # durable first: a failed open leaves nothing
        auction = Auction(Terms.from_record(stored.data))
        state = RoomAuction(auction, str(stored.data.get("sku", "")))
        if not created:  # a retry whose first answer was lost: bids may have been placed since
            try:
                await self._catch_up(ctx, state, auction)
            except CommandError:
                raise OutcomeUnknown("the auction is open but could not be read back: retry") from None
        self._rooms[ctx.room] = state
        self._set_end(ctx, auction_id, auction.ends_at)
        await ctx.publish(
            "auction.opened", {**auction.wire(ctx.now_ms), "server_time": ctx.now_ms}, priority=True
        )
        return {"auction": auction_id, "ends_at": auction.ends_at}

    async def bid(self, ctx: CommandContext, payload: BidPayload) -> Mapping[str, Any]:
        state, user = self._rooms[ctx.room], ctx.caller.user_id
        auction = state.auction
        if auction is None or auction.terms.id != payload.auction:
            raise NotFound(f"no auction {payload.auction!r} in this room")
        request = derived_id("", ctx.room, user, payload.request_id)
        amount = to_minor(payload.amount, "amount")
        done = state.by_request.get(request)
        if done is None:
            auction.check(amount, self.host.clock.now_ms())  # the price only rises: refuse at once
            async with state.lock:  # one decision at a time, in arrival order
                done = await self._place(ctx, state, auction, amount, request)
            self._price.touch(ctx.room, room=ctx.room)
        return {
            "auction": auction.terms.id,
            "bid": done.n,
            "amount": format_minor(done.amount_minor),
            "amount_minor": done.amount_minor,
            "leading": auction.leader is done,
            "ends_at": done.ends_at,
        }

    async def _place(
        self, ctx: CommandContext, state: RoomAuction, auction: Auction, amount: int, request: str
    ) -> Bid:
        """Decide and write one bid (under the lock). A place already taken in the records (a
        retry whose first answer was lost, or a writer that no longer owned the room) is
        caught up first, and the bid decided again on the true state."""
        while True:
            done = state.by_request.get(request)
            if done is not None:
                return done
            bid = auction.next_bid(
                ctx.caller.user_id, ctx.caller.name, amount, self.host.clock.now_ms(), request
            )
            key = f"{auction.terms.id}/{bid.n}"
            data = {"auction": auction.terms.id, **bid.record()}
            stored, _ = await ctx.store.put_record(Record(BID_KIND, key, ctx.room, data, bid.at))
            before = auction.ends_at
            self._count(state, auction, Bid.from_record(stored.data))
            if auction.ends_at != before:  # anti-snipe: the end moved
                self._set_end(ctx, auction.terms.id, auction.ends_at)

    @staticmethod
    def _count(state: RoomAuction, auction: Auction, bid: Bid) -> None:
        auction.accept(bid)
        state.by_request[bid.request] = bid

    async def _catch_up(self, ctx: RoomContext, state: RoomAuction, auction: Auction) -> None:
        """Count the auction's written bids this node has not counted, in order."""
        while True:
            record = await ctx.store.get_record(BID_KIND, f"{auction.terms.id}/{auction.bids + 1}")
            if record is None:
                return
            self._count(state, auction, Bid.from_record(record.data))

    async def describe(self, query: QueryContext) -> Any:
        record = await self.host.store.get_record(AUCTION_KIND, query.params["auction"])
        if record is None or record.room != query.room:
            raise NotFound("no auction by that id in this room")
        bids = []
        async for bid in records_of(self.host.store, BID_KIND, query.room, page=1000):
            if bid.data["auction"] == record.key:
                bids.append({key: bid.data[key] for key in ("n", "user", "amount_minor", "at", "ends_at")})
        result = await self.host.store.get_record(RESULT_KIND, record.key)
        return {
            "auction": dict(record.data),
            "bids": bids,
            "result": None if result is None else dict(result.data),
        }

    # -- the end ------------------------------------------------------------------------

    def _set_end(self, ctx: RoomContext, auction_id: str, at_ms: float) -> None:
        room = ctx.room

        async def end(now_ms: float) -> None:
            state = self._rooms.get(room)
            if state is None or state.auction is None or state.auction.terms.id != auction_id:
                return
            try:
                async with state.lock:
                    await self._finish(self.host.room(room), state, state.auction)
            except CommandError:  # the store unreachable: the auction ends once it is written
                self._set_end(self.host.room(room), auction_id, self.host.clock.now_ms() + RETRY_FINISH_MS)

        ctx.schedule(f"auction:{auction_id}", at_ms, end)

    async def _finish(self, ctx: RoomContext, state: RoomAuction, auction: Auction) -> None:
        """At the end (under the lock): the order (if sold), then the result, then the news."""
        now = self.host.clock.now_ms()
        if auction.closed:
            return
        if now < auction.ends_at:  # a late bid moved the end meanwhile
            self._set_end(ctx, auction.terms.id, auction.ends_at)
            return
        await self._catch_up(ctx, state, auction)
        outcome, terms = auction.outcome(), auction.terms
        result = {"auction": terms.id, "title": terms.title, "ends_at": auction.ends_at, **outcome.wire()}
        top = outcome.winner
        if outcome.sold and top is not None:
            order = {
                "id": "o-" + terms.id,
                "auction": terms.id,
                "room": terms.room,
                "sku": state.sku,
                "title": terms.title,
                "user": top.user,
                "price": format_minor(top.amount_minor),
                "price_minor": top.amount_minor,
            }
            await ctx.store.put_record(Record(ORDER_KIND, terms.id, terms.room, order, int(now)))
            result["order"] = order["id"]
        stored, _ = await ctx.store.put_record(Record(RESULT_KIND, terms.id, terms.room, result, int(now)))
        auction.closed, state.result = True, dict(stored.data)
        ctx.cancel(f"auction:{terms.id}")
        self._price.forget(terms.room)
        if self._outbox is not None and outcome.sold:
            self._outbox.notify()
        await ctx.publish("auction.ended", state.result, priority=True, once=f"auction.ended:{terms.id}")
        if top is not None and outcome.sold:
            ctx.send_to(top.user, "auction.won", state.result)

    async def _publish_price(self, room: str) -> None:
        state = self._rooms.get(room)
        if state is not None and state.auction is not None and not state.auction.closed:
            now = self.host.clock.now_ms()
            data = {**state.auction.wire(now), "server_time": now}
            await self.host.services.publish(room, "auction.price", data, priority=True, history=False)
