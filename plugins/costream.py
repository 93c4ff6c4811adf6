"""Co-streaming (连麦): viewers ask to join the stage, the host accepts, rejects or removes.

At most `max_guests` on stage. An accepted guest alone receives `costream.accepted` with a
short-lived publish token bound to the room and its slot (`liveroom.publish_token`), which
the media module verifies; `costream.token` renews it while on stage. Everyone sees
`costream.stage` (priority) and `costream.queue` (the whole queue, at most every
`queue_interval_ms`: the latest wins). Who may ask and the queue's lanes (a VIP lane for a
token `tier`) are `costream_rules.StagePolicy`.

Every change of the queue or the stage is a durable record (`costream.event`), written
before it takes effect, so loading the room (a restart, another node taking it over)
rebuilds both. Whoever is in them but not back in the room within `absent_grace_s` of the
load is taken out, as a leave would have.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from liveroom.auth import Identity
from liveroom.errors import CommandError, RateLimited
from liveroom.plugin import CommandContext, CommandSpec, Plugin, PluginHost, RoomContext, rate_limited
from liveroom.protocol import RoomId, RoomPayload
from liveroom.ratelimit import KeyedBuckets, UserRate
from liveroom.record import Record
from liveroom.store import records_of

from .costream_rules import Stage, StagePolicy

__all__ = ["CostreamConfig", "CostreamPlugin"]

UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
EVENT_KIND = "costream.event"


@dataclass(frozen=True, slots=True)
class CostreamConfig:
    max_guests: int = 4
    max_queue: int = 50
    # Who may ask to join the stage: these roles or these token tiers (both empty: everyone).
    allowed_roles: tuple[str, ...] = ()
    allowed_tiers: tuple[str, ...] = ()
    # Tiers served first, highest first, each a lane of its own ahead of everyone else
    # (e.g. ["vip"]: a VIP lane). `max_queue` applies per lane.
    priority_tiers: tuple[str, ...] = ()
    publish_token_ttl_s: float = 60.0
    # costream.queue (the whole queue) at most this often per room: the latest state wins.
    queue_interval_ms: int = 500
    # Per user: asking and withdrawing, `request_burst` in a row, then one per 1/rate s.
    request_rate_per_s: float = 0.5
    request_burst: int = 4
    # Per user and room, for the commands that publish to the room (accept, reject, remove, leave, token):
    # `publish_burst` in a row, then `publish_rate_per_s` a second (else rate_limited).
    publish_rate_per_s: float = 2.0
    publish_burst: int = 20
    # After the room is loaded (a restart, a takeover), whoever is queued or on stage and
    # not back in the room within this long is taken out.
    absent_grace_s: float = 30.0


@dataclass(frozen=True, slots=True)
class UserPayload:
    room: RoomId
    user: UserId


@dataclass(frozen=True, slots=True)
class AcceptPayload:
    room: RoomId
    user: UserId | None = None  # None: the next in line (the head of the highest lane)


class CostreamPlugin(Plugin):
    name = "costream"
    config_type = CostreamConfig
    item_types = (
        "costream.stage",
        "costream.queue",
        "costream.accepted",
        "costream.rejected",
        "costream.removed",
    )
    config: CostreamConfig

    def __init__(self, config: CostreamConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        self._publish_rate = UserRate(config.publish_rate_per_s, config.publish_burst, "costream commands")
        if host.publish_tokens is None:
            raise ValueError("co-streaming needs the node's publish tokens")
        self._tokens = host.publish_tokens
        self._stages: dict[str, Stage] = {}
        self._askers: dict[str, KeyedBuckets] = {}
        self._policy = StagePolicy(config.allowed_roles, config.allowed_tiers, config.priority_tiers)
        self._queue_updates = host.throttle(config.queue_interval_ms, self._publish_queue)
        self._tokens.on_revoke(self._revoked)

    def _limited(self, handler: Any) -> Any:
        """The handler under this plugin's per-user publish rate (`publish_rate_per_s`)."""
        return rate_limited(handler, self._publish_rate, self.host.clock)

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return (
            CommandSpec("costream.request", RoomPayload, self.request, summary="Ask to join the stage"),
            CommandSpec("costream.cancel", RoomPayload, self.cancel, summary="Withdraw one's request"),
            CommandSpec("costream.leave", RoomPayload, self._limited(self.leave), summary="Leave the stage"),
            CommandSpec(
                "costream.token", RoomPayload, self._limited(self.token), summary="Renew one's publish token"
            ),
            CommandSpec(
                "costream.accept", AcceptPayload, self._limited(self.accept), True, "Accept a queued viewer"
            ),
            CommandSpec(
                "costream.reject", UserPayload, self._limited(self.reject), True, "Reject a queued viewer"
            ),
            CommandSpec(
                "costream.remove", UserPayload, self._limited(self.remove), True, "Take a guest off the stage"
            ),
        )

    # -- the room's life --------------------------------------------------------------

    async def load_room(self, ctx: RoomContext) -> None:
        stage = self._new_stage()
        async for record in records_of(ctx.store, EVENT_KIND, ctx.room):
            try:
                _replay(stage, record.data)
            except CommandError:  # a step the log made impossible since: skipped, as it was then
                continue
        self._stages[ctx.room] = stage
        self._askers[ctx.room] = KeyedBuckets(
            self.config.request_rate_per_s, self.config.request_burst, 10_000
        )
        if stage.queue or stage.slots:
            at = ctx.now_ms + self.config.absent_grace_s * 1000
            ctx.schedule(f"costream:absent:{ctx.room}", at, self._absentees(ctx.room))

    def release_room(self, room: str) -> None:
        self._publish_rate.forget(room)
        self._stages.pop(room, None)
        self._askers.pop(room, None)
        self._queue_updates.forget(room)

    async def snapshot(self, room: str) -> Mapping[str, Any] | None:
        stage = self._stages[room]
        if not (stage.slots or stage.queue):
            return None
        return {"guests": stage.guests(), "queue": stage.waiting(), "max_guests": stage.max_guests}

    async def on_leave(self, room: str, user: Identity, now_ms: float) -> None:
        ctx = self.host.room(room)
        await self._gone(ctx, user.user_id)

    # -- commands -----------------------------------------------------------------------

    async def request(self, ctx: CommandContext, payload: RoomPayload) -> Mapping[str, Any]:
        caller = ctx.caller
        self._ask(ctx)
        event = {"op": "request", "user": caller.user_id, "name": caller.name, "role": caller.role}
        stage = await self._change(ctx, {**event, "tier": caller.tier, "at": ctx.now_ms})
        self._queue_updates.touch(ctx.room, room=ctx.room)
        lane = self._policy.lane_name(self._policy.lane_of(caller.tier))
        return {"position": stage.position(caller.user_id), "lane": lane}

    async def cancel(self, ctx: CommandContext, payload: RoomPayload) -> Mapping[str, Any]:
        self._ask(ctx)
        await self._change(ctx, {"op": "withdraw", "user": ctx.caller.user_id})
        self._queue_updates.touch(ctx.room, room=ctx.room)
        return {}

    async def leave(self, ctx: CommandContext, payload: RoomPayload) -> Mapping[str, Any]:
        slot = self._stages[ctx.room].slot_of(ctx.caller.user_id)
        await self._change(ctx, {"op": "remove", "user": ctx.caller.user_id})
        await self._publish_stage(ctx.room)
        return {"slot": slot}

    async def token(self, ctx: CommandContext, payload: RoomPayload) -> Mapping[str, Any]:
        slot = self._stages[ctx.room].slot_of(ctx.caller.user_id)
        if slot is None:
            raise CommandError("you are not on stage", "not_on_stage")
        return self._grant(ctx.caller.user_id, ctx.room, slot, ctx.now_ms)

    async def accept(self, ctx: CommandContext, payload: AcceptPayload) -> Mapping[str, Any]:
        user = payload.user if payload.user is not None else self._stages[ctx.room].next_in_line()
        stage = await self._change(ctx, {"op": "accept", "user": user})
        slot = stage.slot_of(user)
        assert slot is not None
        ctx.send_to(user, "costream.accepted", self._grant(user, ctx.room, slot, ctx.now_ms))
        self._queue_updates.touch(ctx.room, room=ctx.room)
        await self._publish_stage(ctx.room)
        return {"user": user, "slot": slot}

    async def reject(self, ctx: CommandContext, payload: UserPayload) -> Mapping[str, Any]:
        ctx.check_may_act_on(payload.user)
        await self._change(ctx, {"op": "withdraw", "user": payload.user})
        ctx.send_to(payload.user, "costream.rejected", {"room": ctx.room})
        self._queue_updates.touch(ctx.room, room=ctx.room)
        return {"user": payload.user}

    async def remove(self, ctx: CommandContext, payload: UserPayload) -> Mapping[str, Any]:
        ctx.check_may_act_on(payload.user)
        slot = self._stages[ctx.room].slot_of(payload.user)
        await self._change(ctx, {"op": "remove", "user": payload.user})
        ctx.send_to(payload.user, "costream.removed", {"slot": slot})
        await self._publish_stage(ctx.room)
        return {"user": payload.user, "slot": slot}

    # -- the media side -------------------------------------------------------------------

    def _revoked(self, room: str, slot: int, user: str) -> None:
        """A slot's tokens were revoked from outside the plugin (the host ended the slot over
        HTTP: docs/media.md): whoever is in that slot leaves the stage too, as a room timer.
        The plugin's own revocations name the user, and are already its changes."""
        if user or room not in self._stages:
            return
        ctx = self.host.room(room)
        ctx.schedule(f"costream:ended:{room}:{slot}", ctx.now_ms, self._slot_ended(room, slot), wake=False)

    def _slot_ended(self, room: str, slot: int) -> Callable[[float], Any]:
        async def end(now_ms: float) -> None:
            stage = self._stages.get(room)
            if stage is None or slot not in stage.slots:
                return
            user, ctx = stage.slots[slot][0], self.host.room(room)
            await self._change(ctx, {"op": "remove", "user": user})
            ctx.send_to(user, "costream.removed", {"slot": slot})
            await self._publish_stage(room)

        return end

    # -- helpers ------------------------------------------------------------------------

    def _new_stage(self) -> Stage:
        return Stage(self.config.max_guests, self.config.max_queue, self._policy)

    def _ask(self, ctx: CommandContext) -> None:
        if not self._askers[ctx.room].take(ctx.caller.user_id, self.host.clock.monotonic()):
            raise RateLimited("asking and withdrawing: too often; wait a little")

    async def _change(self, ctx: RoomContext, event: dict[str, Any]) -> Stage:
        """Try the change on a copy (refused: nothing happened), write it, then make it so.

        A guest off the stage, whichever way (removed, left, gone from the room, banned),
        goes through here: their publish token is revoked, which ends their media session."""
        stage = self._stages[ctx.room]
        changed = copy.deepcopy(stage)
        _replay(changed, event)
        record = Record(EVENT_KIND, secrets.token_hex(8), ctx.room, event, int(ctx.now_ms))
        await ctx.store.put_record(record)
        self._stages[ctx.room] = changed
        slot = stage.slot_of(event["user"])
        if event["op"] == "remove" and slot is not None:
            await self._tokens.revoke_everywhere(ctx.room, slot, event["user"], ctx.now_ms)
        return changed

    async def _gone(self, ctx: RoomContext, user: str) -> None:
        """The user left the room: out of the queue, off the stage."""
        stage = self._stages.get(ctx.room)
        if stage is None:
            return
        if user in stage.queue:
            await self._change(ctx, {"op": "withdraw", "user": user})
            self._queue_updates.touch(ctx.room, room=ctx.room)
        if stage.slot_of(user) is not None:
            await self._change(ctx, {"op": "remove", "user": user})
            await self._publish_stage(ctx.room)

    def _absentees(self, room: str) -> Callable[[float], Any]:
        async def check(now_ms: float) -> None:
            ctx = self.host.room(room)
            stage = self._stages.get(room)
            if stage is None:
                return
            here = {member.user_id for member in ctx.members()}
            waiting = [u for u in stage.queue if u not in here]
            guests = [u for u, _ in stage.slots.values() if u not in here]
            for user in {*waiting, *guests}:
                await self._gone(ctx, user)

        return check

    def _grant(self, user: str, room: str, slot: int, now_ms: float) -> dict[str, Any]:
        token, expires = self._tokens.mint(user, room, slot, now_ms / 1000.0, self.config.publish_token_ttl_s)
        return {"slot": slot, "token": token, "expires_at": int(expires * 1000)}

    async def _publish_stage(self, room: str) -> None:
        stage = self._stages[room]
        data = {"guests": stage.guests(), "max_guests": stage.max_guests}
        await self.host.services.publish(room, "costream.stage", data, priority=True)

    async def _publish_queue(self, room: str) -> None:
        stage = self._stages.get(room)
        if stage is not None:
            await self.host.services.publish(
                room, "costream.queue", {"queue": stage.waiting()}, history=False
            )


def _replay(stage: Stage, event: Mapping[str, Any]) -> None:
    """Apply one stored event to a stage (the same code for a live change and a reload)."""
    op, user = event["op"], event["user"]
    if op == "request":
        stage.request(user, event["name"], event["role"], event.get("tier"), event["at"])
    elif op == "withdraw":
        stage.withdraw(user)
    elif op == "accept":
        stage.accept(user)
    elif op == "remove":
        stage.remove(user)
