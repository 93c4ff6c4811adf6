"""Raffle: the host draws winners among viewers who commented in the last N minutes.

(An example third-party plugin; the built-in lucky bag, `liveroom.plugins.luckybag`, is the
full one: entry conditions, a durable entry list, a published seed.)"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from liveroom.errors import BadRequest, CommandError
from liveroom.plugin import Activity, CommandContext, CommandSpec, Plugin, PluginHost
from liveroom.protocol import RoomId


@dataclass(frozen=True, slots=True)
class RaffleConfig:
    window_minutes: float = 5.0  # who commented this recently may win
    max_winners: int = 50


@dataclass(frozen=True, slots=True)
class DrawPayload:
    room: RoomId
    prize: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    winners: Annotated[int, msgspec.Meta(ge=1)] = 1


class RafflePlugin(Plugin):
    name = "raffle"
    config_type = RaffleConfig
    item_types = ("raffle.won",)
    config: RaffleConfig

    def __init__(self, config: RaffleConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        self._last_comment: dict[str, dict[str, tuple[float, str]]] = {}  # room -> user -> (ms, name)
        host.signals.listen(self._on_activity)

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return (CommandSpec("raffle.draw", DrawPayload, self.draw, staff_only=True, summary="Draw winners"),)

    def release_room(self, room: str) -> None:
        self._last_comment.pop(room, None)  # the room is idle: nobody has commented lately

    async def _on_activity(self, activity: Activity) -> None:
        if activity.kind == "danmaku":
            room = self._last_comment.setdefault(activity.room, {})
            room.pop(activity.user.user_id, None)
            room[activity.user.user_id] = (activity.now_ms, activity.user.name)  # most recent last
            horizon = activity.now_ms - self.config.window_minutes * 60_000
            while room and next(iter(room.values()))[0] < horizon:  # bounded: only the window's
                room.pop(next(iter(room)))

    async def draw(self, ctx: CommandContext, payload: DrawPayload) -> Mapping[str, Any]:
        if payload.winners > self.config.max_winners:
            raise BadRequest(f"at most {self.config.max_winners} winners")
        since = ctx.now_ms - self.config.window_minutes * 60_000
        recent = self._last_comment.get(ctx.room, {})
        entrants = sorted((user, name) for user, (at, name) in recent.items() if at >= since)
        if not entrants:
            raise CommandError("nobody has commented recently", "no_entrants")
        picked = random.SystemRandom().sample(entrants, min(payload.winners, len(entrants)))
        winners = [{"id": user, "name": name} for user, name in picked]
        await ctx.publish("raffle.won", {"prize": payload.prize, "winners": winners}, priority=True)
        return {"winners": winners, "entrants": len(entrants)}
