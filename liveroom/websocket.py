"""The opening handshake of RFC 6455 with no I/O: a request head in, a 101 out.

The open connection's frames are `liveroom.wire.websocket`'s; frames to clients are
built in `liveroom.frames`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

__all__ = [
    "RequestHead",
    "accept_key",
    "parse_request_head",
    "upgrade_response",
]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass(frozen=True, slots=True)
class RequestHead:
    """An HTTP/1.1 request line and headers (names lower-cased, repeats joined by ", ")."""

    method: str
    target: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def has_token(self, name: str, token: str) -> bool:
        """Whether a comma-separated header (Connection, Upgrade) lists `token`."""
        return any(part.strip().lower() == token for part in self.headers.get(name, "").split(","))


def parse_request_head(head: bytes) -> RequestHead | None:
    """The request in `head` (up to and including the blank line), or None if it is not
    a well-formed HTTP/1.1 request; whoever gets None lets a full HTTP server answer it."""
    try:
        text = head.decode("latin-1")
        request_line, *lines = text.split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError:
        return None
    if version != "HTTP/1.1":
        return None
    headers: dict[str, str] = {}
    for line in lines:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return None
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return RequestHead(method, target, headers)


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def upgrade_response(key: str) -> bytes:
    """The 101 response that completes the opening handshake (no extension, no subprotocol)."""
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
    ).encode()
