"""Gifts paid through the merchant's wallet, a leaderboard, and PK between two rooms.

`gift.send {room, gift, count, request_id}`: the gift's value (catalogue price x count,
minor units) is debited through the wallet (`plugins/gift_wallet.py`: POST `wallet_url`
with `Idempotency-Key`, retried with the same key on a timeout or a 5xx), then the gift is
the durable record `gift.sent` (keyed by the request: a retry is one gift and one debit),
then `gift.sent` goes to the room. Every answer is true: refused (`insufficient_funds`,
`wallet_refused`, `unavailable`) means no debit; `ok` means debited and recorded;
`outcome_unknown` means the debit may have happened (retry with the same request_id: the
wallet applies the key once). The room's leaderboard and totals are folded from its
records (`gift.leaderboard`, at most every `update_interval_ms`).

A PK (`gift.pk.start {room, opponent, duration_s}`) scores both rooms' gifts written in
`[started_at, ends_at)`. It is a record of its own (`gift.pk`, keyed by the PK id) and a
side record in each room (`gift.pk.side`), so each room's owner node (they may differ)
finds it from the store. At `ends_at + pk_settle_ms` whichever owner comes first counts
both rooms' gift records and writes the result once (`gift.pk.result`, write-once: a second
decider reads the first one's), and `gift.pk.ended` goes once to each room: the same winner
in both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from liveroom.errors import BadRequest, CommandError, NotFound, OutcomeUnknown, Unavailable
from liveroom.money import format_minor
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

from .gift_rules import Pk, Tally, parse_catalogue
from .gift_wallet import Wallet

__all__ = ["GiftConfig", "GiftPlugin", "PkStartPayload", "SendPayload"]

log = logging.getLogger(__name__)
GIFT_KIND, PK_KIND, SIDE_KIND, RESULT_KIND = "gift.sent", "gift.pk", "gift.pk.side", "gift.pk.result"
SHOW_EVENT_KIND = "show.event"  # the show plugin's records: {"op": "start", "run"} begins a show
RETRY_DECIDE_MS = 1000
MAX_UNCONFIRMED = 8  # side records of PK starts that failed half way, looked at again (newest)
GiftName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_\-]{1,32}$")]


@dataclass(frozen=True, slots=True)
class GiftConfig:
    # The merchant's wallet: POST {request_id, user, room, gift, count, amount_minor} with an
    # Idempotency-Key; it answers 2xx {"status": "ok"} or 402 {"status": "insufficient_funds"}.
    # Empty: gift.send is refused not_configured.
    wallet_url: str = ""
    wallet_secret: str = ""  # HMAC-SHA256 key of X-Liveroom-Signature; empty: unsigned
    # Each attempt waits at most wallet_timeout_s; an attempt with no definite answer is tried
    # again (same key) up to wallet_attempts times, wallet_backoff_ms x attempt apart. Keep the
    # whole under [limits] command_timeout_s and, on a cluster, [cluster] forward_timeout_s.
    wallet_timeout_s: float = 0.5
    wallet_attempts: int = 3
    wallet_backoff_ms: int = 100
    # The gifts: "name:price in minor units".
    catalogue: tuple[str, ...] = ("rose:100", "heart:1000", "rocket:50000")
    leaderboard_size: int = 10
    update_interval_ms: int = 500  # gift.leaderboard and gift.pk.score at most this often
    send_rate_per_s: float = 5.0  # per user and room: gift.send...
    send_burst: int = 20  # ...with this many in a row
    publish_rate_per_s: float = 2.0  # per user and room: gift.pk.start...
    publish_burst: int = 20
    pk_max_duration_s: int = 3600
    pk_settle_ms: int = 2000  # the PK is decided this long after its end (gifts under way land)


@dataclass(frozen=True, slots=True)
class SendPayload:
    room: RoomId
    gift: GiftName
    request_id: RequestId
    count: Annotated[int, msgspec.Meta(ge=1, le=9999)] = 1


@dataclass(frozen=True, slots=True)
class PkStartPayload:
    room: RoomId
    opponent: RoomId
    duration_s: Annotated[int, msgspec.Meta(ge=10, le=86_400)]
    request_id: RequestId | None = None


@dataclass(slots=True)
class RoomGifts:
    """A room's gifts as this node holds them."""

    tally: Tally = field(default_factory=Tally)  # every gift of the room: the leaderboard
    show: Tally = field(default_factory=Tally)  # the gifts since the run of show began: totals
    show_run: str | None = None
    show_since: int = 0  # when that run began (server ms)
    shows_after: int = 0  # last show.event record read
    pk: Pk | None = None
    pk_result: dict[str, Any] | None = None
    pk_scores: dict[str, int] = field(default_factory=dict)  # room -> score, as folded so far
    pk_after: dict[str, int] = field(default_factory=dict)  # room -> last gift position folded
    sides_after: int = 0  # last gift.pk.side record read
    unconfirmed: list[Pk] = field(default_factory=list)  # sides whose PK record is not written (yet)
    reading: asyncio.Future[None] | None = None  # the join-time read under way


