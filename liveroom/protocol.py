"""The wire protocol as pure functions: command payloads in, acks and items out. No I/O.

A command is one Socket.IO event with one object argument and an ack callback. Every ack
is `{"ok": true, ...}` or `{"ok": false, "error": {"code", "message"}}`. Server to client,
items travel in `batch` events: `{"room", "items": [{"seq", "type", "ts", "data"}]}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import msgspec
import orjson

from liveroom.errors import BadRequest, CommandError

__all__ = [
    "NAME_PATTERN",
    "ROOM_ID_PATTERN",
    "EncodedJson",
    "JoinPayload",
    "LeavePayload",
    "Name",
    "RequestId",
    "RoomId",
    "RoomPayload",
    "RoomRequest",
    "TimePayload",
    "assemble_item",
    "decode_payload",
    "encode_item",
    "error_ack",
    "is_name",
    "ok_ack",
]

# One rule for every name, on the wire and in HTTP paths (room ids, request ids, path
# parameters): 1-64 of A-Z a-z 0-9 _ . : -, and nothing else, the whole string. In Python
# `$` also matches before a final newline ("az1\n" passed and made a room of its own);
# `(?!\n)` rules that out and keeps the pattern valid JSON Schema (ECMA-262) for OpenAPI.
NAME_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$(?!\n)"
ROOM_ID_PATTERN = NAME_PATTERN
_NAME = re.compile(NAME_PATTERN)
Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
RoomId = Name
Seq = Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]  # exact in a JavaScript number
# A client's idempotency key: a command retried with the same one converges on one outcome.
RequestId = Name

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class RoomPayload:
    """Any command addressed to a room carries at least this."""

    room: RoomId


@dataclass(frozen=True, slots=True)
class RoomRequest:
    """A command that names only its room, with an optional `request_id` (idempotency)."""

    room: RoomId
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class JoinPayload:
    room: RoomId
    since: Seq | None = None
    # The `epoch` from an earlier join ack: a different one means `since` is from another history.
    epoch: Annotated[str, msgspec.Meta(max_length=64)] | None = None


@dataclass(frozen=True, slots=True)
class LeavePayload:
    room: RoomId


@dataclass(frozen=True, slots=True)
class TimePayload:
    pass


class EncodedJson:
    """JSON made once (an item's wire form), embedded as is by whichever serializer sends it:
    copied verbatim into JSON, decoded once into msgpack."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw


def is_name(value: str) -> bool:
    """Whether `value` is a name (see NAME_PATTERN): the check of every HTTP path parameter."""
    return _NAME.search(value) is not None


def decode_payload(payload_type: type[P], raw: object) -> P:
    """Validate a command's argument into its typed payload, or raise `BadRequest`."""
    if not isinstance(raw, dict):
        raise BadRequest(f"the command takes one JSON object, got {_json_kind(raw)}")
    try:
        return msgspec.convert(raw, payload_type, strict=True)
    except msgspec.ValidationError as exc:
        raise BadRequest(_friendly(str(exc))) from None


def ok_ack(**fields: Any) -> dict[str, Any]:
    return {"ok": True, **fields}


def error_ack(error: CommandError) -> dict[str, Any]:
    return {"ok": False, "error": error.as_error()}


def encode_item(seq: int | None, item_type: str, ts: int, data: Any) -> bytes:
    """One item as JSON bytes: encoded once, then copied into every batch that carries it."""
    return assemble_item(seq, item_type, ts, orjson.dumps(data))


def assemble_item(seq: int | None, item_type: str, ts: int, data_json: bytes) -> bytes:
    """The item's JSON around already-encoded `data`: a node that receives an item from
    another node sets its `seq` without decoding and re-encoding the data."""
    seq_json = b"null" if seq is None else str(seq).encode()
    return b"".join(
        (
            b'{"seq":',
            seq_json,
            b',"type":',
            orjson.dumps(item_type),
            b',"ts":',
            str(ts).encode(),
            b',"data":',
            data_json,
            b"}",
        )
    )


def _json_kind(value: object) -> str:
    if value is None:
        return "nothing"
    return {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def _friendly(message: str) -> str:
    # msgspec says "Expected `str`, got `int` - at `$.room`"; keep it, but name the field plainly.
    return message.replace("`$.", "`").replace("`$`", "the payload")
