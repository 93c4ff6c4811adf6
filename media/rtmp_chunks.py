"""The RTMP chunk stream: bytes in, whole messages out (and messages to bytes): no I/O.

RTMP cuts every message (a command, an audio or a video tag) into chunks of at most the
sender's chunk size, interleaved across chunk streams, each with a compressed header
that leans on the previous one of its stream (types 0 to 3, extended timestamps past
0xFFFFFF). `ChunkReader.feed` takes whatever the socket gave and returns the messages it
completed; a half chunk waits for more bytes. Set Chunk Size and Abort act here, where
they change the parsing. Anything that does not follow the spec, or exceeds the limits
(`max_message_bytes`, `MAX_CHUNK_STREAMS` open at once), is a `ChunkError`: the caller
closes that connection.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ChunkError", "ChunkReader", "Message", "encode_message"]

SET_CHUNK_SIZE, ABORT, ACKNOWLEDGEMENT, USER_CONTROL, WINDOW_ACK_SIZE, SET_PEER_BANDWIDTH = 1, 2, 3, 4, 5, 6
AUDIO, VIDEO, DATA_AMF3, COMMAND_AMF3, DATA_AMF0, COMMAND_AMF0 = 8, 9, 15, 17, 18, 20
HEADER_SIZES = (11, 7, 3, 0)  # message header bytes for chunk types 0..3
EXTENDED = 0xFFFFFF
MAX_CHUNK_STREAMS = 64  # chunk streams a connection may use; encoders use 3-6
MAX_CHUNK_SIZE = 0x7FFFFFFF


class ChunkError(ValueError):
    """The peer broke the chunk stream (the connection must be closed)."""


@dataclass(frozen=True, slots=True)
class Message:
    type_id: int
    stream_id: int
    timestamp: int  # milliseconds, 32 bits
    payload: bytes


class _Stream:
    """What a chunk stream's next header may leave out, and the message being assembled."""

    __slots__ = ("body", "extended", "field", "length", "stream_id", "timestamp", "type_id")

    def __init__(self) -> None:
        self.timestamp = 0
        self.field = 0  # the last header's timestamp field (absolute for type 0, else a delta)
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.extended = False
        self.body: bytearray | None = None


class ChunkReader:
    def __init__(self, max_message_bytes: int) -> None:
        self.chunk_size = 128  # the spec's default until the peer sets one
        self.max_message_bytes = max_message_bytes
        self.bytes_received = 0
        self._buffer = bytearray()
        self._streams: dict[int, _Stream] = {}

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        self.bytes_received += len(data)
        messages: list[Message] = []
        start = 0
        try:
            while True:
                end, message = self._chunk(start)
                if end == start:
                    return messages
                start = end
                if message is not None and not self._control(message):
                    messages.append(message)
        finally:
            del self._buffer[:start]  # once per feed, not per chunk

    def _chunk(self, start: int) -> tuple[int, Message | None]:
        """Parse the chunk at `start`: (where it ends, the message it completed); (start,
        None) if the buffer does not hold the whole chunk yet."""
        buffer = self._buffer
        if len(buffer) <= start:
            return start, None
        kind, csid = buffer[start] >> 6, buffer[start] & 0x3F
        at = start + 1
        if csid < 2:
            at = start + 2 + csid
            if len(buffer) < at:
                return start, None
            csid = 64 + buffer[start + 1] + (buffer[start + 2] << 8 if csid == 1 else 0)
        stream = self._streams.get(csid)
        if stream is None:
            if kind != 0:
                raise ChunkError(f"chunk stream {csid} continued before its first full header")
            if len(self._streams) >= MAX_CHUNK_STREAMS:
                raise ChunkError("too many chunk streams")
            stream = _Stream()
        size = HEADER_SIZES[kind]
        if len(buffer) < at + size:
            return start, None
        header = bytes(buffer[at : at + size])
        at += size
        extended = stream.extended if kind == 3 else header[:3] == b"\xff\xff\xff"
        if extended:
            if len(buffer) < at + 4:
                return start, None
            field = int.from_bytes(buffer[at : at + 4], "big")
            at += 4
        else:
            field = int.from_bytes(header[:3], "big") if kind < 3 else stream.field
        length = int.from_bytes(header[3:6], "big") if kind < 2 else stream.length
        starts = stream.body is None
        if not starts and kind != 3:
            raise ChunkError(f"chunk stream {csid}: a new header in the middle of a message")
        remaining = length - (0 if starts else len(stream.body or b""))
        piece = min(self.chunk_size, remaining)
        if len(buffer) < at + piece:
            return start, None
        if starts:
            self._start(stream, kind, header, field, extended, length)
        self._streams[csid] = stream
        assert stream.body is not None
        stream.body += buffer[at : at + piece]
        at += piece
        if len(stream.body) < stream.length:
            return at, None
        message = Message(stream.type_id, stream.stream_id, stream.timestamp, bytes(stream.body))
        stream.body = None
        return at, message

    def _start(
        self, stream: _Stream, kind: int, header: bytes, field: int, extended: bool, length: int
    ) -> None:
        if length > self.max_message_bytes:
            raise ChunkError(f"a message of {length} bytes (the limit is {self.max_message_bytes})")
        if kind < 2:
            stream.type_id = header[6]
        if kind == 0:
            stream.stream_id = int.from_bytes(header[7:11], "little")
            stream.timestamp = field
        else:
            stream.timestamp = (stream.timestamp + field) & 0xFFFFFFFF
        stream.field, stream.extended, stream.length = field, extended, length
        stream.body = bytearray()

    def _control(self, message: Message) -> bool:
        """Set Chunk Size and Abort change the parsing: handled here (True), not passed on."""
        if message.type_id == SET_CHUNK_SIZE:
            if len(message.payload) < 4:
                raise ChunkError("Set Chunk Size without a size")
            size = int.from_bytes(message.payload[:4], "big") & MAX_CHUNK_SIZE
            if size < 1:
                raise ChunkError("Set Chunk Size of 0")
            self.chunk_size = size
            return True
        if message.type_id == ABORT:
            if len(message.payload) >= 4:
                stream = self._streams.get(int.from_bytes(message.payload[:4], "big"))
                if stream is not None:
                    stream.body = None
            return True
        return False


def encode_message(message: Message, csid: int, chunk_size: int) -> bytes:
    """A message as chunks: a type 0 header, then type 3 continuations (csid 2..63)."""
    timestamp = message.timestamp & 0xFFFFFFFF
    extended = timestamp >= EXTENDED
    field = (EXTENDED if extended else timestamp).to_bytes(3, "big")
    tail = timestamp.to_bytes(4, "big") if extended else b""
    header = (
        bytes([csid])
        + field
        + len(message.payload).to_bytes(3, "big")
        + bytes([message.type_id])
        + message.stream_id.to_bytes(4, "little")
        + tail
    )
    parts = [header]
    payload = message.payload
    for start in range(0, max(len(payload), 1), chunk_size):
        if start:
            parts.append(bytes([0xC0 | csid]) + tail)
        parts.append(payload[start : start + chunk_size])
    return b"".join(parts)
