"""Lucky bag (福袋): the host starts a draw; viewers who meet its conditions enter; at the
deadline the server draws with a seed it published the hash of at the start, and publishes
the seed with the winners, so anyone can re-run the draw (`luckybag_rules`).

Entry: the enter button (`luckybag.enter`) or, for a bag with a keyword, sending the keyword
in danmaku (the message hook; the message is published as usual and the sender is told
`luckybag.entered` or `luckybag.refused`). Conditions: watched the room for
`watch_minutes` without a break (counted on the node that holds the room, since it loaded
the room), a token `tier` among `tiers`. Each entry is a durable record (`luckybag.entry`,
key `<bag>/<user>`: one per user whichever node or connection it came through), acknowledged
once written. At the deadline new entries are refused and the ones being written are waited
for; the entries written are drawn (read back from the store if a write's outcome was
unknown), and that list is what `luckybag.entries` serves from then on. The result
(`luckybag.result`, with the seed) is written before it is announced (`luckybag.drawn`,
priority), each winner told personally (`luckybag.won`), and the webhooks plugin hands it
to the backend as `luckybag.won`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from liveroom.auth import Identity
from liveroom.errors import BadRequest, CommandError, NotFound, Unavailable
from liveroom.plugin import (
    MAX_POSITION,
    CommandContext,
    CommandSpec,
    Message,
    Plugin,
    PluginHost,
    QueryContext,
    QuerySpec,
    RoomContext,
    Verdict,
    rate_limited,
)
from liveroom.protocol import RequestId, RoomId
from liveroom.ratelimit import UserRate
from liveroom.record import Record, derived_id
from liveroom.store import records_of

from .coupon_rules import Presence
from .luckybag_rules import ALGORITHM, Bag, Via, check_entry, draw, keyword_matches, new_seed, seed_hash

__all__ = ["EnterPayload", "LuckyBagConfig", "LuckyBagPlugin", "StartPayload"]

BAG_KIND, ENTRY_KIND, RESULT_KIND = "luckybag.bag", "luckybag.entry", "luckybag.result"
PRIVATE = ("entries_upto", "room", "entries_after")  # result fields kept from clients
RETRY_DRAW_MS = 1000  # a draw whose result could not be written is tried again this much later
# At the deadline, entries being written are waited for (in steps of DRAIN_STEP_S, at most
# DRAIN_MAX_S: a store write hung past that is answered outcome_unknown by the node anyway).
DRAIN_STEP_S, DRAIN_MAX_S = 0.005, 10.0
Tier = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
BagId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]


@dataclass(frozen=True, slots=True)
class LuckyBagConfig:  # [plugins.luckybag]
    max_winners: int = 100
    min_duration_s: int = 10
    max_duration_s: int = 3600
    max_entrants: int = 1_000_000  # per bag; one more is refused `full`
    entrants_interval_ms: int = 1000  # luckybag.entrants (the running count) at most this often
    grace_s: float = 60.0  # a disconnect shorter than this does not reset watch time
    publish_rate_per_s: float = 2.0  # luckybag.start, per user and room
    publish_burst: int = 20
    entries_rate_per_s: float = 5.0  # luckybag.entries (pages of the list), per user and room
    entries_burst: int = 50


@dataclass(frozen=True, slots=True)
class StartPayload:
    room: RoomId
    prize: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    duration_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)]  # and min..max_duration_s
    winners: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1  # and at most max_winners
    keyword: Annotated[str, msgspec.Meta(max_length=32)] = ""
    watch_minutes: Annotated[float, msgspec.Meta(ge=0, le=1440)] = 0.0
    tiers: Annotated[list[Tier], msgspec.Meta(max_length=10)] = field(default_factory=list)
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class EnterPayload:
    room: RoomId
    bag: BagId


@dataclass(frozen=True, slots=True)
class EntriesPayload:
    room: RoomId
    bag: BagId
    after: Annotated[int, msgspec.Meta(ge=0, le=MAX_POSITION)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1000


@dataclass(slots=True)
class OpenBag:
    """The bag taking entries, as the node holding the room sees it."""

    bag: Bag
    seed: str
    entrants: dict[str, str] = field(default_factory=dict)  # user -> name, written entries
    writing: int = 0  # entries being written now
    closing: bool = False  # the deadline came: no more entries
    # An entry's write may have happened unseen (outcome_unknown, a cancelled hook): then
    # the draw reads the entry list back from the store instead of trusting `entrants`.
    uncertain: bool = False


@dataclass(slots=True)
class RoomBags:
    presence: Presence
    open: OpenBag | None = None
    last: dict[str, Any] | None = None  # the last result (public part)
    entry_position: int = 0  # the last entry's store position known here


class LuckyBagPlugin(Plugin):
    name = "luckybag"
    config_type = LuckyBagConfig
    item_types = (
        "luckybag.started",
        "luckybag.entrants",
        "luckybag.drawn",
        "luckybag.won",
        "luckybag.entered",
        "luckybag.refused",
    )
    message_priority = 100  # after moderation hooks and bots: enter with what is published
    config: LuckyBagConfig

    def __init__(self, config: LuckyBagConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        self._rooms: dict[str, RoomBags] = {}
        self._publish_rate = UserRate(config.publish_rate_per_s, config.publish_burst, "luckybag commands")
        self._entries_rate = UserRate(config.entries_rate_per_s, config.entries_burst, "entry list pages")
        self._count = host.throttle(config.entrants_interval_ms, self._publish_count)

    def commands(self) -> Sequence[CommandSpec[Any]]:
        start = rate_limited(self.start_bag, self._publish_rate, self.host.clock)
        entries = rate_limited(self.entries, self._entries_rate, self.host.clock)
        return (
            CommandSpec("luckybag.start", StartPayload, start, True, "Start a lucky bag draw"),
            CommandSpec("luckybag.enter", EnterPayload, self.enter, summary="Enter the open lucky bag"),
            CommandSpec("luckybag.entries", EntriesPayload, entries, summary="A bag's entry list, paged"),
        )

    def queries(self) -> Sequence[QuerySpec]:
        return (
            QuerySpec("luckybags/{bag}", self.bag_query, "A bag, and its result once drawn"),
            QuerySpec("luckybags/{bag}/entries", self.entries_query, "A bag's entry list, paged"),
        )

    # -- the room's life --------------------------------------------------------------

    async def load_room(self, ctx: RoomContext) -> None:
        """The last bag: drawn (its result) or still open (its entries, and its deadline)."""
        bags = RoomBags(Presence(self.config.grace_s * 1000))
        for member in ctx.members():  # a takeover: watch time counts again from now
            bags.presence.joined(member.user_id, ctx.now_ms)
        latest: Record | None = None
        async for record in records_of(ctx.store, BAG_KIND, ctx.room):
            latest = record
        if latest is not None:
            bag, seed = Bag.from_record(latest.data)
            result = await ctx.store.get_record(RESULT_KIND, bag.id)
            if result is not None:
                bags.last = _public(result.data)
                bags.entry_position = int(result.data.get("entries_upto", 0))
            else:
                opened = bags.open = OpenBag(bag, seed)
                bags.entry_position = bag.entries_after
                async for entry in records_of(ctx.store, ENTRY_KIND, ctx.room, bag.entries_after, page=1000):
                    bags.entry_position = entry.position
                    if entry.data["bag"] == bag.id:
                        opened.entrants[entry.data["user"]] = entry.data["name"]
                self._set_deadline(ctx, opened, bag.ends_at)
        self._rooms[ctx.room] = bags

    def release_room(self, room: str) -> None:
        self._publish_rate.forget(room)
        self._entries_rate.forget(room)
        self._rooms.pop(room, None)
        self._count.forget(room)

    async def snapshot(self, room: str) -> Mapping[str, Any] | None:
        bags = self._rooms[room]
        if bags.open is None and bags.last is None:
            return None
        opened = None if bags.open is None else {**bags.open.bag.wire(), "entrants": len(bags.open.entrants)}
        return {"open": opened, "last": bags.last}

    async def on_join(self, ctx: CommandContext) -> Mapping[str, Any] | None:
        bags = self._rooms[ctx.room]
        bags.presence.forget_gone(ctx.now_ms)
        bags.presence.joined(ctx.caller.user_id, ctx.now_ms)
        opened = bags.open
        return None if opened is None else {"entered": ctx.caller.user_id in opened.entrants}

    async def on_leave(self, room: str, user: Identity, now_ms: float) -> None:
        bags = self._rooms.get(room)
        if bags is not None:
            bags.presence.left(user.user_id, now_ms)

    async def figures(self, room: str, now_ms: float) -> Mapping[str, Any] | None:
        bags = self._rooms[room]
        if bags.open is not None:
            return {**bags.open.bag.wire(), "entrants": len(bags.open.entrants), "open": True}
        return None if bags.last is None else {**bags.last, "open": False}

    # -- commands -----------------------------------------------------------------------

    async def start_bag(self, ctx: CommandContext, payload: StartPayload) -> Mapping[str, Any]:
        config, bags = self.config, self._rooms[ctx.room]
        if not config.min_duration_s <= payload.duration_s <= config.max_duration_s:
            raise BadRequest(f"duration_s must be {config.min_duration_s}..{config.max_duration_s}")
        if payload.winners > config.max_winners:
            raise BadRequest(f"at most {config.max_winners} winners")
        request = payload.request_id
        bag_id = "b-" + (
            secrets.token_hex(6) if request is None else derived_id("", ctx.room, ctx.caller.user_id, request)
        )
        if bags.open is not None and bags.open.bag.id == bag_id:  # a retry of the start that opened it
            return _started(bags.open.bag)
        if bags.open is not None:
            raise CommandError(f"lucky bag {bags.open.bag.id} is still open", "bag_active")
        seed, now = new_seed(), int(ctx.now_ms)
        bag = Bag(
            bag_id,
            ctx.room,
            payload.prize,
            payload.winners,
            now,
            now + payload.duration_s * 1000,
            seed_hash(seed),
            payload.keyword.strip(),
            payload.watch_minutes,
            tuple(payload.tiers),
            bags.entry_position,
        )
        stored, created = await ctx.store.put_record(
            Record(BAG_KIND, bag.id, ctx.room, bag.record(seed), now)
        )
        bag, seed = Bag.from_record(stored.data)  # a retry: the bag its first attempt made
        if not created and await ctx.store.get_record(RESULT_KIND, bag.id) is not None:
            return _started(bag)
        bags.open = OpenBag(bag, seed)
        self._set_deadline(ctx, bags.open, bag.ends_at)
        await ctx.publish("luckybag.started", {**bag.wire(), "server_time": ctx.now_ms}, priority=True)
        return _started(bag)

    async def enter(self, ctx: CommandContext, payload: EnterPayload) -> Mapping[str, Any]:
        return await self._enter(ctx, ctx.caller, payload.bag, "button")

    async def entries(self, ctx: CommandContext, payload: EntriesPayload) -> Mapping[str, Any]:
        return await self._entries(ctx.room, payload.bag, payload.after, payload.limit)

    async def bag_query(self, query: QueryContext) -> Any:
        bag, _ = await self._bag(query.room, query.params["bag"])
        result = await self.host.store.get_record(RESULT_KIND, bag.id)
        return {"bag": bag.wire(), "result": None if result is None else _public(result.data)}

    async def entries_query(self, query: QueryContext) -> Any:
        after = query.int_param("after", 0, 0, MAX_POSITION)
        limit = query.int_param("limit", 1000, 1, 1000)
        return await self._entries(query.room, query.params["bag"], after, limit)

    # -- the message hook ---------------------------------------------------------------

    async def on_message(self, ctx: RoomContext, message: Message) -> Verdict:
        bags = self._rooms.get(ctx.room)
        opened = None if bags is None else bags.open
        if opened is None or not keyword_matches(opened.bag.keyword, message.text):
            return None
        try:
            entered = await self._enter(ctx, message.user, opened.bag.id, "keyword")
        except CommandError as refused:
            data = {"bag": opened.bag.id, "code": refused.code, "message": str(refused)}
            ctx.send_to(message.user.user_id, "luckybag.refused", data)
        else:
            ctx.send_to(message.user.user_id, "luckybag.entered", entered)
        return None

    # -- entering -----------------------------------------------------------------------

    async def _enter(self, ctx: RoomContext, user: Identity, bag_id: str, via: Via) -> dict[str, Any]:
        bags = self._rooms[ctx.room]
        opened = bags.open
        if opened is None or opened.bag.id != bag_id:
            raise NotFound(f"no open lucky bag {bag_id!r} in this room")
        if user.user_id in opened.entrants:
            return {"bag": bag_id, "entered": True, "entrants": len(opened.entrants)}
        if user.is_staff:
            raise CommandError("staff do not enter lucky bags", "not_eligible")
        if opened.closing:
            raise CommandError("the lucky bag is closed", "closed")
        check_entry(opened.bag, user.tier, bags.presence.present_since(user.user_id), ctx.now_ms, via)
        if len(opened.entrants) >= self.config.max_entrants:
            raise CommandError(f"at most {self.config.max_entrants} entrants", "full")
        data = {"bag": bag_id, "user": user.user_id, "name": user.name, "via": via}
        record = Record(ENTRY_KIND, f"{bag_id}/{user.user_id}", ctx.room, data, int(ctx.now_ms))
        opened.writing += 1
        try:  # durable first: a failed write leaves no entry behind
            stored, _ = await ctx.store.put_record(record)
        except Unavailable:  # not written
            raise
        except BaseException:  # perhaps written
            opened.uncertain = True
            raise
        finally:
            opened.writing -= 1
        opened.entrants[user.user_id] = stored.data["name"]
        bags.entry_position = max(bags.entry_position, stored.position)
        self._count.touch(ctx.room, room=ctx.room)
        return {"bag": bag_id, "entered": True, "entrants": len(opened.entrants)}

    async def _publish_count(self, room: str) -> None:
        bags = self._rooms.get(room)
        if bags is not None and bags.open is not None and not bags.open.closing:
            data = {"bag": bags.open.bag.id, "entrants": len(bags.open.entrants)}
            await self.host.services.publish(room, "luckybag.entrants", data, history=False)

    # -- the deadline and the draw --------------------------------------------------------

    def _set_deadline(self, ctx: RoomContext, opened: OpenBag, at_ms: float) -> None:
        room = opened.bag.room

        async def deadline(now_ms: float) -> None:
            try:
                await self._draw(self.host.room(room), opened)
            except CommandError:  # the store unreachable: drawn again once it answers
                self._set_deadline(ctx, opened, now_ms + RETRY_DRAW_MS)

        ctx.schedule(f"luckybag:{opened.bag.id}", at_ms, deadline)

    async def _draw(self, ctx: RoomContext, opened: OpenBag) -> None:
        """Close the entries, read the entry list back from the store, draw, write the result,
        then announce it and tell each winner."""
        opened.closing = True
        self._count.forget(ctx.room)
        for _ in range(int(DRAIN_MAX_S / DRAIN_STEP_S)):  # every entry acknowledged is drawn from
            if not opened.writing:
                break
            await asyncio.sleep(DRAIN_STEP_S)
        bag, bags = opened.bag, self._rooms.get(ctx.room)
        if opened.uncertain or bags is None:
            names, upto = await self._read_entries(ctx, bag)
        else:  # every entry written is in memory, up to the room's last entry position
            names, upto = dict(opened.entrants), bags.entry_position
        winners = [{"id": user, "name": names[user]} for user in draw(names, opened.seed, bag.winners)]
        result = {
            **bag.wire(),
            "winners": winners,
            "entrants": len(names),
            "seed": opened.seed,
            "algorithm": ALGORITHM,
            "drawn_at": int(self.host.clock.now_ms()),  # the winners known (the entries read)
            "entries_upto": upto,
        }
        stored, _ = await ctx.store.put_record(Record(RESULT_KIND, bag.id, ctx.room, result, int(ctx.now_ms)))
        public = _public(stored.data)
        if bags is not None and bags.open is opened:
            bags.open, bags.last = None, public
            bags.entry_position = max(bags.entry_position, upto)
        await ctx.publish("luckybag.drawn", public, priority=True, once=f"luckybag.drawn:{bag.id}")
        for winner in public["winners"]:
            ctx.send_to(winner["id"], "luckybag.won", {"bag": bag.id, "prize": bag.prize})

    # -- helpers ------------------------------------------------------------------------

    async def _read_entries(self, ctx: RoomContext, bag: Bag) -> tuple[dict[str, str], int]:
        """The bag's entries as the store has them (user -> name), and the last position read."""
        names: dict[str, str] = {}
        upto = bag.entries_after
        async for entry in records_of(ctx.store, ENTRY_KIND, ctx.room, bag.entries_after, page=1000):
            upto = entry.position
            if entry.data["bag"] == bag.id:
                names[entry.data["user"]] = entry.data["name"]
        return names, upto

    async def _bag(self, room: str, bag_id: str) -> tuple[Bag, str]:
        record = await self.host.store.get_record(BAG_KIND, bag_id)
        if record is None or record.room != room:
            raise NotFound(f"no lucky bag {bag_id!r} in this room")
        return Bag.from_record(record.data)

    async def _entries(self, room: str, bag_id: str, after: int, limit: int) -> dict[str, Any]:
        """A page of the bag's entries in write order; once drawn, exactly the list drawn from
        (`done`: no more pages)."""
        bag, _ = await self._bag(room, bag_id)
        result = await self.host.store.get_record(RESULT_KIND, bag.id)
        upto = MAX_POSITION if result is None else int(result.data["entries_upto"])
        found: list[dict[str, Any]] = []
        position, done = max(after, bag.entries_after), True
        async for entry in records_of(self.host.store, ENTRY_KIND, room, position, page=1000):
            if entry.position > upto:
                break
            position = entry.position
            if entry.data["bag"] == bag.id:
                found.append({"user": entry.data["user"], "name": entry.data["name"]})
                if len(found) >= limit:
                    done = False
                    break
        return {"bag": bag.id, "entries": found, "next": position, "done": done, "drawn": result is not None}


def _started(bag: Bag) -> dict[str, Any]:
    return {"bag": bag.id, "ends_at": bag.ends_at, "seed_hash": bag.seed_hash}


def _public(result: Mapping[str, Any]) -> dict[str, Any]:
    """A result as clients see it (the store position kept for paging left out)."""
    return {
        key: value for key, value in result.items() if key not in ("entries_upto", "room", "entries_after")
    }
