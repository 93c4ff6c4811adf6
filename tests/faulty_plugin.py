"""A plugin that misbehaves on purpose, loaded by `[plugins.faulty] load = ...` in tests."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from liveroom.plugin import CommandContext, CommandSpec, Plugin
from liveroom.protocol import RoomId


@dataclass(frozen=True, slots=True)
class FaultyConfig:
    pass


@dataclass(frozen=True, slots=True)
class RoomOnly:
    room: RoomId


class FaultyPlugin(Plugin):
    name = "faulty"
    config_type = FaultyConfig

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return (
            CommandSpec("faulty.raise", RoomOnly, self.raise_),
            CommandSpec("faulty.hang", RoomOnly, self.hang),
        )

    async def snapshot(self, room: str) -> Mapping[str, Any] | None:
        raise RuntimeError("snapshot is broken too")

    async def raise_(self, ctx: CommandContext, payload: RoomOnly) -> Mapping[str, Any]:
        raise ZeroDivisionError("a bug in a plugin")

    async def hang(self, ctx: CommandContext, payload: RoomOnly) -> Mapping[str, Any]:
        await asyncio.sleep(3600)
        return {}
