"""Short-lived publish tokens for the media module: HS256 JWTs bound to a room and a stage slot.

The co-streaming plugin mints one when the host accepts a guest; the media module verifies
it before letting that guest publish. Same secret as the node's client tokens, different
audience, so neither can stand in for the other.

Revocation. A guest taken off the stage (removed, left, gone from the room, banned, or
their slot ended by the host) must not publish again with the token they still hold:
`revoke(room, slot, user, now_ms)` refuses every token of that slot minted until then (a
`mnt` claim, ms) for as long as such a token may live, and tells the listeners (the media
module ends the slot's session). Tokens minted afterwards (the next guest in that slot)
are good.

The list is this process's; `revoke_everywhere` also writes the revocation to the node's
store (a counter `publish.revoked:<room>:<slot>` = when, in ms), and
`check_revoked_everywhere` reads it there when the list here does not refuse the token. The
store is what every process and node of a deployment share (Redis on a cluster; the
embedded SQLite file on one node, which also outlives a restart): a guest taken off the
stage through node A cannot publish again through node B, nor after A restarts.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from liveroom.digits import is_digits
from liveroom.errors import CommandError, Unauthorized
from liveroom.store import Store

__all__ = ["AUDIENCE", "PublishGrant", "PublishTokens", "revoked_key"]

log = logging.getLogger(__name__)

AUDIENCE = "liveroom-media-publish"
MAX_REVOKED = 100_000  # revoked slots remembered at once (the oldest forgotten first)
OnRevoke = Callable[[str, int, str], None]  # (room, slot, user)


@dataclass(frozen=True, slots=True)
class PublishGrant:
    user_id: str
    room: str
    slot: int
    expires_at: float


def revoked_key(room: str, slot: int) -> str:
    """The store counter holding when `room`'s `slot` was last revoked (ms)."""
    return f"publish.revoked:{room}:{slot}"


class PublishTokens:
    def __init__(self, secret: str, ttl_s: float = 60.0, store: Store | None = None) -> None:
        self._secret = secret
        self._store = store  # shared with every process and node: revocations everywhere
        self.ttl_s = ttl_s
        self._longest_ttl_s = ttl_s
        # (room, slot) -> (revoked at, forgotten after), both ms; oldest first.
        self._revoked: OrderedDict[tuple[str, int], tuple[int, float]] = OrderedDict()
        self._listeners: list[OnRevoke] = []

    def mint(
        self, user_id: str, room: str, slot: int, now_s: float | None = None, ttl_s: float | None = None
    ) -> tuple[str, float]:
        """A token and its expiry (epoch seconds)."""
        issued = time.time() if now_s is None else now_s
        ttl = self.ttl_s if ttl_s is None else ttl_s
        self._longest_ttl_s = max(self._longest_ttl_s, ttl)
        expires = issued + ttl
        revoked = self._revoked.get((room, slot))
        minted = max(int(issued * 1000), revoked[0] + 1 if revoked else 0)  # after any revocation
        claims: dict[str, Any] = {
            "sub": user_id,
            "room": room,
            "slot": slot,
            "scope": "publish",
            "aud": AUDIENCE,
            "iat": int(issued),
            "exp": int(expires),
            "mnt": minted,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256"), expires

    def verify(self, token: str, room: str) -> PublishGrant:
        try:
            claims = jwt.decode(
                token, self._secret, ["HS256"], audience=AUDIENCE, options={"require": ["exp", "sub"]}
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid publish token: {exc}") from None
        if claims.get("room") != room or claims.get("scope") != "publish":
            raise Unauthorized("this publish token is for another room")
        self.check_revoked(room, claims.get("slot"), claims.get("mnt"))
        return PublishGrant(claims["sub"], room, int(claims["slot"]), float(claims["exp"]))

    def check_revoked(self, room: str, slot: object, minted: object) -> None:
        """Unauthorized if a token of `room`'s `slot` minted at `minted` (ms) was revoked."""
        if not isinstance(slot, int | str) or not is_digits(str(slot)):
            return
        revoked = self._revoked.get((room, int(slot)))
        if revoked is not None and (not isinstance(minted, int) or minted <= revoked[0]):
            raise Unauthorized("this publish token was revoked: the guest left the stage")

    async def check_revoked_everywhere(self, room: str, slot: object, minted: object) -> None:
        """`check_revoked`, then the store's record of the slot's last revocation (made by
        any process or node): Unauthorized if the token was minted until then."""
        self.check_revoked(room, slot, minted)
        if self._store is None or not isinstance(slot, int | str) or not is_digits(str(slot)):
            return
        revoked_ms = await self._store.get_counter(revoked_key(room, int(slot)))
        now_ms = time.time() * 1000
        if revoked_ms > 0 and now_ms - revoked_ms < self._longest_ttl_s * 1000:  # as the list here
            self._remember(room, int(slot), revoked_ms, now_ms)
            self.check_revoked(room, slot, minted)

    def revoke(self, room: str, slot: int, user: str, now_ms: float) -> None:
        """Refuse the slot's tokens minted until now, and tell the listeners (end its media)."""
        self._remember(room, slot, int(now_ms), now_ms)
        for listener in self._listeners:
            listener(room, slot, user)

    async def revoke_everywhere(self, room: str, slot: int, user: str, now_ms: float) -> None:
        """`revoke` here, and in the store for every other process and node. A store that
        fails leaves the revocation this process's only (logged)."""
        self.revoke(room, slot, user, now_ms)
        if self._store is None:
            return
        try:
            await self._store.set_counter(revoked_key(room, slot), int(now_ms))
        except CommandError as error:
            log.warning("publish tokens of %s slot %d revoked on this node only: %s", room, slot, error)

    def _remember(self, room: str, slot: int, revoked_ms: int, now_ms: float) -> None:
        self._forget_expired(now_ms)
        known = self._revoked.pop((room, slot), None)
        revoked_ms = max(revoked_ms, known[0]) if known else revoked_ms
        self._revoked[(room, slot)] = (revoked_ms, now_ms + self._longest_ttl_s * 1000)
        while len(self._revoked) > MAX_REVOKED:
            self._revoked.popitem(last=False)

    def on_revoke(self, listener: OnRevoke) -> None:
        self._listeners.append(listener)

    def _forget_expired(self, now_ms: float) -> None:
        """Entries whose every token has expired by now (bounded: at most MAX_REVOKED)."""
        while self._revoked:
            key, (_, until) = next(iter(self._revoked.items()))
            if until > now_ms:
                break
            del self._revoked[key]