class GiftPlugin(Plugin):
    name = "gift"
    config_type = GiftConfig
    item_types = ("gift.sent", "gift.leaderboard", "gift.pk.started", "gift.pk.score", "gift.pk.ended")
    config: GiftConfig

    def __init__(self, config: GiftConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        self._catalogue = parse_catalogue(config.catalogue)
        self._rooms: dict[str, RoomGifts] = {}
        self._send_rate = UserRate(config.send_rate_per_s, config.send_burst, "gifts")
        self._publish_rate = UserRate(config.publish_rate_per_s, config.publish_burst, "gift commands")
        self._board = host.throttle(config.update_interval_ms, self._publish_board)
        self._score = host.throttle(config.update_interval_ms, self._publish_score)
        self._wallet: Wallet | None = None
        if config.wallet_url:
            self._wallet = Wallet(
                config.wallet_url,
                config.wallet_timeout_s,
                config.wallet_attempts,
                config.wallet_backoff_ms,
                config.wallet_secret,
            )

    def commands(self) -> Sequence[CommandSpec[Any]]:
        clock = self.host.clock
        return (
            CommandSpec(
                "gift.send",
                SendPayload,
                rate_limited(self.send, self._send_rate, clock),
                summary="Send a gift",
            ),
            CommandSpec(
                "gift.pk.start",
                PkStartPayload,
                rate_limited(self.pk_start, self._publish_rate, clock),
                True,
                "Start a PK with another room",
            ),
        )

    def queries(self) -> Sequence[QuerySpec]:
        return (
            QuerySpec("gifts", self.query_gifts, "The room's leaderboard and totals"),
            QuerySpec("gifts/pk/{pk}", self.query_pk, "A PK: its terms and, once decided, its result"),
        )

    async def start(self) -> None:
        if self._wallet is not None:
            await self._wallet.start()

    async def stop(self) -> None:
        if self._wallet is not None:
            await self._wallet.stop()

    # -- the room's life --------------------------------------------------------------

    async def load_room(self, ctx: RoomContext) -> None:
        state = self._rooms[ctx.room] = RoomGifts(Tally(max_users=100_000))
        await self._fold(ctx.room, state)
        await self._refresh_pk(ctx, state)

    def release_room(self, room: str) -> None:
        self._send_rate.forget(room)
        self._publish_rate.forget(room)
        self._board.forget(room)
        self._score.forget(room)
        self._rooms.pop(room, None)

    async def snapshot(self, room: str) -> Mapping[str, Any] | None:
        state = self._rooms[room]
        # A run of show begun, a PK's side: read on (two store reads), once for all the joins
        # that come while a read is under way; and only when there is something to read: a PK
        # on, or a run of show (held in memory on this node, the room's owner, too) that the
        # totals do not know yet. A join storm must not queue store reads behind the room.
        if await self._worth_reading_on(room, state):
            if state.reading is None or state.reading.done():
                state.reading = asyncio.ensure_future(self._read_on(room, state))
                state.reading.add_done_callback(lambda done: done.cancelled() or done.exception())
            try:
                await asyncio.shield(state.reading)
            except CommandError:
                log.warning("gift: room %s: state as last read (the store failed)", room)
        return {
            "catalogue": [
                {"gift": name, "price": format_minor(price), "price_minor": price}
                for name, price in self._catalogue.items()
            ],
            "leaderboard": state.tally.leaderboard(self.config.leaderboard_size),
            "totals": self._totals(state),
            "pk": self._pk_wire(state),
        }

    async def figures(self, room: str, now_ms: float) -> Mapping[str, Any] | None:
        state = self._rooms[room]
        return None if not state.tally.gifts else {**self._totals(state), "pk": self._pk_wire(state)}

    # -- gift.send ----------------------------------------------------------------------

    async def send(self, ctx: CommandContext, payload: SendPayload) -> Mapping[str, Any]:
        price = self._catalogue.get(payload.gift)
        if price is None:
            raise CommandError(f"no gift {payload.gift!r} in the catalogue", "unknown_gift")
        if self._wallet is None:
            raise CommandError("gifts need a wallet ([plugins.gift] wallet_url)", "not_configured")
        user = ctx.caller.user_id
        key = derived_id("g-", ctx.room, user, payload.request_id)
        done = await ctx.store.get_record(GIFT_KIND, key)
        if done is None:
            value = price * payload.count
            body = {"request_id": key, "user": user, "room": ctx.room, "gift": payload.gift}
            debit = await self._wallet.debit(key, {**body, "count": payload.count, "amount_minor": value})
            self._check_debit(debit)
            data = {**body, "id": key, "name": ctx.caller.name, "count": payload.count, "value_minor": value}
            try:  # debited: from here on a failure is an unknown outcome, never a refusal
                done, _ = await ctx.store.put_record(
                    Record(GIFT_KIND, key, ctx.room, data, int(self.host.clock.now_ms()))
                )
            except CommandError as exc:
                raise OutcomeUnknown(
                    f"the wallet debited the gift but it could not be recorded ({exc.code}): "
                    "retry with the same request_id (the wallet debits it once)"
                ) from None
        gift = _wire(done)
        await ctx.publish("gift.sent", gift, once=key)
        state = self._rooms[ctx.room]
        try:  # the gift is durable: a store that fails now delays the figures, never the answer
            await self._fold(ctx.room, state)
            await self._refresh_pk(ctx, state)
        except CommandError:
            log.warning("gift: room %s: leaderboard and PK not updated now (the store failed)", ctx.room)
        return {"gift": gift}

    @staticmethod
    def _check_debit(debit: str) -> None:
        if debit == "insufficient":
            raise CommandError("not enough funds in the wallet", "insufficient_funds")
        if debit == "refused":
            raise CommandError("the wallet refused the debit", "wallet_refused")
        if debit == "unreachable":
            raise Unavailable("the wallet cannot be reached: nothing was debited")
        if debit != "ok":
            raise OutcomeUnknown(
                "the wallet did not answer: the debit may or may not have happened; "
                "retry with the same request_id (the wallet debits it once)"
            )

    async def _fold(self, room: str, state: RoomGifts, gifts: bool = True) -> None:
        """Add the room's gift records not counted yet (whoever wrote them; `gifts=False`: not
        now, on a join: this node wrote them), to the room's tally and to the current show's;
        a new run of show (the show plugin's start record) starts the show's totals again."""
        store, before, fresh = self.host.store, state.tally.after, []
        if gifts:
            async for record in records_of(store, GIFT_KIND, room, state.tally.after, page=1000):
                state.tally.add(record.data, record.position)
                fresh.append(record)
        started = None
        async for event in records_of(store, SHOW_EVENT_KIND, room, state.shows_after):
            state.shows_after = event.position
            if event.data.get("op") == "start":
                started = event
        if started is not None:
            state.show_run, state.show_since = str(started.data.get("run")), started.created_ms
            state.show, fresh = Tally(max_users=0), []
            async for record in records_of(store, GIFT_KIND, room, 0, page=1000):
                if record.position <= state.tally.after:  # the rest: counted when folded
                    fresh.append(record)
        for record in fresh:
            if record.created_ms >= state.show_since:
                state.show.add(record.data, record.position)
        if state.tally.after != before or started is not None:
            self._board.touch(room, room=room)

    async def _worth_reading_on(self, room: str, state: RoomGifts) -> bool:
        if state.pk is not None:
            return True
        show = next((p for p in self.host.plugins if p.name == "show"), None)
        if show is None:
            return False
        found = await show.snapshot(room)
        stage = None if found is None else found.get("stage")
        run = None if not stage else stage.get("run")
        return run is not None and run != state.show_run

    async def _read_on(self, room: str, state: RoomGifts) -> None:
        await self._fold(room, state, gifts=False)
        await self._refresh_pk(self.host.room(room), state)

    def _totals(self, state: RoomGifts) -> dict[str, Any]:
        """The show's totals (since its run began; no run: the room's), and the room's."""
        return {
            **state.show.totals(),
            "show": state.show_run,
            "room_total": format_minor(state.tally.total_minor),
            "room_total_minor": state.tally.total_minor,
        }

    # -- PK -----------------------------------------------------------------------------

    async def pk_start(self, ctx: CommandContext, payload: PkStartPayload) -> Mapping[str, Any]:
        if payload.opponent == ctx.room:
            raise BadRequest("a PK is between two rooms")
        if payload.duration_s > self.config.pk_max_duration_s:
            raise BadRequest(f"duration_s is at most {self.config.pk_max_duration_s}")
        state, now = self._rooms[ctx.room], int(ctx.now_ms)
        request = payload.request_id
        pk_id = "pk-" + derived_id("", ctx.room, ctx.caller.user_id, request or str(now))
        await self._refresh_pk(ctx, state)
        if state.pk is not None and state.pk.id == pk_id:  # a retry of the start that made it
            return {"pk": state.pk.record()}
        if self._running(state, now):
            raise CommandError("this room is in a PK already", "pk_active")
        if await self._busy(payload.opponent, now):
            raise CommandError(f"room {payload.opponent!r} is in a PK already", "opponent_busy")
        pk = Pk(pk_id, (ctx.room, payload.opponent), now, now + payload.duration_s * 1000)
        # The sides first, the PK record last: a side counts only once its PK is written, so
        # a start that fails half way leaves nothing anyone sees (and a retry, the same id,
        # completes it with the times its first attempt wrote).
        for room in (payload.opponent, ctx.room):
            stored, _ = await ctx.store.put_record(
                Record(SIDE_KIND, f"{pk.id}/{room}", room, pk.record(), now)
            )
            pk = Pk.from_record(stored.data)
        await ctx.store.put_record(Record(PK_KIND, pk.id, ctx.room, pk.record(), now))
        await self._refresh_pk(ctx, state)
        started = {**pk.record(), "server_time": ctx.now_ms}
        for room in pk.rooms:
            await self.host.services.publish(room, "gift.pk.started", started, priority=True, once=pk.id)
        return {"pk": pk.record()}

    def _running(self, state: RoomGifts, now: float) -> bool:
        return (
            state.pk is not None
            and state.pk_result is None
            and now < state.pk.decide_at(self.config.pk_settle_ms)
        )

    async def _busy(self, room: str, now: float) -> bool:
        """Whether the opponent has a PK (written whole) not decided yet."""
        latest = None
        async for record in records_of(self.host.store, SIDE_KIND, room):
            found = Pk.from_record(record.data)
            if await self.host.store.get_record(PK_KIND, found.id) is not None:
                latest = found
        if latest is None or now >= latest.decide_at(self.config.pk_settle_ms):
            return False
        return await self.host.store.get_record(RESULT_KIND, latest.id) is None

    async def _refresh_pk(self, ctx: RoomContext, state: RoomGifts) -> None:
        """Take up a PK this room was put in (its side records, read on from the last one,
        each once its PK record is written), and fold the PK's gifts of both rooms written
        since the last look."""
        async for record in records_of(ctx.store, SIDE_KIND, ctx.room, state.sides_after):
            state.sides_after = record.position
            state.unconfirmed = [*state.unconfirmed, Pk.from_record(record.data)][-MAX_UNCONFIRMED:]
        for found in list(state.unconfirmed):
            if await ctx.store.get_record(PK_KIND, found.id) is None:
                continue  # its start failed half way (or is under way): not a PK yet
            state.unconfirmed.remove(found)
            if state.pk is None or found.started_at >= state.pk.started_at:
                state.pk, state.pk_scores, state.pk_after = found, {}, {}
                result = await ctx.store.get_record(RESULT_KIND, found.id)
                state.pk_result = None if result is None else dict(result.data)
                if result is None:
                    self._set_decision(ctx, found)
        pk = state.pk
        if pk is None or state.pk_result is not None:
            return
        changed = False
        for room in pk.rooms:
            after = state.pk_after.get(room, 0)
            async for record in records_of(ctx.store, GIFT_KIND, room, after, page=1000):
                after = record.position
                if pk.counts(record.created_ms):
                    state.pk_scores[room] = state.pk_scores.get(room, 0) + int(record.data["value_minor"])
                    changed = True
            state.pk_after[room] = after
        if changed:
            self._score.touch(ctx.room, room=ctx.room)

    def _set_decision(self, ctx: RoomContext, pk: Pk) -> None:
        room = ctx.room

        async def decide(now_ms: float) -> None:
            try:
                await self._decide(room, pk)
            except CommandError:  # the store unreachable: decided once it can be written
                self.host.room(room).schedule(f"gift.pk:{pk.id}", now_ms + RETRY_DECIDE_MS, decide)

        ctx.schedule(f"gift.pk:{pk.id}", pk.decide_at(self.config.pk_settle_ms), decide)

    async def _decide(self, room: str, pk: Pk) -> None:
        """Count both rooms' gifts in the window from the records and write the result once;
        a result already written (by the other room's owner) is the one announced."""
        store = self.host.store
        found = await store.get_record(RESULT_KIND, pk.id)
        if found is None:
            scores = {side: 0 for side in pk.rooms}
            for side in pk.rooms:
                async for record in records_of(store, GIFT_KIND, side, page=1000):
                    if pk.counts(record.created_ms):
                        scores[side] += int(record.data["value_minor"])
            made = Record(RESULT_KIND, pk.id, pk.rooms[0], pk.result(scores), int(self.host.clock.now_ms()))
            found, _ = await store.put_record(made)
        result = dict(found.data)
        state = self._rooms.get(room)
        if state is not None and state.pk is not None and state.pk.id == pk.id:
            state.pk_result = result
            self._score.forget(room)
        for side in pk.rooms:  # both rooms, once each, whoever decided
            await self.host.services.publish(
                side, "gift.pk.ended", result, priority=True, once=f"{pk.id}:ended"
            )

    def _pk_wire(self, state: RoomGifts) -> dict[str, Any] | None:
        pk = state.pk
        if pk is None:
            return None
        if state.pk_result is not None:
            return {**state.pk_result, "ended": True}
        scores = {room: state.pk_scores.get(room, 0) for room in pk.rooms}
        return {**pk.record(), "scores": scores, "ended": False, "server_time": self.host.clock.now_ms()}

    # -- queries and throttled items ------------------------------------------------------

    async def query_gifts(self, query: QueryContext) -> Any:
        state = self._rooms[query.room]
        await self._fold(query.room, state)
        return {"leaderboard": state.tally.leaderboard(self.config.leaderboard_size), **self._totals(state)}

    async def query_pk(self, query: QueryContext) -> Any:
        record = await self.host.store.get_record(PK_KIND, query.params["pk"])
        if record is None or query.room not in record.data["rooms"]:
            raise NotFound("no PK by that id with this room")
        result = await self.host.store.get_record(RESULT_KIND, record.key)
        return {"pk": dict(record.data), "result": None if result is None else dict(result.data)}

    async def _publish_board(self, room: str) -> None:
        state = self._rooms.get(room)
        if state is not None:
            data = {
                "leaderboard": state.tally.leaderboard(self.config.leaderboard_size),
                **self._totals(state),
            }
            await self.host.services.publish(room, "gift.leaderboard", data, history=False)

    async def _publish_score(self, room: str) -> None:
        """This room's side's score (and the other's as last read) to both rooms."""
        state = self._rooms.get(room)
        wire = None if state is None else self._pk_wire(state)
        if state is not None and state.pk is not None and wire is not None and not wire["ended"]:
            for side in state.pk.rooms:
                await self.host.services.publish(side, "gift.pk.score", wire, priority=True, history=False)


def _wire(record: Record) -> dict[str, Any]:
    data = record.data
    return {
        "id": data["id"],
        "user": {"id": data["user"], "name": data["name"]},
        "gift": data["gift"],
        "count": data["count"],
        "value": format_minor(int(data["value_minor"])),
        "value_minor": data["value_minor"],
        "at": record.created_ms,
    }
