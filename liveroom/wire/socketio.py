"""Socket.IO v5 with no I/O: packets in JSON (socket.io-parser's text form) and msgpack
(socket.io-msgpack-parser's maps), and binary attachments put back, bounded.

A JSON packet is `<type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]`; an event
with binary arguments (`5`) names how many binary messages follow, each standing in for a
`{"_placeholder": true, "num": N}`. A msgpack packet is one map `{type, nsp, data, id}`
(bytes travel inside it; no attachments). Everything a client can get wrong raises
`SocketIOError` with the wire code to answer and, when it could be read, the ack id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

from liveroom.digits import is_digits

__all__ = [
    "ACK",
    "BINARY_ACK",
    "BINARY_EVENT",
    "CONNECT",
    "CONNECT_ERROR",
    "DISCONNECT",
    "EVENT",
    "Assembly",
    "Packet",
    "SocketIOError",
    "decode_msgpack",
    "decode_text",
    "encode_msgpack",
    "msgpack_ack_id",
]

CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = range(7)
MAX_ID_DIGITS = 15  # ack ids stay exact as JavaScript numbers
_MAX_DEPTH = 32  # how deep placeholders are looked for


class SocketIOError(Exception):
    """A packet refused: answer `code` (`bad_request`, `payload_too_large`) if `ack_id` is known."""

    def __init__(self, message: str, ack_id: int | None = None, code: str = "bad_request") -> None:
        super().__init__(message)
        self.message = message
        self.ack_id = ack_id
        self.code = code


@dataclass(frozen=True, slots=True)
class Packet:
    type: int
    namespace: str = "/"
    id: int | None = None
    data: Any = None
    attachments: int = 0  # binary messages that follow (JSON BINARY_EVENT / BINARY_ACK)


def decode_text(text: str) -> Packet:
    """A JSON Socket.IO packet (the Engine.IO message after its `4`)."""
    kind = text[:1]
    if not ("0" <= kind <= "6") or len(kind) != 1:
        raise SocketIOError("not a Socket.IO packet")
    packet_type, position, attachments = int(kind), 1, 0
    if packet_type in (BINARY_EVENT, BINARY_ACK):
        dash = text.find("-", 1, 9)
        if dash < 0 or not is_digits(text[1:dash]):
            raise SocketIOError("a binary packet without its attachment count")
        attachments, position = int(text[1:dash]), dash + 1
    namespace = "/"
    if text.startswith("/", position):
        comma = text.find(",", position)
        end = len(text) if comma < 0 else comma
        namespace = text[position:end].partition("?")[0]
        position = end + 1
    end = position
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    if end - position > MAX_ID_DIGITS:
        raise SocketIOError("an ack id too long to be one")
    ack_id = int(text[position:end]) if end > position else None
    data = None
    if end < len(text):
        try:
            data = orjson.loads(text[end:])
        except orjson.JSONDecodeError:
            raise SocketIOError("the packet is not valid JSON", ack_id) from None
    return Packet(packet_type, namespace, ack_id, data, attachments)


def decode_msgpack(data: bytes) -> Packet:
    """A msgpack Socket.IO packet: a map with `type`, `nsp`, and `data` and `id` if any."""
    try:
        decoded = msgpack.unpackb(data)
    except Exception:  # msgpack raises several types (ExtraData, FormatError, ValueError...)
        raise SocketIOError("the packet is not valid msgpack") from None
    if not isinstance(decoded, dict):
        raise SocketIOError("a msgpack packet is a map")
    ack_id = decoded.get("id")
    if ack_id is not None and (type(ack_id) is not int or not 0 <= ack_id < 10**MAX_ID_DIGITS):
        raise SocketIOError("the ack id must be a whole number")
    packet_type, namespace = decoded.get("type"), decoded.get("nsp", "/")
    if type(packet_type) is not int or not CONNECT <= packet_type <= BINARY_ACK:
        raise SocketIOError("not a Socket.IO packet type", ack_id)
    if not isinstance(namespace, str):
        raise SocketIOError("the namespace must be a string", ack_id)
    return Packet(packet_type, namespace, ack_id, decoded.get("data"))


def msgpack_ack_id(data: bytes) -> int | None:
    """The `id` of a msgpack packet too large to decode: every other value is skipped unread."""
    unpacker = msgpack.Unpacker()
    unpacker.feed(data)
    try:
        for _ in range(unpacker.read_map_header()):
            if unpacker.unpack() == "id":
                ack_id = unpacker.unpack()
                return ack_id if type(ack_id) is int and 0 <= ack_id < 10**MAX_ID_DIGITS else None
            unpacker.skip()
    except Exception:  # not a map, truncated, a key that is itself huge...
        return None
    return None


def encode_msgpack(
    packet_type: int, data: Any, ack_id: int | None = None, default: Any = None, namespace: str = "/"
) -> bytes:
    fields: dict[str, Any] = {"type": packet_type, "data": data, "nsp": namespace}
    if ack_id is not None:
        fields["id"] = ack_id
    packed: bytes = msgpack.packb(fields, default=default)
    return packed


class Assembly:
    """A binary event waiting for its attachments; refuses more than `budget` bytes in all."""

    __slots__ = ("budget", "packet", "parts")

    def __init__(self, packet: Packet, budget: int) -> None:
        self.packet = packet
        self.budget = budget
        self.parts: list[bytes] = []

    def add(self, data: bytes) -> Packet | None:
        """Take the next attachment: the whole packet once the last one is in."""
        self.budget -= len(data)
        if self.budget < 0:
            raise SocketIOError("the attachments are too large", self.packet.id, "payload_too_large")
        self.parts.append(data)
        if len(self.parts) < self.packet.attachments:
            return None
        packet = self.packet
        data_with_parts = _fill(packet.data, self.parts, packet.id, 0)
        return Packet(packet.type - 3, packet.namespace, packet.id, data_with_parts)


def _fill(value: Any, parts: list[bytes], ack_id: int | None, depth: int) -> Any:
    """`value` with every placeholder replaced by its attachment; bad placeholders refused."""
    if depth > _MAX_DEPTH:
        raise SocketIOError("the data is nested too deeply", ack_id)
    if isinstance(value, list):
        return [_fill(item, parts, ack_id, depth + 1) for item in value]
    if not isinstance(value, dict):
        return value
    if value.get("_placeholder") is True:
        num = value.get("num")
        if type(num) is not int or not 0 <= num < len(parts) or len(value) != 2:
            raise SocketIOError("a placeholder that names no attachment", ack_id)
        return parts[num]
    return {key: _fill(item, parts, ack_id, depth + 1) for key, item in value.items()}
