"""The workers' local IPC wire: length-prefixed msgpack frames over a Unix socket.

A frame is a 4-byte big-endian length and a msgpack array whose first element says what it is:

| kind | direction | body |
|---|---|---|
| `CALL` | worker -> supervisor | call id, operation, arguments |
| `REPLY` | either way | call id, ok, value (or `[code, message]` when not ok) |
| `PUBLICATION` | supervisor -> worker | room, seq, ts, type, encoded, priority |
| `INBOX` | supervisor -> worker | a message another worker sent to this one (cluster.py's inbox) |
| `ASK` | supervisor -> worker | call id, operation, arguments (the supervisor asks a worker) |

Pure functions over bytes and a small `asyncio.Protocol` that splits the stream into frames.
The values that cross (records, stock requests and outcomes) are plain lists here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import msgspec

from liveroom.errors import CommandError, OutcomeUnknown, Unavailable
from liveroom.record import Record
from liveroom.stock import StockOutcome, StockRequest

__all__ = [
    "ASK",
    "CALL",
    "INBOX",
    "PUBLICATION",
    "REPLY",
    "FrameProtocol",
    "error_from",
    "frame",
    "outcome_from",
    "outcome_values",
    "record_from",
    "record_values",
    "request_from",
    "request_values",
]

CALL, REPLY, PUBLICATION, INBOX, ASK = 0, 1, 2, 3, 4
MAX_FRAME = 64 * 1024 * 1024  # a frame past this is a bug: the connection is dropped

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


def frame(message: list[Any]) -> bytes:
    body = _encoder.encode(message)
    return len(body).to_bytes(4, "big") + body


class FrameProtocol(asyncio.Protocol):
    """Splits the byte stream into messages and hands each to `on_message`, in order."""

    def __init__(self, on_message: Callable[[list[Any]], None], on_lost: Callable[[], None]) -> None:
        self._on_message = on_message
        self._on_lost = on_lost
        self._buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= 4:
            size = int.from_bytes(buffer[start : start + 4], "big")
            if size > MAX_FRAME:
                assert self.transport is not None
                self.transport.abort()
                return
            end = start + 4 + size
            if len(buffer) < end:
                break
            message = _decoder.decode(memoryview(buffer)[start + 4 : end])
            start = end
            self._on_message(message)
        del buffer[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._on_lost()

    def send(self, message: list[Any]) -> bool:
        """False when the connection is gone (nothing was sent)."""
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(frame(message))
        return True


def error_from(value: Any) -> CommandError:
    code, message = value
    if code == "unavailable":
        return Unavailable(message)
    if code == "outcome_unknown":
        return OutcomeUnknown(message)
    return CommandError(message, code)


def record_values(record: Record) -> list[Any]:
    return [record.kind, record.key, record.room, dict(record.data), record.created_ms, record.position]


def record_from(values: Any) -> Record:
    kind, key, room, data, created_ms, position = values
    return Record(kind, key, room, data, created_ms, position)


def request_values(request: StockRequest) -> list[Any]:
    return [
        request.pool,
        request.user,
        request.qty,
        request.request_id,
        dict(request.data),
        request.created_ms,
    ]


def request_from(values: Any) -> StockRequest:
    pool, user, qty, request_id, data, created_ms = values
    return StockRequest(pool, user, qty, request_id, data, created_ms)


def outcome_values(outcome: StockOutcome) -> list[Any]:
    order = None if outcome.order is None else record_values(outcome.order)
    return [outcome.status, order, outcome.remaining]


def outcome_from(values: Any) -> StockOutcome:
    status, order, remaining = values
    return StockOutcome(status, None if order is None else record_from(order), remaining)
