"""Third-party plugins with a message hook, for the hook's tests (loaded by `load = ...`).

Their order: `mask` (priority -10) first, then `broken` and `gate` (priority 0, load order:
by name), then `echo` (priority 10). Each notes the text it saw in `SEEN`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from liveroom.plugin import Answer, Bot, Hold, Message, Plugin, Reject, Rewrite, RoomContext, Verdict

SEEN: list[tuple[str, str]] = []  # (plugin, text) in the order the hooks ran


@dataclass(frozen=True, slots=True)
class NoConfig:
    pass


class _Hooked(Plugin):
    config_type = NoConfig

    async def on_message(self, ctx: RoomContext, message: Message) -> Verdict:
        SEEN.append((self.name, message.text))
        return await self.decide(message.text)

    async def decide(self, text: str) -> Verdict:
        return None


class MaskPlugin(_Hooked):
    name = "mask"
    message_priority = -10

    async def decide(self, text: str) -> Verdict:
        if "wait" in text:  # a hook that waits on something (a moderation service) within its budget
            await asyncio.sleep(0.001)
            return Rewrite(text.replace("wait", "w***"))
        return Rewrite(text.replace("darn", "****")) if "darn" in text else None


class GatePlugin(_Hooked):
    name = "gate"

    async def decide(self, text: str) -> Verdict:
        if "spoiler" in text:
            return Reject("off_topic", "no spoilers here")
        if "http" in text:
            return Hold("link")
        return None


class BrokenPlugin(_Hooked):
    name = "broken"

    async def decide(self, text: str) -> Verdict:
        if "boom" in text:
            raise RuntimeError("the hook's bug")
        if "slow" in text:
            await asyncio.sleep(30)
        if "blank" in text:
            return Rewrite("   ")  # not a message: a failure of the hook
        return None


class EchoPlugin(_Hooked):
    name = "echo"
    message_priority = 10

    async def decide(self, text: str) -> Verdict:
        return Answer(f"you asked: {text}", Bot("bot:echo", "Echo")) if text.endswith("?") else None
