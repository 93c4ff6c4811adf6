"""The server side of RFC 6455 with no I/O: the opening handshake and the client's frames.

Bytes in, messages out. `FrameReader` unmasks, joins fragments, answers nothing itself
and raises `WebSocketError` (with the close code to send) on anything a server must
refuse; text stays bytes (the caller decodes it once, and closes with INVALID_DATA if it
is not UTF-8). Frames to clients are built in `liveroom.frames`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

__all__ = [
    "BINARY",
    "CLOSE",
    "INVALID_DATA",
    "PING",
    "PONG",
    "TEXT",
    "FrameReader",
    "RequestHead",
    "WebSocketError",
    "accept_key",
    "parse_request_head",
    "upgrade_response",
]

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
_CONTINUATION = 0x0
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Close codes (RFC 6455 §7.4.1).
PROTOCOL_ERROR, INVALID_DATA, TOO_BIG = 1002, 1007, 1009


class WebSocketError(Exception):
    """The client broke the protocol; close the connection with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


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


def _unmask(mask: bytes, payload: bytes) -> bytes:
    length = len(payload)
    if not length:
        return payload
    # One big-integer XOR instead of a Python loop per byte.
    key = int.from_bytes((mask * (length // 4 + 1))[:length], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(length, "little")


class FrameReader:
    """Complete messages from a client's bytes: `(opcode, payload)`, text still as bytes.

    Data messages are TEXT or BINARY (fragments joined); control frames (CLOSE, PING,
    PONG) come out as they arrive, even between fragments. A message over
    `max_message_bytes` is refused from its header, before it is buffered.
    """

    __slots__ = ("_buffer", "_fragments", "_fragments_size", "_message_opcode", "max_message_bytes")

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self._message_opcode = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buffer = self._buffer + data if self._buffer else data
        messages: list[tuple[int, bytes]] = []
        offset = 0
        while True:
            frame = self._frame_at(buffer, offset)
            if frame is None:
                break
            offset, final, opcode, payload = frame
            message = self._message(final, opcode, payload)
            if message is not None:
                messages.append(message)
        self._buffer = buffer[offset:]
        return messages

    def _frame_at(self, buffer: bytes, offset: int) -> tuple[int, bool, int, bytes] | None:
        available = len(buffer) - offset
        if available < 2:
            return None
        first, second = buffer[offset], buffer[offset + 1]
        if first & 0x70:
            raise WebSocketError(PROTOCOL_ERROR, "no extension was negotiated")
        if not second & 0x80:
            raise WebSocketError(PROTOCOL_ERROR, "client frames must be masked")
        length = second & 0x7F
        header = 2
        if length == 126:
            header = 4
            if available < header:
                return None
            length = int.from_bytes(buffer[offset + 2 : offset + 4], "big")
        elif length == 127:
            header = 10
            if available < header:
                return None
            length = int.from_bytes(buffer[offset + 2 : offset + 10], "big")
        opcode = first & 0x0F
        if opcode >= CLOSE and (length > 125 or not first & 0x80):
            raise WebSocketError(PROTOCOL_ERROR, "control frames are short and unfragmented")
        if self._fragments_size + length > self.max_message_bytes:
            raise WebSocketError(TOO_BIG, f"messages are limited to {self.max_message_bytes} bytes")
        end = offset + header + 4 + length
        if len(buffer) < end:
            return None
        mask = buffer[offset + header : offset + header + 4]
        return end, bool(first & 0x80), opcode, _unmask(mask, buffer[offset + header + 4 : end])

    def _message(self, final: bool, opcode: int, payload: bytes) -> tuple[int, bytes] | None:
        if opcode >= CLOSE:
            if opcode not in (CLOSE, PING, PONG):
                raise WebSocketError(PROTOCOL_ERROR, f"unknown control opcode {opcode}")
            return opcode, payload
        if opcode == _CONTINUATION:
            if not self._message_opcode:
                raise WebSocketError(PROTOCOL_ERROR, "a continuation without a message")
        elif opcode in (TEXT, BINARY):
            if self._message_opcode:
                raise WebSocketError(PROTOCOL_ERROR, "a new message inside a fragmented one")
            if final:
                return opcode, payload
            self._message_opcode = opcode
        else:
            raise WebSocketError(PROTOCOL_ERROR, f"unknown data opcode {opcode}")
        self._fragments.append(payload)
        self._fragments_size += len(payload)
        if not final:
            return None
        message_opcode, joined = self._message_opcode, b"".join(self._fragments)
        self._fragments, self._fragments_size, self._message_opcode = [], 0, 0
        return message_opcode, joined
