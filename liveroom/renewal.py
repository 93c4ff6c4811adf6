"""Identity over time: a token that expires while its connection is open.

A token is checked at CONNECT; the connection outlives it. From the token's `exp` on, the
connection's commands are refused `token_expired` (all but `auth.refresh`), and at its
next heartbeat the client gets a `token_expired` item with `close_at`: until then it may
send `auth.refresh {"token"}` with a new token for the same user, role and room, and go
on as before. A connection not refreshed by `close_at` is closed (`token_expired`).
Time comes from the node's clock; the heartbeat (every `ping_interval_s`) is the only
timer, so the item and the close come at most one ping interval late.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from liveroom.errors import CommandError, Forbidden, RateLimited
from liveroom.protocol import decode_payload, encode_item, error_ack, ok_ack

if TYPE_CHECKING:
    from liveroom.auth import TokenAuthority
    from liveroom.clock import Clock
    from liveroom.connection import Connection

__all__ = ["REFRESH_COMMAND", "Renewal", "TokenExpired"]

REFRESH_COMMAND = "auth.refresh"
EXPIRED_ITEM = "token_expired"


class TokenExpired(CommandError):
    code = "token_expired"


@dataclass(frozen=True, slots=True)
class RefreshPayload:
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]


class Renewal:
    """The node's expiring identities: refused commands, the warning item, the close."""

    def __init__(
        self,
        authority: TokenAuthority,
        grace_s: float,
        clock: Clock,
        connection_of: Callable[[str], Connection | None],
        disconnect: Callable[[Connection, str, str], None],
    ) -> None:
        self._authority = authority
        self._grace_ms = grace_s * 1000.0
        self._clock = clock
        self._connection_of = connection_of
        self._disconnect = disconnect
        self._told: dict[str, float] = {}  # sid -> when it is closed, once told

    def expires_ms(self, sid: str) -> float | None:
        """When the connection's token expires (ms since the epoch), for the session to check."""
        connection = self._connection_of(sid)
        expires_at = None if connection is None else connection.identity.expires_at
        return None if expires_at is None else expires_at * 1000.0

    def past(self, expires_ms: float) -> bool:
        return self._clock.now_ms() >= expires_ms

    def refused(self) -> dict[str, Any]:
        """The ack of any command but `auth.refresh` once the token has expired."""
        error = TokenExpired(f"the token has expired: send {REFRESH_COMMAND} with a new one")
        return error_ack(error)

    def heartbeat(self, sid: str) -> None:
        """Tell an expired connection once, close it when its grace is over."""
        connection = self._connection_of(sid)
        expires_ms = self.expires_ms(sid)
        now = self._clock.now_ms()
        if connection is None or expires_ms is None or now < expires_ms:
            return
        close_at = self._told.get(sid)
        if close_at is None:
            close_at = self._told[sid] = now + self._grace_ms
            data = {
                "code": EXPIRED_ITEM,
                "message": f"the token has expired: send {REFRESH_COMMAND} {{token}} before close_at",
                "expired_at": expires_ms,
                "close_at": close_at,
            }
            connection.send_batch(b"null", [encode_item(None, EXPIRED_ITEM, int(now), data)])
        elif now >= close_at:
            self._disconnect(connection, EXPIRED_ITEM, "the token expired and was not refreshed")

    def refresh(self, sid: str, args: tuple[Any, ...]) -> dict[str, Any]:
        """`auth.refresh {"token"}`: the same user, role and room, a later expiry."""
        connection = self._connection_of(sid)
        if connection is None:
            return error_ack(CommandError("not connected", "unauthorized"))
        try:
            if not connection.bucket.take(self._clock.monotonic()):
                raise RateLimited("too many commands")
            if len(args) != 1:
                raise CommandError(f"{REFRESH_COMMAND} takes one object argument", "bad_request")
            payload = decode_payload(RefreshPayload, args[0])
            new = self._authority.verify(payload.token)
            old = connection.identity
            if (new.user_id, new.role, new.room) != (old.user_id, old.role, old.room):
                raise Forbidden("a new token must name the same user, role and room: reconnect with it")
        except CommandError as error:
            return error_ack(error)
        connection.identity = new
        self._told.pop(sid, None)
        return ok_ack(expires_at=None if new.expires_at is None else new.expires_at * 1000.0)

    def forget(self, sid: str) -> None:
        self._told.pop(sid, None)
