"""`bench`: a plugin the load generator uses to publish priority items. Off unless enabled.

Enable it on a benchmark server only (`[plugins.bench]` in the config, or the environment
variable `LIVEROOM_PLUGINS_BENCH_ENABLED=true`). `bench.publish {"room", "text", "priority"}`
publishes a `bench.priority` item on the priority lane (or a `bench.message` on the normal
one); it is for hosts and staff only, like any command that speaks for the room.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from liveroom.plugin import (
    Answer,
    Bot,
    CommandContext,
    CommandSpec,
    Message,
    Plugin,
    Rewrite,
    RoomContext,
    Verdict,
)
from liveroom.protocol import RoomId

__all__ = ["BenchConfig", "BenchHookPlugin", "BenchPlugin", "PublishPayload"]


@dataclass(frozen=True, slots=True)
class BenchConfig:
    pass


@dataclass(frozen=True, slots=True)
class PublishPayload:
    room: RoomId
    text: Annotated[str, msgspec.Meta(max_length=1000)]
    priority: bool = False


class BenchPlugin(Plugin):
    name = "bench"
    config_type = BenchConfig
    item_types = ("bench.priority", "bench.message")

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return (CommandSpec("bench.publish", PublishPayload, self.publish, staff_only=True),)

    async def publish(self, ctx: CommandContext, payload: PublishPayload) -> Mapping[str, Any]:
        item_type = "bench.priority" if payload.priority else "bench.message"
        publication = await ctx.publish(item_type, {"text": payload.text}, priority=payload.priority)
        return {"seq": publication.seq}


@dataclass(frozen=True, slots=True)
class BenchHookConfig:
    mode: str = "pass"  # "pass": the hook looks and lets go; "rewrite"; "answer": a bot replies


class BenchHookPlugin(Plugin):
    """`benchhook`: a message hook for `command_bench --hook` (the hook's cost on `danmaku.send`).
    Loaded by `LIVEROOM_PLUGINS_BENCHHOOK_LOAD=liveroom.loadtest.bench_plugin:BenchHookPlugin`."""

    name = "benchhook"
    config_type = BenchHookConfig
    config: BenchHookConfig
    BOT = Bot("bot:bench", "Bench")

    async def on_message(self, ctx: RoomContext, message: Message) -> Verdict:
        if self.config.mode == "rewrite":
            return Rewrite(message.text.upper())
        if self.config.mode == "answer":
            return Answer("noted", self.BOT)
        return None
