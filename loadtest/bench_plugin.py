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

from liveroom.plugin import CommandContext, CommandSpec, Plugin
from liveroom.protocol import RoomId

__all__ = ["BenchConfig", "BenchPlugin", "PublishPayload"]


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
