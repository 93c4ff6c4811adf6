"""Coupons: granted by watch time, activity or a host's drop; idempotent, budgeted, durable.

A grant is one `Store.take_stock` on the rule's pool in the room (budget = stock, one per
user, request id "grant"), so it is idempotent per (user, rule), never over budget, and a
durable record before the user is told. The user alone hears `coupon.granted` (priority,
`seq: null`); grants not yet claimed come back in `join`'s state as `pending`. A room's
rules are rebuilt from their records when the room is loaded; who has watched how long,
and who did what, is counted while the room is held (a watch timer runs only while its
user is present).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec

from liveroom.auth import Identity
from liveroom.errors import CommandError, NotFound
from liveroom.plugin import (
    Activity,
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

from .coupon_rules import ActivityLog, CouponRule, CouponTally, Presence, parse_rule

__all__ = ["CouponConfig", "CouponPlugin"]

RULE_KIND, GRANT_KIND, CLAIM_KIND = "coupon.rule", "coupon.grant", "coupon.claim"
RuleId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
ActivityName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_.-]{0,31}$")]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


@dataclass(frozen=True, slots=True)
class CouponConfig:
    # Rules for every room: `id=... trigger=watch_time|activity minutes=.. activity=.. count=..
    # budget=.. title="..."` (budget per room).
    rules: tuple[str, ...] = (
        'id=watch30 trigger=watch_time minutes=30 budget=100000 title="Thanks for watching"',
    )
    grace_s: float = 60.0  # a disconnect shorter than this does not reset watch time
    # Per user and room, for the commands that publish to the room (rule, drop):
    # `publish_burst` in a row, then `publish_rate_per_s` a second (else rate_limited).
    publish_rate_per_s: float = 2.0
    publish_burst: int = 20
    max_fired: int = 10_000  # per room: coupon.activity request ids remembered (a retry counts once)


@dataclass(frozen=True, slots=True)
class RulePayload:
    room: RoomId
    title: Title
    trigger: Literal["watch_time", "activity", "grant"]
    budget: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
    minutes: Annotated[float, msgspec.Meta(ge=0.1, le=1440)] = 30.0
    activity: ActivityName | Literal[""] = ""  # danmaku, vote, like, or a name fired by coupon.activity
    count: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 1
    # A streak: `count` within this many seconds (0: over the whole show).
    within_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 0.0
    # Idempotency: the same request_id adds one rule, however often it is sent.
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class DropPayload:
    room: RoomId
    title: Title
    count: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
    request_id: RequestId | None = None  # the same one makes one drop


@dataclass(frozen=True, slots=True)
class GrantPayload:
    room: RoomId
    user: UserId
    rule: RuleId
    request_id: RequestId  # a retry: the same grant (a grant is one per user and rule anyway)


@dataclass(frozen=True, slots=True)
class ActivityPayload:
    room: RoomId
    user: UserId
    kind: ActivityName  # "follow", "share", "game_won"...: what activity rules count
    amount: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1
    request_id: RequestId | None = None  # the same one counts once (the room's last max_fired)


@dataclass(slots=True)
class RoomCoupons:
    """A room's coupons as this node holds them."""

    rules: dict[str, CouponRule]
    presence: Presence
    activity: ActivityLog = field(default_factory=ActivityLog)
    pools: set[str] = field(default_factory=set)  # stock pools known to be defined
    tally: CouponTally = field(default_factory=CouponTally)
    # user -> rule -> their unclaimed grant, for the users present (read from the store on join)
    unclaimed: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    spent: set[str] = field(default_factory=set)  # rules whose budget ran out (seen here)

    def watched(self) -> list[CouponRule]:
        """The watch-time rules still granting: a join sets a timer for each, and no other."""
        return [r for r in self.rules.values() if r.trigger == "watch_time" and r.id not in self.spent]

    fired: dict[str, None] = field(default_factory=dict)  # coupon.activity request ids, oldest first


@dataclass(frozen=True, slots=True)
class RuleRef:
    room: RoomId
    rule: RuleId


