"""RFC 6455, the server's side of an open connection, with no I/O: bytes in, events and
bytes out (in the manner of websockets' sans-I/O `Protocol`).

`ServerProtocol.receive_data` unmasks the client's frames, joins fragments and returns
whole messages; it answers pings and the closing handshake itself (the bytes wait in
`outgoing` for whoever writes them). What a server must refuse fails the connection:
a close frame with the code is queued, `state` becomes CLOSED and everything after is
ignored. Bounded and linear in what it receives:

- a message over `max_message_bytes` is refused from the frame header that would pass
  it, before a byte of it is buffered; control frames are not part of a message and do
  not count against it;
- a frame that arrives in many segments is appended to one buffer, not rebuilt per
  segment; fragments are appended to one buffer too (ten million empty continuation
  frames cost nothing but the time to read them);
- text is validated as UTF-8 fragment by fragment, so a bad byte fails the connection
  (1007) when it arrives, not when the message ends.

Masking runs in C: websockets' `speedups.apply_mask` (SSE2/NEON; 1 MiB in well under a
millisecond, against 7.6 ms for Python's big-integer XOR). websockets is the one
maintained library that exposes it as a function: aiohttp's equivalent is private
(`aiohttp._websocket.mask`), wsproto masks in Python, picows keeps its parser internal.
"""

from __future__ import annotations

import codecs
import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass

_c_apply_mask: Callable[[bytes | bytearray, bytes | bytearray], bytes] | None
try:
    from websockets.speedups import apply_mask as _c_apply_mask
except ImportError:  # pragma: no cover - websockets is a dependency; kept for odd platforms
    _c_apply_mask = None

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "TEXT",
    "BinaryMessage",
    "CloseCode",
    "CloseReceived",
    "Event",
    "ServerProtocol",
    "State",
    "TextMessage",
    "WebSocketError",
    "apply_mask",
    "close_frame",
    "is_valid_close_code",
    "unframe",
]

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_OPCODES = frozenset((CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG))


class CloseCode(enum.IntEnum):
    """RFC 6455 §7.4.1 (and the IANA registry's 1012-1014)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005  # never sent: stands for a close frame without a code
    ABNORMAL_CLOSURE = 1006  # never sent: the TCP connection ended without a close frame
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014


# Codes a peer may put in a close frame: 1004-1006 and 1015 are reserved, 1016-2999
# unassigned (for the IANA registry to give out), 3000-4999 for libraries and applications.
_SENDABLE = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))


def is_valid_close_code(code: int) -> bool:
    """Whether `code` may appear in a close frame on the wire."""
    return code in _SENDABLE or 3000 <= code < 5000


class State(enum.IntEnum):
    OPEN = 0
    CLOSED = 1  # a close frame was sent or received, or the connection failed


class WebSocketError(Exception):
    """The client broke the protocol; the connection fails with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TextMessage:
    text: str


@dataclass(frozen=True, slots=True)
class BinaryMessage:
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The client closed: `code` is 1005 when its close frame had none. The echo is queued."""

    code: int
    reason: str


Event = TextMessage | BinaryMessage | CloseReceived


def _python_mask(data: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    length = len(data)
    key = int.from_bytes((mask * (length // 4 + 1))[:length], "little")
    return (int.from_bytes(data, "little") ^ key).to_bytes(length, "little")


def apply_mask(data: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    """XOR `data` with the 4-byte `mask` (masking and unmasking are the same)."""
    if not data:
        return b""
    if _c_apply_mask is not None:
        return _c_apply_mask(data, mask)
    return _python_mask(data, mask)


def close_frame(code: int, reason: str = "") -> bytes:
    """A server's close frame; the reason is cut to fit 125 bytes, never inside a character."""
    encoded = reason.encode()[:123].decode(errors="ignore").encode()
    payload = struct.pack("!H", code) + encoded
    return bytes((0x88, len(payload))) + payload


