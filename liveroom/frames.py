"""Engine.IO / Socket.IO / WebSocket framing as bytes, built once and written many times."""

from __future__ import annotations

import struct

import msgpack
import orjson

__all__ = [
    "batch_message",
    "event_ack_id",
    "msgpack_batch_message",
    "plain_event",
    "socketio_event",
    "ws_binary_frame",
    "ws_close_frame",
    "ws_text_frame",
]

_BATCH_HEAD = b'42["batch",{"room":'


def batch_message(room_json: bytes, items: list[bytes], skipped: list[list[int]] | None = None) -> bytes:
    """The Engine.IO message text of a `batch` event, from already-encoded items, with the
    seq ranges the lanes left out on purpose (`skipped`, only when there are any)."""
    tail = b"]}]" if not skipped else b'],"skipped":' + orjson.dumps(skipped) + b"}]"
    return b"".join((_BATCH_HEAD, room_json, b',"items":[', b",".join(items), tail))


def socketio_event(event: str, data: object) -> bytes:
    """The Engine.IO message text of a Socket.IO event on the default namespace."""
    return b"42" + orjson.dumps([event, data])


def ws_text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (server to client) carrying `payload`."""
    return _ws_frame(0x81, payload)


def ws_binary_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket binary frame (an Engine.IO v4 binary message)."""
    return _ws_frame(0x82, payload)


def _ws_frame(first_byte: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first_byte, length)
    elif length < 65536:
        header = struct.pack("!BBH", first_byte, 126, length)
    else:
        header = struct.pack("!BBQ", first_byte, 127, length)
    return header + payload


def msgpack_batch_message(
    room_json: bytes, items: list[bytes], skipped: list[list[int]] | None = None
) -> bytes:
    """The `batch` event as a msgpack Socket.IO packet (socket.io-msgpack-parser's layout),
    from the same encoded items: decoded once here, for every msgpack member at once."""
    batch: dict[str, object] = {"room": orjson.loads(room_json), "items": [orjson.loads(i) for i in items]}
    if skipped:
        batch["skipped"] = skipped
    packed: bytes = msgpack.packb({"type": 2, "data": ["batch", batch], "nsp": "/"})
    return packed


def ws_close_frame(code: int, reason: str) -> bytes:
    """A WebSocket close frame (server to client) with a status code and a short reason."""
    payload = struct.pack("!H", code) + reason.encode()[:123]
    return struct.pack("!BB", 0x88, len(payload)) + payload


def event_ack_id(message: str) -> int | None:
    """The ack id of a Socket.IO EVENT packet (`2[/ns,]<id>[...]`), read without decoding JSON."""
    if not message.startswith("2"):
        return None
    position = 1
    if message.startswith("/", position):
        comma = message.find(",", position)
        if comma < 0:
            return None
        position = comma + 1
    end = position
    while end < len(message) and end - position < 18 and "0" <= message[end] <= "9":
        end += 1
    return int(message[position:end]) if end > position else None


def plain_event(message: str) -> tuple[int | None, str] | None:
    """(ack id, JSON array text) of an EVENT on the default namespace (`2[<id>][...]`);
    None for every other packet (binary, another namespace, an ack, a connect...)."""
    if not message.startswith("2"):
        return None
    end = 1
    while end < len(message) and end < 19 and "0" <= message[end] <= "9":
        end += 1
    if not message.startswith("[", end):
        return None
    return (int(message[1:end]) if end > 1 else None), message[end:]
