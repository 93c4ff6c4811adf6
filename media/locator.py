"""Which node holds a room's media, across a cluster: one key per room in Redis.

A room's program lives in one node's memory (its host's WHIP session, the viewers fed from
it, its HLS files). On a cluster a load balancer may send a WHIP, WHEP or HLS request for
that room to any node, so the node whose host publishes writes `<prefix>:{media:<room>}` =
its `[server] public_url`, renews it while the program is live and deletes it when the
program ends. A node that gets a request for a room it does not hold reads the key and, if
another node holds the room, answers 307 to the same path and query there (WHIP and WHEP
clients, browsers and HLS players follow 307 with the same method and body). Nobody holds
the room (or Redis does not answer): the request is served here, as on one node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

__all__ = ["LEASE_S", "LOCATOR_KEY", "MediaLocator", "redirect"]

log = logging.getLogger(__name__)

# A SIGKILLed holder's rooms are free again within this; renewed every third of it.
LEASE_S = 10.0
HOLDS = ("connected", "promoted")  # host-slot states that mean "the program is here"
ENDS = ("ended", "lost")
# Delete the key only if it still names this node (another may have taken the room since).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class MediaLocator:
    """The rooms whose media this node holds, published in Redis for the other nodes."""

    def __init__(self, redis: Any, prefix: str, own_url: str) -> None:
        # Imported here: only clustered nodes make a locator, and redis is an eighth of the
        # start-up of every other node.
        from liveroom.redis_client import REDIS_ERRORS

        self._errors = REDIS_ERRORS
        self._redis = redis
        self._prefix = prefix
        self.own_url = own_url.rstrip("/")
        self._held: dict[str, set[str]] = {}  # room -> its live host sessions here
        self._renewal: asyncio.Task[None] | None = None

    def key(self, room: str) -> str:
        return f"{self._prefix}:{{media:{room}}}"

    def holds(self, room: str) -> bool:
        return room in self._held

    async def publisher_event(self, room: str, data: Mapping[str, Any]) -> None:
        """A `media.publisher` item: the host slot going live claims the room, ending releases it."""
        if data.get("slot") != "host":
            return
        session, state = str(data.get("session")), data.get("state")
        if state in HOLDS:
            first = room not in self._held
            self._held.setdefault(room, set()).add(session)
            if first:
                await self._claim(room)
        elif state in ENDS and room in self._held:
            self._held[room].discard(session)
            if not self._held[room]:
                del self._held[room]
                await self._release(room)

    async def where(self, room: str) -> str | None:
        """The URL of the node holding `room`'s media, if that is another node."""
        if room in self._held:
            return None
        try:
            value = await self._redis.get(self.key(room))
        except self._errors as exc:
            log.warning("media locator: cannot look up %s (%r); serving it here", room, exc)
            return None
        url = value.decode() if isinstance(value, bytes) else value
        return url if url and url != self.own_url else None

    async def start(self) -> None:
        self._renewal = asyncio.create_task(self._renew())

    async def stop(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
        for room in list(self._held):
            await self._release(room)
        self._held.clear()
        await self._redis.aclose()

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LEASE_S / 3)
            for room in list(self._held):
                await self._claim(room)

    async def _claim(self, room: str) -> None:
        try:
            await self._redis.set(self.key(room), self.own_url, px=int(LEASE_S * 1000))
        except self._errors as exc:
            log.warning("media locator: cannot claim %s (%r)", room, exc)

    async def _release(self, room: str) -> None:
        try:
            await self._redis.eval(_RELEASE, 1, self.key(room), self.own_url)
        except self._errors as exc:
            log.warning("media locator: cannot release %s (%r)", room, exc)


LOCATOR_KEY = web.AppKey("liveroom_media_locator", MediaLocator)


async def redirect(request: web.Request, room: str, public: bool = False) -> web.Response | None:
    """307 to the node holding `room`'s media, or None: serve the request here. `public`:
    files anyone may read (HLS), so the redirect is open to every origin as they are."""
    locator = request.app.get(LOCATOR_KEY)
    if locator is None:
        return None
    url = await locator.where(room)
    if url is None:
        return None
    headers = {
        "Location": url + request.rel_url.path_qs,
        "Cache-Control": "no-store",
        "Access-Control-Expose-Headers": "Location",
    }
    if public:
        headers["Access-Control-Allow-Origin"] = "*"
    return web.Response(status=307, headers=headers)
