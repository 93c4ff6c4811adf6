"""AMF0, the value encoding of RTMP commands (`connect`, `publish`, `onStatus`...): pure.

Only what encoders send and what we answer: numbers, booleans, strings (short and long),
objects, ECMA and strict arrays, null and undefined, dates (read as their number). Anything
else, or a value cut short, is an `AmfError`: the connection is closed, nothing else.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["AmfError", "decode_all", "encode"]

NUMBER, BOOLEAN, STRING, OBJECT, NULL, UNDEFINED = 0x00, 0x01, 0x02, 0x03, 0x05, 0x06
ECMA_ARRAY, OBJECT_END, STRICT_ARRAY, DATE, LONG_STRING = 0x08, 0x09, 0x0A, 0x0B, 0x0C
MAX_DEPTH = 16  # nested objects; a command never needs more


class AmfError(ValueError):
    """The bytes are not AMF0 we understand."""


def decode_all(data: bytes) -> list[Any]:
    """Every value in `data`, in order (a command: name, transaction id, object, args...)."""
    values, at = [], 0
    while at < len(data):
        value, at = _value(data, at, 0)
        values.append(value)
    return values


def encode(*values: Any) -> bytes:
    return b"".join(_encode(value) for value in values)


def _need(data: bytes, at: int, size: int) -> None:
    if at + size > len(data):
        raise AmfError("AMF0 value cut short")


def _string(data: bytes, at: int, long: bool = False) -> tuple[str, int]:
    width = 4 if long else 2
    _need(data, at, width)
    size = int.from_bytes(data[at : at + width], "big")
    at += width
    _need(data, at, size)
    return data[at : at + size].decode("utf-8", "replace"), at + size


def _value(data: bytes, at: int, depth: int) -> tuple[Any, int]:
    _need(data, at, 1)
    marker, at = data[at], at + 1
    if marker in (NUMBER, DATE):
        _need(data, at, 8 if marker == NUMBER else 10)
        return struct.unpack_from(">d", data, at)[0], at + (8 if marker == NUMBER else 10)
    if marker == BOOLEAN:
        _need(data, at, 1)
        return data[at] != 0, at + 1
    if marker in (STRING, LONG_STRING):
        return _string(data, at, marker == LONG_STRING)
    if marker in (NULL, UNDEFINED):
        return None, at
    if depth >= MAX_DEPTH:
        raise AmfError("AMF0 values nested too deep")
    if marker == OBJECT:
        return _properties(data, at, depth)
    if marker == ECMA_ARRAY:
        _need(data, at, 4)
        return _properties(data, at + 4, depth)  # the count is a hint; the end marker ends it
    if marker == STRICT_ARRAY:
        _need(data, at, 4)
        count, at = int.from_bytes(data[at : at + 4], "big"), at + 4
        items = []
        for _ in range(count):
            item, at = _value(data, at, depth + 1)
            items.append(item)
        return items, at
    raise AmfError(f"AMF0 type 0x{marker:02x} is not supported")


def _properties(data: bytes, at: int, depth: int) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    while True:
        key, at = _string(data, at)
        _need(data, at, 1)
        if key == "" and data[at] == OBJECT_END:
            return result, at + 1
        result[key], at = _value(data, at, depth + 1)


def _encode(value: Any) -> bytes:
    if value is None:
        return bytes([NULL])
    if isinstance(value, bool):
        return bytes([BOOLEAN, int(value)])
    if isinstance(value, int | float):
        return bytes([NUMBER]) + struct.pack(">d", float(value))
    if isinstance(value, str):
        raw = value.encode()
        if len(raw) > 0xFFFF:
            return bytes([LONG_STRING]) + len(raw).to_bytes(4, "big") + raw
        return bytes([STRING]) + len(raw).to_bytes(2, "big") + raw
    if isinstance(value, dict):
        body = b"".join(_key(key) + _encode(item) for key, item in value.items())
        return bytes([OBJECT]) + body + b"\x00\x00" + bytes([OBJECT_END])
    if isinstance(value, list | tuple):
        return bytes([STRICT_ARRAY]) + len(value).to_bytes(4, "big") + b"".join(map(_encode, value))
    raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def _key(key: str) -> bytes:
    raw = key.encode()
    return len(raw).to_bytes(2, "big") + raw
