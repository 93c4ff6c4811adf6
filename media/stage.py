"""The stage follows the co-streaming plugin: one place where a guest's media ends with their turn.

The plugin revokes a guest's publish token whenever the guest leaves the stage (removed by
the host, left, gone from the room, banned: `liveroom.publish_token.PublishTokens.revoke`);
`StageSync` hears of each revocation and ends whatever that user publishes in that slot.
The other way round, a host ending a guest's slot over HTTP revokes the slot's tokens, so
the guest cannot publish again with the token they still hold; the plugin hears of that
revocation too and takes the guest off its stage.

On a cluster the guest's session may be on another node: the one holding the room's media
(its host publishes there; the guest's WHIP was redirected there). When nobody publishes
in the slot here, the node asks the holder to end it: `DELETE /whip/{room}/slots/{slot}
?user=<id>` there, with a short admin token of its own (only that user's session ends).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

import aiohttp

from liveroom.auth import TokenAuthority
from liveroom.clock import Clock
from liveroom.errors import CommandError
from liveroom.publish_token import PublishTokens

from .backend import MediaBackend
from .callers import Caller
from .locator import MediaLocator

__all__ = ["StageSync"]

log = logging.getLogger(__name__)
NODE = Caller("liveroom", "liveroom", "admin", None)  # the node itself, acting for the plugin
HOLDER_TIMEOUT_S = 10.0  # asking the holder node to end a guest's session


class StageSync:
    def __init__(
        self,
        backend: MediaBackend,
        tokens: PublishTokens,
        clock: Clock,
        locator: MediaLocator | None = None,
        authority: TokenAuthority | None = None,
    ) -> None:
        self._backend = backend
        self._tokens = tokens
        self._clock = clock
        self._locator = locator  # on a cluster: which node holds a room's media
        self._authority = authority  # mints the admin token the holder is asked with
        self._tasks: set[asyncio.Task[Any]] = set()
        tokens.on_revoke(self._revoked)

    async def slot_ended(self, room: str, slot: str, user: str | None = None) -> None:
        """A host or an admin ended a guest's slot (`user`: only that user's session, a node
        asking for the plugin): its tokens minted so far are void, on every process and node
        (the store's record)."""
        if slot.isdigit():
            await self._tokens.revoke_everywhere(room, int(slot), user or "", self._clock.now_ms())

    def _revoked(self, room: str, slot: int, user: str) -> None:
        if not user:  # revoked because the slot was ended: nothing left to end
            return
        task = asyncio.ensure_future(self._end(room, str(slot), user))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end(self, room: str, slot: str, user: str) -> None:
        try:
            await self._backend.end_slot(room, slot, NODE, only_user=user)
            return
        except CommandError as error:
            if error.code != "not_publishing":  # not (or no longer) on air: nothing to do
                log.warning("media: ending %s's slot %s in %s failed: %s", user, slot, room, error)
                return
        await self._end_at_holder(room, slot, user)

    async def _end_at_holder(self, room: str, slot: str, user: str) -> None:
        """Not on air here: on the node holding the room's media, if another does."""
        holder = None if self._locator is None else await self._locator.where(room)
        if holder is None or self._authority is None:
            return
        token = self._authority.mint(NODE.user_id, NODE.name, "admin", room, ttl_s=60)
        url = f"{holder}/whip/{quote(room)}/slots/{quote(slot)}"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HOLDER_TIMEOUT_S)) as http,
                http.delete(
                    url, params={"user": user}, headers={"Authorization": f"Bearer {token}"}
                ) as reply,
            ):
                if reply.status not in (200, 404):  # 404: not (or no longer) on air there either
                    log.warning(
                        "media: %s did not end %s's slot %s in %s: %d", holder, user, slot, room, reply.status
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning(
                "media: %s could not be asked to end %s's slot %s in %s: %r", holder, user, slot, room, exc
            )