class CouponPlugin(Plugin):
    name = "coupon"
    config_type = CouponConfig
    item_types = ("coupon.granted", "coupon.drop")
    config: CouponConfig

    def __init__(self, config: CouponConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        self._publish_rate = UserRate(config.publish_rate_per_s, config.publish_burst, "coupon commands")
        self._config_rules = {rule.id: rule for rule in map(parse_rule, config.rules)}
        self._rooms: dict[str, RoomCoupons] = {}
        host.signals.listen(self._on_activity)

    def _limited(self, handler: Any) -> Any:
        """The handler under this plugin's per-user publish rate (`publish_rate_per_s`)."""
        return rate_limited(handler, self._publish_rate, self.host.clock)

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return (
            CommandSpec(
                "coupon.rule",
                RulePayload,
                self._limited(self.add_rule),
                True,
                "Add a coupon rule to the room",
            ),
            CommandSpec(
                "coupon.drop", DropPayload, self._limited(self.drop), True, "Drop M coupons (first come)"
            ),
            CommandSpec("coupon.grab", RuleRef, self.grab, summary="Grab a coupon from a drop"),
            CommandSpec("coupon.claim", RuleRef, self.claim, summary="Claim (redeem) a granted coupon"),
            CommandSpec(
                "coupon.grant",
                GrantPayload,
                self.grant,
                True,
                "Grant a rule's coupon to a user",
                "coupons/grants",
            ),
            CommandSpec(
                "coupon.activity",
                ActivityPayload,
                self.fire,
                True,
                "Count an activity of a user",
                "activities",
            ),
        )

    def queries(self) -> Sequence[QuerySpec]:
        return (QuerySpec("coupons/rules", self.list_rules, "The coupon rules of the room"),)

    # -- the room's life --------------------------------------------------------------

    async def load_room(self, ctx: RoomContext) -> None:
        rules = dict(self._config_rules)
        async for record in records_of(ctx.store, RULE_KIND, ctx.room):
            rules[record.key] = CouponRule.from_wire(record.data)
        self._rooms[ctx.room] = RoomCoupons(rules, Presence(self.config.grace_s * 1000))

    def release_room(self, room: str) -> None:
        self._publish_rate.forget(room)
        self._rooms.pop(room, None)

    async def on_join(self, ctx: CommandContext) -> Mapping[str, Any] | None:
        coupons, user = self._rooms[ctx.room], ctx.caller
        coupons.presence.forget_gone(ctx.now_ms)
        since = coupons.presence.joined(user.user_id, ctx.now_ms)
        for rule in coupons.watched():
            self._watch(ctx, user, rule, since)
        return {"pending": list((await self._pending(ctx.room, user.user_id)).values())}

    async def on_leave(self, room: str, user: Identity, now_ms: float) -> None:
        coupons = self._rooms[room]
        coupons.presence.left(user.user_id, now_ms)
        coupons.unclaimed.pop(user.user_id, None)
        for rule in coupons.rules.values():  # a rejoin within the grace period sets them again
            if rule.trigger == "watch_time":
                self.host.timers.cancel(_watch_key(room, user.user_id, rule.id))

    # -- commands -----------------------------------------------------------------------

    async def add_rule(self, ctx: CommandContext, payload: RulePayload) -> Mapping[str, Any]:
        if payload.trigger == "activity" and not payload.activity:
            raise CommandError("an activity rule names its activity", "bad_request")
        rule = CouponRule(
            _new_rule_id("c-", ctx, payload.request_id),
            payload.title,
            payload.trigger,
            payload.budget,
            payload.minutes,
            payload.activity,
            payload.count,
            payload.within_s,
        ).check()
        rule, created = await self._save_rule(ctx, rule)
        if not created:  # a retry: the rule is there already
            return {"rule": rule.id}
        presence = self._rooms[ctx.room].presence
        for member in ctx.members():
            since = presence.joined(member.user_id, ctx.now_ms)
            if rule.trigger == "watch_time":
                self._watch(ctx, member, rule, since)
        return {"rule": rule.id}

    async def drop(self, ctx: CommandContext, payload: DropPayload) -> Mapping[str, Any]:
        rule = CouponRule(_new_rule_id("d-", ctx, payload.request_id), payload.title, "drop", payload.count)
        rule, created = await self._save_rule(ctx, rule)
        if not created:
            return {"rule": rule.id}
        await ctx.publish(
            "coupon.drop", {"rule": rule.id, "title": rule.title, "count": rule.budget}, priority=True
        )
        return {"rule": rule.id}

    async def grab(self, ctx: CommandContext, payload: RuleRef) -> Mapping[str, Any]:
        rule = self._rooms[ctx.room].rules.get(payload.rule)
        if rule is None or rule.trigger != "drop":
            raise NotFound(f"no coupon drop {payload.rule!r} in this room")
        grant = await self._grant(ctx.room, ctx.caller, rule)
        if grant is None:
            raise CommandError("all coupons of this drop are gone", "exhausted")
        return {"grant": grant}

    async def claim(self, ctx: CommandContext, payload: RuleRef) -> Mapping[str, Any]:
        grant = await ctx.store.get_record(GRANT_KIND, _grant_key(ctx.room, payload.rule, ctx.caller.user_id))
        if grant is None:
            raise NotFound("you have no coupon from this rule")
        _, created = await ctx.store.put_record(
            Record(CLAIM_KIND, grant.key, ctx.room, {"grant": grant.data["id"]}, int(ctx.now_ms))
        )
        if not created:
            raise CommandError("this coupon was already claimed", "already_claimed")
        (await self._pending(ctx.room, ctx.caller.user_id)).pop(payload.rule, None)
        return {"grant": dict(grant.data), "claimed_at": int(ctx.now_ms)}

    async def grant(self, ctx: CommandContext, payload: GrantPayload) -> Mapping[str, Any]:
        """A backend's (or staff's) grant: the user hears `coupon.granted` at once if connected
        here, and finds it in `join`'s `pending` otherwise."""
        rule = self._rooms[ctx.room].rules.get(payload.rule)
        if rule is None:
            raise NotFound(f"no coupon rule {payload.rule!r} in this room")
        grant = await self._grant(ctx.room, _someone(payload.user), rule)
        if grant is None:
            raise CommandError("this rule's budget is spent", "exhausted")
        return {"grant": grant}

    async def fire(self, ctx: CommandContext, payload: ActivityPayload) -> Mapping[str, Any]:
        """An activity by name, as a plugin fires one (`host.signals.emit`): rules count it."""
        fired = self._rooms[ctx.room].fired
        request = payload.request_id
        if request is not None and request in fired:
            return {"user": payload.user, "kind": payload.kind, "repeated": True}
        activity = Activity(ctx.room, _someone(payload.user), payload.kind, payload.amount, ctx.now_ms)
        await self.host.signals.emit(activity)
        if request is not None:
            fired[request] = None
            while len(fired) > self.config.max_fired:
                fired.pop(next(iter(fired)))
        return {"user": payload.user, "kind": payload.kind, "repeated": False}

    # -- reads --------------------------------------------------------------------------

    async def list_rules(self, query: QueryContext) -> Any:
        tally = await self._read_on(query.room, CouponTally())
        rules = self._rooms[query.room].rules.values()
        return {
            "rules": [
                {**r.wire(), "issued": tally.issued[r.id], "claimed": tally.claimed[r.id]} for r in rules
            ]
        }

    async def figures(self, room: str, now_ms: float) -> Mapping[str, Any] | None:
        """Coupons issued and claimed in the room (every node's), read on from the last time."""
        coupons = self._rooms[room]
        tally = await self._read_on(room, coupons.tally)
        rules = [
            {
                "id": r.id,
                "title": r.title,
                "trigger": r.trigger,
                "issued": tally.issued[r.id],
                "claimed": tally.claimed[r.id],
            }
            for r in coupons.rules.values()
        ]
        return {"issued": tally.issued.total(), "claimed": tally.claimed.total(), "rules": rules}

    async def _read_on(self, room: str, tally: CouponTally) -> CouponTally:
        """Fold the grants, then the claims, written since the tally last read."""
        async for record in records_of(self.host.store, GRANT_KIND, room, tally.grants_after, page=1000):
            tally.grant(record.data, record.position)
        async for record in records_of(self.host.store, CLAIM_KIND, room, tally.claims_after, page=1000):
            tally.claim(record.data, record.position)
        return tally

    # -- granting -----------------------------------------------------------------------

    async def _on_activity(self, activity: Activity) -> None:
        coupons = self._rooms.get(activity.room)
        if coupons is None:
            return
        rules = [r for r in coupons.rules.values() if r.activity == activity.kind]
        if not rules:
            return
        key = (activity.user.user_id, activity.kind)
        coupons.activity.add(key, activity.now_ms, activity.amount)
        for rule in rules:
            if coupons.activity.count(key, activity.now_ms, rule.within_s) >= rule.count:
                await self._grant(activity.room, activity.user, rule)

    def _watch(self, ctx: RoomContext, user: Identity, rule: CouponRule, since: float) -> None:
        room = ctx.room

        async def watched(now_ms: float) -> None:
            coupons = self._rooms.get(room)
            if coupons is not None and coupons.presence.present_since(user.user_id) == since:
                await self._grant(room, user, rule)

        # Not a waking timer: it matters only while the user is here (and the room with them).
        at = since + rule.minutes * 60_000
        ctx.schedule(_watch_key(room, user.user_id, rule.id), at, watched, wake=False)

    async def _grant(self, room: str, user: Identity, rule: CouponRule) -> dict[str, Any] | None:
        """Issue (or find) the user's grant; None when the budget is spent.

        Shielded: a caller given up on halfway (a like.send past the command timeout while
        the store was slow) must not leave a grant written but never told to its user nor
        kept among their unclaimed ones; the caller's answer says its outcome is unknown."""
        return await asyncio.shield(asyncio.ensure_future(self._issue(room, user, rule)))

    async def _issue(self, room: str, user: Identity, rule: CouponRule) -> dict[str, Any] | None:
        store, pool, coupons = self.host.store, _pool(room, rule.id), self._rooms[room]
        if pool not in coupons.pools:
            await store.define_stock(pool, room, rule.budget, 1, GRANT_KIND, int(self.host.clock.now_ms()))
            coupons.pools.add(pool)
        data = {"id": "g-" + secrets.token_hex(8), "rule": rule.id, "title": rule.title}
        outcome = await store.take_stock(
            StockRequest(pool, user.user_id, 1, "grant", data, int(self.host.clock.now_ms()))
        )
        if outcome.order is None:
            coupons.spent.add(rule.id)  # no more watch timers for it in this room
            return None
        grant = {key: outcome.order.data[key] for key in ("id", "rule", "title", "user")}
        if outcome.status == "ok":
            pending = coupons.unclaimed.get(user.user_id)
            if pending is not None:
                pending[rule.id] = grant
            self.host.services.send_to_user(room, user.user_id, "coupon.granted", grant)
        return grant

    async def _pending(self, room: str, user: str) -> dict[str, dict[str, Any]]:
        """rule -> the user's unclaimed grant: read from the store on join, then kept current."""
        coupons = self._rooms[room]
        cached = coupons.unclaimed.get(user)
        if cached is not None:
            return cached
        pending: dict[str, dict[str, Any]] = {}
        for rule in coupons.rules.values():
            grant = await self.host.store.get_record(GRANT_KIND, _grant_key(room, rule.id, user))
            if grant is not None and await self.host.store.get_record(CLAIM_KIND, grant.key) is None:
                pending[rule.id] = {key: grant.data[key] for key in ("id", "rule", "title", "user")}
        # Kept while the user is here (dropped on leave): bounded by the users present.
        return coupons.unclaimed.setdefault(user, pending)

    async def _save_rule(self, ctx: CommandContext, rule: CouponRule) -> tuple[CouponRule, bool]:
        """Durable first, then in memory; (the rule stored, whether this call created it)."""
        stored, created = await ctx.store.put_record(
            Record(RULE_KIND, rule.id, ctx.room, rule.wire(), int(ctx.now_ms))
        )
        rule = self._rooms[ctx.room].rules[rule.id] = CouponRule.from_wire(stored.data)
        return rule, created


def _someone(user: str) -> Identity:
    """A user named by a backend (who may not be connected)."""
    return Identity(user, user, "viewer")


def _watch_key(room: str, user: str, rule: str) -> str:
    return f"coupon:watch:{room}:{user}:{rule}"


def _new_rule_id(prefix: str, ctx: CommandContext, request: str | None) -> str:
    if request is None:
        return prefix + secrets.token_hex(5)
    return prefix + derived_id("", ctx.room, ctx.caller.user_id, request)


def _pool(room: str, rule: str) -> str:
    return f"coupon:{room}:{rule}"


def _grant_key(room: str, rule: str, user: str) -> str:
    return order_key(_pool(room, rule), user, "grant")
