"""Short-lived publish tokens for the media module: HS256 JWTs bound to a room and a stage slot.

The co-streaming plugin mints one when the host accepts a guest; the media module verifies
it before letting that guest publish. Same secret as the node's client tokens, different
audience, so neither can stand in for the other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from liveroom.errors import Unauthorized

__all__ = ["AUDIENCE", "PublishGrant", "PublishTokens"]

AUDIENCE = "liveroom-media-publish"


@dataclass(frozen=True, slots=True)
class PublishGrant:
    user_id: str
    room: str
    slot: int
    expires_at: float


class PublishTokens:
    def __init__(self, secret: str, ttl_s: float = 60.0) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    def mint(
        self, user_id: str, room: str, slot: int, now_s: float | None = None, ttl_s: float | None = None
    ) -> tuple[str, float]:
        """A token and its expiry (epoch seconds)."""
        issued = time.time() if now_s is None else now_s
        expires = issued + (self.ttl_s if ttl_s is None else ttl_s)
        claims: dict[str, Any] = {
            "sub": user_id,
            "room": room,
            "slot": slot,
            "scope": "publish",
            "aud": AUDIENCE,
            "iat": int(issued),
            "exp": int(expires),
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
        return PublishGrant(claims["sub"], room, int(claims["slot"]), float(claims["exp"]))
