"""Danmaku (bullet comments): the minimal path. Length limit and a per-user token bucket."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from liveroom.errors import BadRequest, CommandError, RateLimited
from liveroom.plugin import Activity, CommandContext, CommandSpec, Plugin, PluginHost
from liveroom.protocol import RoomId
from liveroom.ratelimit import TokenBucket

__all__ = ["DanmakuConfig", "DanmakuPlugin", "SendPayload"]


@dataclass(frozen=True, slots=True)
class DanmakuConfig:
    max_length: int = 200
    # Per user: a message every 1/rate_per_s seconds on average, `burst` in a row.
    rate_per_s: float = 1.0
    burst: int = 5


@dataclass(frozen=True, slots=True)
class SendPayload:
    room: RoomId
    # Bounded here too so an absurd string fails validation before any work.
    text: Annotated[str, msgspec.Meta(max_length=10_000)]


class TooLong(CommandError):
    code = "too_long"


class DanmakuPlugin(Plugin):
    name = "danmaku"
    config_type = DanmakuConfig
    config: DanmakuConfig

    def __init__(self, config: DanmakuConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        self._buckets: dict[str, TokenBucket] = {}

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return (CommandSpec("danmaku.send", SendPayload, self.send),)

    async def send(self, ctx: CommandContext, payload: SendPayload) -> Mapping[str, Any]:
        text = payload.text.strip()
        if not text:
            raise BadRequest("text is empty")
        if len(text) > self.config.max_length:
            raise TooLong(f"text is longer than {self.config.max_length} characters")
        if not self._bucket(ctx.caller.user_id).take(self.host.clock.monotonic()):
            raise RateLimited(f"at most {self.config.rate_per_s:g} messages a second")
        message_id = secrets.token_hex(8)
        user = {"id": ctx.caller.user_id, "name": ctx.caller.name}
        await ctx.publish("danmaku.message", {"id": message_id, "user": user, "text": text})
        await self.host.signals.emit(Activity(ctx.room, ctx.caller, "danmaku", 1, ctx.now_ms))
        return {"id": message_id}

    def _bucket(self, user_id: str) -> TokenBucket:
        bucket = self._buckets.get(user_id)
        if bucket is None:
            if len(self._buckets) > 100_000:  # bound memory: idle users' buckets are full anyway
                self._buckets.clear()
            now = self.host.clock.monotonic()
            bucket = self._buckets[user_id] = TokenBucket(self.config.rate_per_s, self.config.burst, now)
        return bucket
