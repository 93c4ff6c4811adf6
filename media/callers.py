"""Who is calling a WHIP/WHEP endpoint, and what they may do there.

Two kinds of bearer token are accepted:

* the core's tokens (`liveroom token`, or the operator's auth service): role viewer,
  host, moderator or admin, optionally bound to one room;
* a co-stream guest's publish token, minted by the costream plugin with the same HS256
  secret: `{"sub", "name"?, "role": "guest", "room", "slot", "scope": "publish", "exp"}`.
  It allows exactly one thing: WHIP into that room's stage slot `slot`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import jwt

from liveroom.auth import TokenAuthority
from liveroom.errors import Forbidden, Unauthorized
from liveroom.publish_token import AUDIENCE as PUBLISH_AUDIENCE
from liveroom.publish_token import PublishTokens

__all__ = ["HOST_SLOT", "Action", "Caller", "CallerVerifier", "bearer_token"]

HOST_SLOT = "host"
PUBLISH_ROLES = ("host", "admin")
Action = Literal["end", "status", "trickle"]


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: str
    name: str
    role: str  # viewer | host | moderator | admin | guest
    room: str | None  # the room the token is bound to, if any
    slot: str | None = None  # a guest's stage slot

    def check_room(self, room: str) -> None:
        if self.room is not None and self.room != room:
            raise Forbidden(f"this token is bound to room {self.room!r}", "wrong_room")

    def publish_slot(self, room: str) -> str:
        """The stage slot this caller may publish into, or Forbidden."""
        self.check_room(room)
        if self.role == "guest" and self.slot is not None:
            return self.slot
        if self.role in PUBLISH_ROLES:
            return HOST_SLOT
        raise Forbidden(f"role {self.role!r} may not publish; a host or stage-guest token is needed")

    def authorise(self, action: Action, owner: Caller, room: str, slot: str) -> None:
        """The one check for every media resource: may this caller `action` the session
        `owner` opened in `room`'s `slot` (a WHIP publisher, or a WHEP viewer of that slot)?

        The token must be for this room (or for no room). Then: its owner, the same user
        in the same role (and, for a guest, the same slot): anything; an admin: end it or
        read its status; a host whose token is bound to this room: end a guest's publish.
        Nobody else, whatever their user id or role elsewhere; Forbidden otherwise.
        """
        self.check_room(room)
        if (self.user_id, self.role, self.slot) == (owner.user_id, owner.role, owner.slot):
            return
        if self.role == "admin" and action in ("end", "status"):
            return
        if action == "end" and self.role == "host" and self.room == room and owner.role == "guest":
            return
        if action == "end" and slot == HOST_SLOT and self.role == "host":
            raise Forbidden("only the publishing host itself or an admin may end the host slot")
        raise Forbidden("this media session belongs to someone else")


class CallerVerifier:
    def __init__(self, authority: TokenAuthority, secret: str, tokens: PublishTokens | None = None) -> None:
        self._authority = authority
        self._secret = secret
        self._tokens = tokens  # the node's publish tokens: their revocation list

    def verify(self, token: str | None) -> Caller:
        """The caller, with a guest's token checked against this process's revocations."""
        return self._verify(token)[0]

    async def verify_everywhere(self, token: str | None) -> Caller:
        """`verify`, and a guest's token checked against the revocations of every process
        and node too (the store's: liveroom.publish_token)."""
        caller, minted = self._verify(token)
        if caller.role == "guest" and self._tokens is not None and caller.room is not None:
            await self._tokens.check_revoked_everywhere(caller.room, caller.slot, minted)
        return caller

    def _verify(self, token: str | None) -> tuple[Caller, object]:
        """The caller and, for a guest, its token's `mnt` claim (when it was minted, ms)."""
        if not token:
            raise Unauthorized("an Authorization: Bearer <token> header is required")
        try:
            identity = self._authority.verify(token)
        except Unauthorized as error:
            guest = self._guest(token)
            if guest is None:
                raise error from None
            return guest
        return Caller(identity.user_id, identity.name, identity.role, identity.room), None

    def _guest(self, token: str) -> tuple[Caller, object] | None:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                ["HS256"],
                options={"require": ["sub", "exp", "room", "slot"], "verify_aud": False},
            )
        except jwt.PyJWTError:
            return None
        # The costream plugin's tokens (liveroom.publish_token) carry the publish audience
        # instead of a role; a token with any other audience is not a publish token.
        audience = claims.get("aud")
        if audience not in (None, PUBLISH_AUDIENCE):
            return None
        role = claims.get("role", "guest" if audience == PUBLISH_AUDIENCE else None)
        if role != "guest" or claims.get("scope") != "publish":
            return None
        sub, room, slot = claims["sub"], claims["room"], claims["slot"]
        if not isinstance(sub, str) or not isinstance(room, str) or not isinstance(slot, int | str):
            return None
        if str(slot) == HOST_SLOT:
            return None
        if self._tokens is not None:
            self._tokens.check_revoked(room, slot, claims.get("mnt"))  # Unauthorized if revoked
        name = claims.get("name")
        caller = Caller(sub, name if isinstance(name, str) else sub, "guest", room, str(slot))
        return caller, claims.get("mnt")


def bearer_token(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
