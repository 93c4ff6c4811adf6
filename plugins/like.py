"""Likes: clients send counts, the server caps each user's rate, one total per room goes out
at most every `total_interval_ms`; per-minute counts and the peak are kept for the dashboard."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from liveroom.errors import RateLimited
from liveroom.plugin import Activity, CommandContext, CommandSpec, Plugin, PluginHost, QueryContext, QuerySpec
from liveroom.protocol import RoomId
from liveroom.timers import Throttle

from .like_rules import LikeAllowance, MinuteCounts

__all__ = ["LikeConfig", "LikePlugin", "SendPayload"]


@dataclass(frozen=True, slots=True)
class LikeConfig:
    rate_per_s: float = 20.0  # likes per user per second that count...
    burst: int = 100  # ...with this many saved up
    max_per_command: int = 1000
    total_interval_ms: int = 500  # like.total at most twice a second
    minutes_kept: int = 60


@dataclass(frozen=True, slots=True)
class SendPayload:
    room: RoomId
    count: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1


class LikePlugin(Plugin):
    name = "like"
    config_type = LikeConfig
    item_types = ("like.total",)
    config: LikeConfig

    def __init__(self, config: LikeConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        self._allowance = LikeAllowance(config.rate_per_s, config.burst)
        self._totals: dict[str, int] = {}
        self._minutes: dict[str, MinuteCounts] = {}
        self._throttle = Throttle(host.timers, config.total_interval_ms, self._publish_total)

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return (CommandSpec("like.send", SendPayload, self.send, summary="Send likes"),)

    def queries(self) -> Sequence[QuerySpec]:
        return (QuerySpec("likes", self.stats, "The room's like total, per-minute counts and peak"),)

    def snapshot(self, room: str) -> Mapping[str, Any] | None:
        total = self._totals.get(room)
        return None if total is None else {"total": total}

    async def send(self, ctx: CommandContext, payload: SendPayload) -> Mapping[str, Any]:
        wanted = min(payload.count, self.config.max_per_command)
        accepted = self._allowance.grant(ctx.caller.user_id, wanted, self.host.clock.monotonic())
        if accepted == 0:
            raise RateLimited(f"at most {self.config.rate_per_s:g} likes a second")
        total = await ctx.store.incr(f"like:{ctx.room}", accepted)
        self._totals[ctx.room] = total
        self._minutes.setdefault(ctx.room, MinuteCounts(self.config.minutes_kept)).add(accepted, ctx.now_ms)
        self._throttle.touch(ctx.room)
        await self.host.signals.emit(Activity(ctx.room, ctx.caller, "like", accepted, ctx.now_ms))
        return {"accepted": accepted, "total": total}

    async def stats(self, query: QueryContext) -> Any:
        return await self.figures(query.room, query.now_ms)

    async def figures(self, room: str, now_ms: float) -> Mapping[str, Any] | None:
        """The total (every node), and per minute with the peak minute (this node's likes)."""
        minutes = self._minutes.get(room) or MinuteCounts()
        total = await self.host.store.get_counter(f"like:{room}")
        return {"total": total, "per_minute": minutes.series(), "peak": minutes.peak()}

    async def _publish_total(self, room: str) -> None:
        data = {"total": self._totals.get(room, 0)}
        await self.host.services.publish(room, "like.total", data, history=False)
