"""The server side of an RTMP publishing connection, as a state machine with no I/O.

`receive(bytes)` returns events (`PublishRequest`, `MediaData`, `Unpublished`);
`data_to_send()` returns what must be written back. The adapter (rtmp_server.py) decides
whether a publish is allowed and calls `accept_publish()` or `reject()`.

What an encoder (OBS, FFmpeg, a phone app, a hardware box) does, in order:
handshake (C0 C1 -> S0 S1 S2 -> C2; the plain handshake, which they all accept),
`connect` (app, tcUrl) -> window/bandwidth/chunk size and `_result`, `releaseStream` /
`FCPublish` (answered, ignored), `createStream` -> `_result` with stream id 1,
`publish(name)` -> `onStatus NetStream.Publish.Start` once accepted, then audio (8) and
video (9) messages whose bodies are FLV tag bodies (rtmp_flv.py), and `deleteStream` /
`FCUnpublish` at the end. Media sent before the publish was accepted is dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from .rtmp_amf import AmfError, decode_all, encode
from .rtmp_chunks import (
    ACKNOWLEDGEMENT,
    AUDIO,
    COMMAND_AMF0,
    COMMAND_AMF3,
    SET_CHUNK_SIZE,
    SET_PEER_BANDWIDTH,
    USER_CONTROL,
    VIDEO,
    WINDOW_ACK_SIZE,
    ChunkError,
    ChunkReader,
    Message,
    encode_message,
)

__all__ = [
    "IngestTarget",
    "MediaData",
    "ProtocolError",
    "PublishRequest",
    "RtmpServerProtocol",
    "Unpublished",
    "ingest_target",
]

HANDSHAKE_SIZE = 1536
RTMP_VERSION = 3
OUT_CHUNK_SIZE = 4096
WINDOW = 2_500_000
CONTROL_CSID, COMMAND_CSID, STATUS_CSID = 2, 3, 5
STREAM_ID = 1
PING_REQUEST, PING_RESPONSE = 6, 7
APP = "live"


class ProtocolError(ValueError):
    """The peer broke RTMP (bad handshake, chunk stream, AMF or command order)."""


@dataclass(frozen=True, slots=True)
class PublishRequest:
    app: str
    tc_url: str
    name: str  # the stream name (key) the encoder publishes


@dataclass(frozen=True, slots=True)
class MediaData:
    kind: str  # "audio" | "video"
    timestamp: int  # milliseconds (decode time)
    payload: bytes  # an FLV tag body


@dataclass(frozen=True, slots=True)
class Unpublished:
    pass


Event = PublishRequest | MediaData | Unpublished


@dataclass(frozen=True, slots=True)
class IngestTarget:
    """Where an encoder publishes: `rtmp://HOST:PORT/live/{room}` and its key or query."""

    room: str
    token: str | None
    backup: bool  # `?path=backup`: the host's second path
    params: dict[str, str] = field(default_factory=dict, compare=False)  # every query parameter


def ingest_target(app: str, name: str) -> IngestTarget:
    """Read the room and the token from the app and stream name, in the shapes encoders use:
    app `live`, name `{room}?token=T` or `{room}/T` (FFmpeg with one URL); app
    `live/{room}`, name `T` (OBS: server `rtmp://HOST:PORT/live/{room}`, stream key `T`).
    Query parameters may sit on either part."""
    parts: list[str] = []
    params: dict[str, str] = {}
    for piece in (app, name):
        path, _, query = piece.partition("?")
        parts += [part for part in path.split("/") if part]
        params.update(parse_qsl(query))
    if len(parts) not in (2, 3) or parts[0] != APP:
        raise ProtocolError(f"publish to rtmp://HOST:PORT/{APP}/<room> (got app {app!r}, name {name!r})")
    token = parts[2] if len(parts) == 3 else params.get("token")
    return IngestTarget(parts[1], token or None, params.get("path") == "backup", params)


class RtmpServerProtocol:
    def __init__(self, max_message_bytes: int, random: Callable[[int], bytes] = os.urandom) -> None:
        self.state = "handshake"  # -> "c2" -> "connected" -> "asked" -> "publishing" | "closed"
        self.app = ""
        self.tc_url = ""
        self._random = random
        self._handshake = bytearray()
        self._reader = ChunkReader(max_message_bytes)
        self._out: list[bytes] = []
        self._out_chunk_size = 128
        self._ack_window = 0
        self._acked = 0

    def data_to_send(self) -> bytes:
        data, self._out = b"".join(self._out), []
        return data

    def receive(self, data: bytes) -> list[Event]:
        try:
            if self.state in ("handshake", "c2"):
                data = self._shake(data)
            if self.state in ("handshake", "c2", "closed") or not data:
                return []
            messages = self._reader.feed(data)
            self._acknowledge()
            events: list[Event] = []
            for message in messages:
                event = self._message(message)
                if event is not None:
                    events.append(event)
            return events
        except (ChunkError, AmfError) as exc:
            self.state = "closed"
            raise ProtocolError(str(exc)) from None

    def accept_publish(self) -> None:
        assert self.state == "asked"
        self.state = "publishing"
        stream_begin = (0).to_bytes(2, "big") + STREAM_ID.to_bytes(4, "big")
        self._send_control(USER_CONTROL, stream_begin)
        self._status("status", "NetStream.Publish.Start", "publishing")

    def reject(self, code: str, description: str) -> None:
        """Tell the encoder why (`NetStream.Publish.BadName`, ...); the adapter then closes."""
        self._status("error", code, description)
        self.state = "closed"

    # -- handshake --------------------------------------------------------------------------

    def _shake(self, data: bytes) -> bytes:
        self._handshake += data
        if self.state == "handshake":
            if len(self._handshake) < 1 + HANDSHAKE_SIZE:
                return b""
            if self._handshake[0] != RTMP_VERSION:
                raise ProtocolError(f"RTMP version {self._handshake[0]} (only plain RTMP, 3, is served)")
            c1 = bytes(self._handshake[1 : 1 + HANDSHAKE_SIZE])
            s1 = bytes(8) + self._random(HANDSHAKE_SIZE - 8)
            self._out.append(bytes([RTMP_VERSION]) + s1 + c1)  # S0 S1 S2 (S2 echoes C1)
            del self._handshake[: 1 + HANDSHAKE_SIZE]
            self.state = "c2"
        if len(self._handshake) < HANDSHAKE_SIZE:
            return b""
        rest = bytes(self._handshake[HANDSHAKE_SIZE:])
        self._handshake.clear()
        self.state = "connected"
        return rest

    # -- messages ---------------------------------------------------------------------------

    def _message(self, message: Message) -> Event | None:
        kind = message.type_id
        if kind in (AUDIO, VIDEO):
            if self.state != "publishing":
                return None
            return MediaData("audio" if kind == AUDIO else "video", message.timestamp, message.payload)
        if kind == WINDOW_ACK_SIZE and len(message.payload) >= 4:
            self._ack_window = int.from_bytes(message.payload[:4], "big")
        elif kind == USER_CONTROL and message.payload[:2] == PING_REQUEST.to_bytes(2, "big"):
            self._send_control(USER_CONTROL, PING_RESPONSE.to_bytes(2, "big") + message.payload[2:6])
        elif kind in (COMMAND_AMF0, COMMAND_AMF3):
            payload = message.payload[1:] if kind == COMMAND_AMF3 else message.payload
            return self._command(decode_all(payload))
        return None

    def _command(self, values: list[object]) -> Event | None:
        if not values or not isinstance(values[0], str):
            raise ProtocolError("a command without a name")
        name = values[0]
        txn = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
        if name == "connect":
            self._connect(txn, values[2] if len(values) > 2 else None)
            return None
        if not self.app:
            raise ProtocolError(f"{name!r} before connect")
        if name == "createStream":
            self._result(txn, None, float(STREAM_ID))
        elif name == "publish":
            if self.state != "connected":
                raise ProtocolError("a second publish on one connection")
            stream = values[3] if len(values) > 3 else None
            if not isinstance(stream, str):
                raise ProtocolError("publish without a stream name")
            self.state = "asked"
            return PublishRequest(self.app, self.tc_url, stream)
        elif name in ("deleteStream", "closeStream", "FCUnpublish"):
            return Unpublished() if self.state == "publishing" else None
        elif txn:
            self._result(txn, None)  # releaseStream, FCPublish, _checkbw...: nothing to do
        return None

    def _connect(self, txn: float, command: object) -> None:
        if self.state != "connected" or self.app:
            raise ProtocolError("connect twice")
        if not isinstance(command, dict) or not isinstance(command.get("app"), str):
            raise ProtocolError("connect without an app")
        self.app, self.tc_url = command["app"], str(command.get("tcUrl") or "")
        self._send_control(WINDOW_ACK_SIZE, WINDOW.to_bytes(4, "big"))
        self._send_control(SET_PEER_BANDWIDTH, WINDOW.to_bytes(4, "big") + b"\x02")
        self._send_control(SET_CHUNK_SIZE, OUT_CHUNK_SIZE.to_bytes(4, "big"))
        self._out_chunk_size = OUT_CHUNK_SIZE
        properties = {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0}
        info = {
            "level": "status",
            "code": "NetConnection.Connect.Success",
            "description": "Connection succeeded.",
            "objectEncoding": 0.0,
        }
        self._result(txn, properties, info)

    def _acknowledge(self) -> None:
        received = self._reader.bytes_received
        if self._ack_window and received - self._acked >= self._ack_window:
            self._acked = received
            self._send_control(ACKNOWLEDGEMENT, (received & 0xFFFFFFFF).to_bytes(4, "big"))

    def _result(self, txn: float, *values: object) -> None:
        self._send(Message(COMMAND_AMF0, 0, 0, encode("_result", txn, *values)), COMMAND_CSID)

    def _status(self, level: str, code: str, description: str) -> None:
        info = {"level": level, "code": code, "description": description}
        self._send(Message(COMMAND_AMF0, STREAM_ID, 0, encode("onStatus", 0.0, None, info)), STATUS_CSID)

    def _send_control(self, kind: int, payload: bytes) -> None:
        self._send(Message(kind, 0, 0, payload), CONTROL_CSID)

    def _send(self, message: Message, csid: int) -> None:
        self._out.append(encode_message(message, csid, self._out_chunk_size))
