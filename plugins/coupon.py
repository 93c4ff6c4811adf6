"""Coupons: granted by watch time, activity or a host's drop; idempotent, budgeted, durable.

A grant is one `Store.take_stock` on the rule's pool in the room (budget = stock, one per
user, request id "grant"), so it is idempotent per (user, rule), never over budget, and a
durable record before the user is told. The user alone hears `coupon.granted` (priority,
`seq: null`); grants not yet claimed come back in `join`'s state as `pending`.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from liveroom.auth import Identity
from liveroom.errors import CommandError, NotFound
from liveroom.plugin import Activity, CommandContext, CommandSpec, Plugin, PluginHost, QueryContext, QuerySpec
from liveroom.protocol import RequestId, RoomId
from liveroom.record import Record, derived_id
from liveroom.stock import StockRequest, order_key

from .coupon_rules import ActivityLog, CouponRule, CouponTally, Presence, parse_rule

__all__ = ["CouponConfig", "CouponPlugin"]

RULE_KIND, GRANT_KIND, CLAIM_KIND = "coupon.rule", "coupon.grant", "coupon.claim"
MAX_TALLIES = 10_000  # rooms whose issued/claimed counts are kept for the dashboard
MAX_CACHED_USERS = 200_000  # (room, user) pending-grant lists kept in memory, least recent dropped
RuleId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


@dataclass(frozen=True, slots=True)
class CouponConfig:
    # Rules for every room: `id=... trigger=watch_time|activity minutes=.. activity=.. count=..
    # budget=.. title="..."` (budget per room).
    rules: tuple[str, ...] = (
        'id=watch30 trigger=watch_time minutes=30 budget=100000 title="Thanks for watching"',
    )
    grace_s: float = 60.0  # a disconnect shorter than this does not reset watch time


@dataclass(frozen=True, slots=True)
class RulePayload:
    room: RoomId
    title: Title
    trigger: Literal["watch_time", "activity"]
    budget: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
    minutes: Annotated[float, msgspec.Meta(gt=0, le=1440)] = 30.0
    activity: Literal["danmaku", "vote", "like", ""] = ""
    count: Annotated[int, msgspec.Meta(ge=1)] = 1
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
        self._config_rules = {rule.id: rule for rule in map(parse_rule, config.rules)}
        self._room_rules: dict[str, dict[str, CouponRule]] = {}
        self._presence: dict[str, Presence] = {}
        self._activity = ActivityLog()
        self._granted: set[tuple[str, str, str]] = set()
        self._pools: set[str] = set()
        self._tallies: OrderedDict[str, CouponTally] = OrderedDict()
        self._unclaimed: OrderedDict[tuple[str, str], dict[str, dict[str, Any]]] = OrderedDict()
        host.signals.listen(self._on_activity)

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return (
            CommandSpec("coupon.rule", RulePayload, self.add_rule, True, "Add a coupon rule to the room"),
            CommandSpec("coupon.drop", DropPayload, self.drop, True, "Drop M coupons (first come)"),
            CommandSpec("coupon.grab", RuleRef, self.grab, summary="Grab a coupon from a drop"),
            CommandSpec("coupon.claim", RuleRef, self.claim, summary="Claim (redeem) a granted coupon"),
        )

    def queries(self) -> Sequence[QuerySpec]:
        return (QuerySpec("coupons/rules", self.list_rules, "The coupon rules of the room"),)

    async def on_join(self, ctx: CommandContext) -> Mapping[str, Any] | None:
        rules = await self._rules(ctx.room)
        user = ctx.caller
        presence = self._presence.setdefault(ctx.room, Presence(self.config.grace_s * 1000))
        presence.forget_gone(ctx.now_ms)
        since = presence.joined(user.user_id, ctx.now_ms)
        for rule in rules.values():
            if rule.trigger == "watch_time":
                self._watch(ctx.room, user, rule, since)
        return {"pending": list((await self._pending(ctx.room, user.user_id)).values())}

    async def on_leave(self, room: str, user: Identity, now_ms: float) -> None:
        presence = self._presence.get(room)
        if presence is not None:
            presence.left(user.user_id, now_ms)

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
        for member in ctx.members():
            since = self._presence.setdefault(ctx.room, Presence(self.config.grace_s * 1000)).joined(
                member.user_id, ctx.now_ms
            )
            if rule.trigger == "watch_time":
                self._watch(ctx.room, member, rule, since)
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
        rule = (await self._rules(ctx.room)).get(payload.rule)
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

    async def list_rules(self, query: QueryContext) -> Any:
        tally = await self._read_on(query.room, CouponTally())
        rules = (await self._rules(query.room)).values()
        return {
            "rules": [
                {**r.wire(), "issued": tally.issued[r.id], "claimed": tally.claimed[r.id]} for r in rules
            ]
        }

    async def figures(self, room: str, now_ms: float) -> Mapping[str, Any] | None:
        """Coupons issued and claimed in the room (every node's), read on from the last time."""
        tally = await self._read_on(room, self._tallies.pop(room, CouponTally()))
        self._tallies[room] = tally  # most recently used last
        if len(self._tallies) > MAX_TALLIES:
            self._tallies.popitem(last=False)
        rules = [
            {
                "id": r.id,
                "title": r.title,
                "trigger": r.trigger,
                "issued": tally.issued[r.id],
                "claimed": tally.claimed[r.id],
            }
            for r in (await self._rules(room)).values()
        ]
        return {"issued": tally.issued.total(), "claimed": tally.claimed.total(), "rules": rules}

    async def _read_on(self, room: str, tally: CouponTally) -> CouponTally:
        """Fold the grants, then the claims, written since the tally last read."""
        store = self.host.store
        while page := await store.list_records(GRANT_KIND, room, tally.grants_after, 1000):
            for record in page:
                tally.grant(record.data, record.position)
        while page := await store.list_records(CLAIM_KIND, room, tally.claims_after, 1000):
            for record in page:
                tally.claim(record.data, record.position)
        return tally

    async def _on_activity(self, activity: Activity) -> None:
        rules = [r for r in (await self._rules(activity.room)).values() if r.activity == activity.kind]
        if not rules:
            return
        key = (activity.room, activity.user.user_id, activity.kind)
        self._activity.add(key, activity.now_ms, activity.amount)
        for rule in rules:
            if self._activity.count(key, activity.now_ms, rule.within_s) >= rule.count:
                await self._grant(activity.room, activity.user, rule)

    def _watch(self, room: str, user: Identity, rule: CouponRule, since: float) -> None:
        async def watched(now_ms: float) -> None:
            presence = self._presence.get(room)
            if presence is not None and presence.present_since(user.user_id) == since:
                await self._grant(room, user, rule)

        at = since + rule.minutes * 60_000
        self.host.timers.schedule(f"coupon:watch:{room}:{user.user_id}:{rule.id}", at, watched)

    async def _grant(self, room: str, user: Identity, rule: CouponRule) -> dict[str, Any] | None:
        """Issue (or find) the user's grant; None when the budget is spent."""
        store, pool = self.host.store, _pool(room, rule.id)
        if pool not in self._pools:
            await store.define_stock(pool, room, rule.budget, 1, GRANT_KIND, int(self.host.clock.now_ms()))
            self._pools.add(pool)
        data = {"id": "g-" + secrets.token_hex(8), "rule": rule.id, "title": rule.title}
        outcome = await store.take_stock(
            StockRequest(pool, user.user_id, 1, "grant", data, int(self.host.clock.now_ms()))
        )
        if outcome.order is None:
            return None
        grant = {key: outcome.order.data[key] for key in ("id", "rule", "title", "user")}
        if outcome.status == "ok":
            (await self._pending(room, user.user_id))[rule.id] = grant
            self.host.services.send_to_user(room, user.user_id, "coupon.granted", grant)
        return grant

    async def _pending(self, room: str, user: str) -> dict[str, dict[str, Any]]:
        """rule -> the user's unclaimed grant: read from the store once, then kept current."""
        cached = self._unclaimed.get((room, user))
        if cached is not None:
            self._unclaimed.move_to_end((room, user))
            return cached
        pending: dict[str, dict[str, Any]] = {}
        for rule in (await self._rules(room)).values():
            grant = await self.host.store.get_record(GRANT_KIND, _grant_key(room, rule.id, user))
            if grant is not None and await self.host.store.get_record(CLAIM_KIND, grant.key) is None:
                pending[rule.id] = {key: grant.data[key] for key in ("id", "rule", "title", "user")}
        pending = self._unclaimed.setdefault((room, user), pending)
        if len(self._unclaimed) > MAX_CACHED_USERS:
            self._unclaimed.popitem(last=False)
        return pending

    async def _rules(self, room: str) -> dict[str, CouponRule]:
        rules = self._room_rules.get(room)
        if rules is None:
            rules = dict(self._config_rules)
            after = 0
            while page := await self.host.store.list_records(RULE_KIND, room, after, 500):
                rules.update((r.key, CouponRule.from_wire(r.data)) for r in page)
                after = page[-1].position
            self._room_rules[room] = rules = self._room_rules.get(room, rules)
        return rules

    async def _save_rule(self, ctx: CommandContext, rule: CouponRule) -> tuple[CouponRule, bool]:
        """Durable first, then in memory; (the rule stored, whether this call created it)."""
        rules = await self._rules(ctx.room)
        stored, created = await ctx.store.put_record(
            Record(RULE_KIND, rule.id, ctx.room, rule.wire(), int(ctx.now_ms))
        )
        rule = rules[rule.id] = CouponRule.from_wire(stored.data)
        return rule, created


def _new_rule_id(prefix: str, ctx: CommandContext, request: str | None) -> str:
    if request is None:
        return prefix + secrets.token_hex(5)
    return prefix + derived_id("", ctx.room, ctx.caller.user_id, request)


def _pool(room: str, rule: str) -> str:
    return f"coupon:{room}:{rule}"


def _grant_key(room: str, rule: str, user: str) -> str:
    return order_key(_pool(room, rule), user, "grant")
