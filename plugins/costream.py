"""Co-streaming (连麦): viewers ask to join the stage, the host accepts, rejects or removes.

At most `max_guests` on stage. An accepted guest alone receives `costream.accepted` with a
short-lived publish token bound to the room and its slot (`liveroom.publish_token`), which
the media module verifies; `costream.token` renews it while on stage. Everyone sees
`costream.stage` (priority) and `costream.queue`. Who may ask and the queue's lanes (a VIP
lane for a token `tier`) are `costream_rules.StagePolicy`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from liveroom.auth import Identity
from liveroom.errors import CommandError
from liveroom.plugin import CommandContext, CommandSpec, Plugin, PluginHost
from liveroom.protocol import RoomId

from .costream_rules import Stage, StagePolicy

__all__ = ["CostreamConfig", "CostreamPlugin"]

UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


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


@dataclass(frozen=True, slots=True)
class RoomOnly:
    room: RoomId


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
        if host.publish_tokens is None:
            raise ValueError("co-streaming needs the node's publish tokens")
        self._tokens = host.publish_tokens
        self._stages: dict[str, Stage] = {}
        self._policy = StagePolicy(config.allowed_roles, config.allowed_tiers, config.priority_tiers)

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return (
            CommandSpec("costream.request", RoomOnly, self.request, summary="Ask to join the stage"),
            CommandSpec("costream.cancel", RoomOnly, self.cancel, summary="Withdraw one's request"),
            CommandSpec("costream.leave", RoomOnly, self.leave, summary="Leave the stage"),
            CommandSpec("costream.token", RoomOnly, self.token, summary="Renew one's publish token"),
            CommandSpec("costream.accept", AcceptPayload, self.accept, True, "Accept a queued viewer"),
            CommandSpec("costream.reject", UserPayload, self.reject, True, "Reject a queued viewer"),
            CommandSpec("costream.remove", UserPayload, self.remove, True, "Take a guest off the stage"),
        )

    def snapshot(self, room: str) -> Mapping[str, Any] | None:
        stage = self._stages.get(room)
        if stage is None or not (stage.slots or stage.queue):
            return None
        return {"guests": stage.guests(), "queue": stage.waiting(), "max_guests": stage.max_guests}

    async def on_leave(self, room: str, user: Identity, now_ms: float) -> None:
        stage = self._stages.get(room)
        if stage is None:
            return
        if stage.queue.pop(user.user_id, None) is not None:
            await self._publish_queue(room, stage)
        if stage.slot_of(user.user_id) is not None:
            stage.remove(user.user_id)
            await self._publish_stage(room, stage)

    async def request(self, ctx: CommandContext, payload: RoomOnly) -> Mapping[str, Any]:
        stage, caller = self._stage(ctx.room), ctx.caller
        position = stage.request(caller.user_id, caller.name, caller.role, caller.tier, ctx.now_ms)
        await self._publish_queue(ctx.room, stage)
        return {"position": position, "lane": self._policy.lane_name(self._policy.lane_of(caller.tier))}

    async def cancel(self, ctx: CommandContext, payload: RoomOnly) -> Mapping[str, Any]:
        stage = self._stage(ctx.room)
        stage.withdraw(ctx.caller.user_id)
        await self._publish_queue(ctx.room, stage)
        return {}

    async def leave(self, ctx: CommandContext, payload: RoomOnly) -> Mapping[str, Any]:
        stage = self._stage(ctx.room)
        slot = stage.remove(ctx.caller.user_id)
        await self._publish_stage(ctx.room, stage)
        return {"slot": slot}

    async def token(self, ctx: CommandContext, payload: RoomOnly) -> Mapping[str, Any]:
        slot = self._stage(ctx.room).slot_of(ctx.caller.user_id)
        if slot is None:
            raise CommandError("you are not on stage", "not_on_stage")
        return self._grant(ctx.caller.user_id, ctx.room, slot, ctx.now_ms)

    async def accept(self, ctx: CommandContext, payload: AcceptPayload) -> Mapping[str, Any]:
        stage = self._stage(ctx.room)
        user = payload.user if payload.user is not None else stage.next_in_line()
        slot = stage.accept(user)
        ctx.send_to(user, "costream.accepted", self._grant(user, ctx.room, slot, ctx.now_ms))
        await self._publish_queue(ctx.room, stage)
        await self._publish_stage(ctx.room, stage)
        return {"user": user, "slot": slot}

    async def reject(self, ctx: CommandContext, payload: UserPayload) -> Mapping[str, Any]:
        stage = self._stage(ctx.room)
        stage.withdraw(payload.user)
        ctx.send_to(payload.user, "costream.rejected", {"room": ctx.room})
        await self._publish_queue(ctx.room, stage)
        return {"user": payload.user}

    async def remove(self, ctx: CommandContext, payload: UserPayload) -> Mapping[str, Any]:
        stage = self._stage(ctx.room)
        slot = stage.remove(payload.user)
        ctx.send_to(payload.user, "costream.removed", {"slot": slot})
        await self._publish_stage(ctx.room, stage)
        return {"user": payload.user, "slot": slot}

    def _grant(self, user: str, room: str, slot: int, now_ms: float) -> dict[str, Any]:
        token, expires = self._tokens.mint(user, room, slot, now_ms / 1000.0, self.config.publish_token_ttl_s)
        return {"slot": slot, "token": token, "expires_at": int(expires * 1000)}

    def _stage(self, room: str) -> Stage:
        stage = self._stages.get(room)
        if stage is None:
            stage = self._stages[room] = Stage(self.config.max_guests, self.config.max_queue, self._policy)
        return stage

    async def _publish_stage(self, room: str, stage: Stage) -> None:
        data = {"guests": stage.guests(), "max_guests": stage.max_guests}
        await self.host.services.publish(room, "costream.stage", data, priority=True)

    async def _publish_queue(self, room: str, stage: Stage) -> None:
        await self.host.services.publish(room, "costream.queue", {"queue": stage.waiting()}, history=False)
