"""One exception hierarchy. A `CommandError` carries the wire code sent in an error ack."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "BadRequest",
    "CommandError",
    "ConfigError",
    "ConnectionGone",
    "Forbidden",
    "LiveroomError",
    "NotFound",
    "NotJoined",
    "OutcomeUnknown",
    "PayloadTooLarge",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
]


class LiveroomError(Exception):
    """Base of every error liveroom raises on purpose."""


class ConfigError(LiveroomError):
    """The configuration (file, environment, or a plugin's section) is invalid."""


class CommandError(LiveroomError):
    """A command failed in a way the client should be told about, with a snake_case code."""

    code: str = "bad_request"

    def __init__(
        self, message: str, code: str | None = None, details: Mapping[str, Any] | None = None
    ) -> None:
        """`details`: more fields of the error object, JSON-able (an auction's `bid_too_low`
        carries the current price); they never replace `code` or `message`."""
        super().__init__(message)
        self.message = message
        self.details = dict(details or {})
        if code is not None:
            self.code = code

    def as_error(self) -> dict[str, Any]:
        return {**self.details, "code": self.code, "message": self.message}


class BadRequest(CommandError):
    code = "bad_request"


class PayloadTooLarge(CommandError):
    code = "payload_too_large"


class Unauthorized(CommandError):
    code = "unauthorized"


class Forbidden(CommandError):
    code = "forbidden"


class NotJoined(CommandError):
    code = "not_joined"


class RateLimited(CommandError):
    code = "rate_limited"


class ConnectionGone(CommandError):
    """The caller's connection closed while its command waited: nothing was joined."""

    code = "connection_closed"


class Unavailable(CommandError):
    """A backend the command needs (Redis) cannot be reached; nothing was done."""

    code = "unavailable"

    def as_error(self) -> dict[str, Any]:
        return {**super().as_error(), "retry": "later"}


class NotFound(CommandError):
    code = "not_found"


class OutcomeUnknown(CommandError):
    """A write was sent to a backend (Redis) and no answer came in time: it may or may not have
    happened. Retrying the command with the same `request_id` converges on one outcome."""

    code = "outcome_unknown"

    def as_error(self) -> dict[str, Any]:
        return {**super().as_error(), "retry": "same_request_id"}
