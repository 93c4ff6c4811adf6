"""The stage follows the co-streaming plugin: one place where a guest's media ends with their turn.

The plugin revokes a guest's publish token whenever the guest leaves the stage (removed by
the host, left, gone from the room, banned: `liveroom.publish_token.PublishTokens.revoke`);
`StageSync` hears of each revocation and ends whatever that user publishes in that slot.
The other way round, a host ending a guest's slot over HTTP revokes the slot's tokens, so
the guest cannot publish again with the token they still hold; the plugin hears of that
revocation too and takes the guest off its stage.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from liveroom.clock import Clock
from liveroom.errors import CommandError
from liveroom.publish_token import PublishTokens

from .backend import MediaBackend
from .callers import Caller

__all__ = ["StageSync"]

log = logging.getLogger(__name__)
NODE = Caller("liveroom", "liveroom", "admin", None)  # the node itself, acting for the plugin


class StageSync:
    def __init__(self, backend: MediaBackend, tokens: PublishTokens, clock: Clock) -> None:
        self._backend = backend
        self._tokens = tokens
        self._clock = clock
        self._tasks: set[asyncio.Task[Any]] = set()
        tokens.on_revoke(self._revoked)

    async def slot_ended(self, room: str, slot: str) -> None:
        """A host or an admin ended a guest's slot: its tokens minted so far are void, on
        every process and node (the store's record)."""
        if slot.isdigit():
            await self._tokens.revoke_everywhere(room, int(slot), "", self._clock.now_ms())

    def _revoked(self, room: str, slot: int, user: str) -> None:
        if not user:  # revoked because the slot was ended: nothing left to end
            return
        task = asyncio.ensure_future(self._end(room, str(slot), user))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end(self, room: str, slot: str, user: str) -> None:
        try:
            await self._backend.end_slot(room, slot, NODE, only_user=user)
        except CommandError as error:
            if error.code != "not_publishing":  # not (or no longer) on air: nothing to do
                log.warning("media: ending %s's slot %s in %s failed: %s", user, slot, room, error)