def unframe(frame: bytes) -> bytes:
    """The payload of one unmasked frame built by this server (liveroom.frames)."""
    length = frame[1] & 0x7F
    return frame[2 + (2 if length == 126 else 8 if length == 127 else 0) :]


def _control_frame(opcode: int, payload: bytes) -> bytes:
    return bytes((0x80 | opcode, len(payload))) + payload


class ServerProtocol:
    """One client connection after the opening handshake."""

    __slots__ = (
        "_buffer",
        "_decoder",
        "_message",
        "_message_opcode",
        "close_code",
        "close_reason",
        "max_message_bytes",
        "outgoing",
        "state",
    )

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes  # may change (smaller before sign-in)
        self.state = State.OPEN
        self.outgoing: list[bytes] = []  # pongs and close frames for the caller to write
        self.close_code: int | None = None  # why the connection ended (sent or received)
        self.close_reason = ""
        self._buffer: bytearray | None = None  # bytes of a frame not complete yet
        self._message: bytearray | None = None  # a fragmented message so far
        self._message_opcode = 0
        self._decoder: codecs.IncrementalDecoder | None = None

    # -- input ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """The messages completed by `data`, in order. Nothing once the state is CLOSED."""
        if self.state is not State.OPEN:
            return []
        buffer: bytes | bytearray
        if self._buffer is None:
            buffer = data
        else:
            self._buffer += data
            buffer = self._buffer
        events: list[Event] = []
        offset = 0
        try:
            while self.state is State.OPEN:
                end = self._frame(buffer, offset, events)
                if end < 0:
                    break
                offset = end
        except WebSocketError as error:
            self.fail(error.code, error.reason)
        self._keep(buffer, offset)
        return events

    def receive_eof(self) -> None:
        """The client's TCP connection ended; without a close frame that is 1006."""
        if self.state is State.OPEN:
            self.state = State.CLOSED
            self.close_code = CloseCode.ABNORMAL_CLOSURE
            self.close_reason = "the connection ended without a close frame"

    def _keep(self, buffer: bytes | bytearray, offset: int) -> None:
        if self.state is not State.OPEN or offset == len(buffer):
            self._buffer = None
        elif buffer is self._buffer:
            del self._buffer[:offset]  # bytearray: dropping the front is O(1), not a copy
        else:
            self._buffer = bytearray(memoryview(buffer)[offset:])

    def _frame(self, buffer: bytes | bytearray, offset: int, events: list[Event]) -> int:
        """Handle the frame at `offset`: its end, or -1 if it is not all here yet."""
        available = len(buffer) - offset
        if available < 2:
            return -1
        first, second = buffer[offset], buffer[offset + 1]
        opcode = first & 0x0F
        if opcode not in _OPCODES:
            raise WebSocketError(CloseCode.PROTOCOL_ERROR, f"unknown opcode {opcode}")
        if not second & 0x80:
            raise WebSocketError(CloseCode.PROTOCOL_ERROR, "client frames must be masked")
        length = second & 0x7F
        header = 2
        if length == 126:
            header = 4
            if available < 4:
                return -1
            length = (buffer[offset + 2] << 8) | buffer[offset + 3]
        elif length == 127:
            header = 10
            if available < 10:
                return -1
            length = int.from_bytes(buffer[offset + 2 : offset + 10], "big")
            if length >> 63:
                raise WebSocketError(CloseCode.PROTOCOL_ERROR, "the payload length's top bit is set")
        final = first & 0x80
        if opcode < CLOSE:
            if (len(self._message) if self._message is not None else 0) + length > self.max_message_bytes:
                raise WebSocketError(
                    CloseCode.MESSAGE_TOO_BIG, f"messages are limited to {self.max_message_bytes} bytes"
                )
        elif length > 125 or not final:
            raise WebSocketError(CloseCode.PROTOCOL_ERROR, "control frames are short and unfragmented")
        if first & 0x70:
            raise WebSocketError(CloseCode.PROTOCOL_ERROR, "reserved bits set: no extension was negotiated")
        end = offset + header + 4 + length
        if len(buffer) < end:
            return -1
        start = offset + header
        payload = apply_mask(buffer[start + 4 : end], buffer[start : start + 4])
        if opcode >= CLOSE:
            self._control(opcode, payload)
        else:
            self._data(opcode, bool(final), payload, events)
        if opcode == CLOSE:
            events.append(CloseReceived(self.close_code or CloseCode.NO_STATUS_RCVD, self.close_reason))
        return end

    def _data(self, opcode: int, final: bool, payload: bytes, events: list[Event]) -> None:
        if opcode == CONTINUATION:
            message = self._message
            if message is None:
                raise WebSocketError(CloseCode.PROTOCOL_ERROR, "a continuation frame without a message")
            message += payload
            if self._decoder is not None:
                self._check_text(payload, final)
            if not final:
                return
            opcode, self._message, self._decoder = self._message_opcode, None, None
            events.append(TextMessage(message.decode()) if opcode == TEXT else BinaryMessage(bytes(message)))
            return
        if self._message is not None:
            raise WebSocketError(CloseCode.PROTOCOL_ERROR, "a new message inside a fragmented one")
        if final:
            if opcode == BINARY:
                events.append(BinaryMessage(payload))
                return
            try:
                events.append(TextMessage(payload.decode()))
            except UnicodeDecodeError:
                raise WebSocketError(CloseCode.INVALID_DATA, "text messages must be UTF-8") from None
            return
        self._message = bytearray(payload)
        self._message_opcode = opcode
        if opcode == TEXT:
            self._decoder = codecs.getincrementaldecoder("utf-8")()
            self._check_text(payload, False)

    def _check_text(self, payload: bytes, final: bool) -> None:
        assert self._decoder is not None
        try:
            self._decoder.decode(payload, final)  # the text is decoded once, whole, at the end
        except UnicodeDecodeError:
            raise WebSocketError(CloseCode.INVALID_DATA, "text messages must be UTF-8") from None

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            self.outgoing.append(_control_frame(PONG, payload))
        elif opcode == CLOSE:
            code, reason = _parse_close(payload)
            if self._message is not None:
                # As websockets does: a close in the middle of a fragmented message.
                raise WebSocketError(CloseCode.PROTOCOL_ERROR, "a close frame inside a fragmented message")
            self.close_code, self.close_reason = code, reason
            # Echo the code (RFC 6455 §5.5.1); an empty close is answered with an empty one.
            self.outgoing.append(_control_frame(CLOSE, payload[:2]))
            self.state = State.CLOSED

    # -- output ---------------------------------------------------------------------------

    def fail(self, code: int, reason: str) -> None:
        """End the connection from this side: queue a close frame with `code`."""
        if self.state is not State.OPEN:
            return
        self.state = State.CLOSED
        self.close_code, self.close_reason = code, reason
        self.outgoing.append(close_frame(code, reason))
        self._buffer = self._message = self._decoder = None

    def close(self, code: int, reason: str = "") -> bytes:
        """Start the closing handshake from this side: the close frame to write (the
        caller closes the TCP connection after it; what the client sends after is ignored)."""
        if self.state is not State.OPEN:
            return b""
        self.state = State.CLOSED
        self.close_code, self.close_reason = code, reason
        self._buffer = self._message = self._decoder = None
        return close_frame(code, reason)

    def take_outgoing(self) -> bytes:
        """What is queued for the client, joined (empty if nothing)."""
        if not self.outgoing:
            return b""
        data = b"".join(self.outgoing)
        self.outgoing.clear()
        return data


def _parse_close(payload: bytes) -> tuple[int, str]:
    if not payload:
        return CloseCode.NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise WebSocketError(CloseCode.PROTOCOL_ERROR, "a close payload of one byte")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise WebSocketError(CloseCode.INVALID_DATA, "the close reason must be UTF-8") from None
    code = (payload[0] << 8) | payload[1]
    if not is_valid_close_code(code):
        raise WebSocketError(CloseCode.PROTOCOL_ERROR, f"close code {code} may not be sent")
    return code, reason
