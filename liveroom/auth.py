"""Tokens: who a connection is. HS256 with the configured secret, or RS256 with a public key."""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import jwt

from liveroom.config import AuthConfig
from liveroom.errors import CommandError, ConfigError, Unauthorized

__all__ = [
    "RANK",
    "ROLES",
    "Identity",
    "Outranked",
    "Role",
    "TokenAuthority",
    "check_outranks",
    "resolve_secret",
]

Role = Literal["viewer", "host", "moderator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "host", "moderator", "admin")
# The staff hierarchy: an action on a user (mute, ban, take off stage) needs a rank at least
# the target's. Moderators may act on viewers and moderators, hosts also on hosts, admins on all.
RANK: dict[str, int] = {"viewer": 0, "moderator": 1, "host": 2, "admin": 3}
MAX_NAME_LENGTH = 64
# A tier is the audience's level set by the issuer (a membership, a fan-club level, "vip"):
# a short lowercase word that plugins may match against their config.
TIER_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


@dataclass(frozen=True, slots=True)
class Identity:
    """The verified claims of a token."""

    user_id: str
    name: str
    role: Role
    room: str | None = None
    expires_at: float | None = None
    tier: str | None = None

    @property
    def is_staff(self) -> bool:
        """Hosts, moderators and admins may run a room."""
        return self.role != "viewer"


class Outranked(CommandError):
    code = "outranked"


def check_outranks(actor: str, target: str) -> None:
    """Raise Outranked if a user of role `actor` may not act on a user of role `target`."""
    if RANK.get(target, 0) > RANK.get(actor, 0):
        raise Outranked(f"a {actor} may not act on a {target}")


class TokenAuthority:
    """Mints and verifies tokens. Mints HS256 only; verifies HS256 and, if configured, RS256."""

    def __init__(self, secret: str, public_key: str | None = None) -> None:
        if not secret:
            raise ConfigError("auth: the JWT secret is empty")
        self._secret = secret
        self._public_key = public_key

    @classmethod
    def from_config(cls, auth: AuthConfig) -> TokenAuthority:
        public_key = None
        if auth.jwt_public_key_file:
            try:
                public_key = Path(auth.jwt_public_key_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"auth: cannot read jwt_public_key_file: {exc}") from exc
        return cls(resolve_secret(auth), public_key)

    def mint(
        self,
        user_id: str,
        name: str,
        role: Role,
        room: str | None = None,
        ttl_s: float = 3600,
        tier: str | None = None,
    ) -> str:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if tier is not None and not TIER_PATTERN.fullmatch(tier):
            raise ValueError("tier must be a lowercase word: a-z, 0-9, '_' or '-', at most 32 characters")
        claims: dict[str, Any] = {"sub": user_id, "name": name, "role": role, "exp": int(time.time() + ttl_s)}
        if room is not None:
            claims["room"] = room
        if tier is not None:
            claims["tier"] = tier
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: object) -> Identity:
        if not isinstance(token, str) or not token:
            raise Unauthorized('a token is required: connect with auth {"token": "<jwt>"}')
        try:
            claims = self._decode(token)
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        return _identity(claims)

    def _decode(self, token: str) -> dict[str, Any]:
        algorithm = jwt.get_unverified_header(token).get("alg")
        if algorithm == "RS256" and self._public_key:
            return jwt.decode(token, self._public_key, ["RS256"], options={"require": ["sub", "exp"]})
        return jwt.decode(token, self._secret, ["HS256"], options={"require": ["sub", "exp"]})


def _identity(claims: dict[str, Any]) -> Identity:
    sub, name, role, room = (
        claims.get("sub"),
        claims.get("name", ""),
        claims.get("role", "viewer"),
        claims.get("room"),
    )
    if not isinstance(sub, str) or not sub or len(sub) > 128:
        raise Unauthorized("claim 'sub' must be a non-empty string")
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH:
        raise Unauthorized(f"claim 'name' must be a string of at most {MAX_NAME_LENGTH} characters")
    if role not in ROLES:
        raise Unauthorized(f"claim 'role' must be one of {', '.join(ROLES)}")
    if room is not None and not isinstance(room, str):
        raise Unauthorized("claim 'room' must be a string")
    tier = claims.get("tier")
    if tier is not None and not (isinstance(tier, str) and TIER_PATTERN.fullmatch(tier)):
        raise Unauthorized("claim 'tier' must be a lowercase word (a-z, 0-9, '_', '-'; at most 32)")
    return Identity(sub, name or sub, cast(Role, role), room, float(claims["exp"]), tier)


def resolve_secret(auth: AuthConfig) -> str:
    """The configured secret, else the one kept in `jwt_secret_file` (made on first use, mode 0600)."""
    if auth.jwt_secret:
        return auth.jwt_secret
    path = Path(auth.jwt_secret_file)
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
    return secret
