"""A Socket.IO client written byte by byte over a plain TCP socket: for tests that need what
no library does on purpose (vanish without a close, flood before reading, stop reading).

It speaks just enough: the WebSocket opening handshake, masked text frames out, unmasked
frames in, Engine.IO v4 pings answered, Socket.IO v5 connect, events and acks (JSON)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from typing import Any

import orjson


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._next_ack = 0

    @classmethod
    async def connect(cls, url: str, token: str, path: str = "/socket.io/") -> RawClient:
        """Open a WebSocket-first Engine.IO session and connect the Socket.IO namespace."""
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path}?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        client = cls(reader, writer)
        opening = await client.receive()
        assert opening.startswith("0"), opening
        client.send_text("40" + orjson.dumps({"token": token}).decode())
        connected = await client.receive()
        assert connected.startswith("40"), connected
        return client

    def send_text(self, text: str) -> None:
        self.writer.write(_masked_frame(0x81, text.encode()))

    def emit(self, event: str, data: Any) -> int:
        """Send an event asking for an ack; returns the ack id (no waiting)."""
        ack_id = self._next_ack
        self._next_ack += 1
        self.send_text(f"42{ack_id}" + orjson.dumps([event, data]).decode())
        return ack_id

    async def call(self, event: str, data: Any, timeout: float = 10) -> Any:
        """Send an event and wait for its ack (other packets read meanwhile are dropped)."""
        ack_id = self.emit(event, data)
        await self.writer.drain()
        prefix = f"43{ack_id}["
        while True:
            text = await asyncio.wait_for(self.receive(), timeout)
            if text.startswith(prefix):
                return orjson.loads(text[len(prefix) - 1 :])[0]

    async def receive(self) -> str:
        """The next Engine.IO text message (pings answered on the way)."""
        while True:
            first, second = await self.reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            payload = await self.reader.readexactly(length)
            opcode = first & 0x0F
            if opcode == 0x8:
                raise ConnectionError("closed by the server")
            if opcode != 0x1:
                continue
            text = payload.decode()
            if text == "2":
                self.send_text("3")
                continue
            return text

    def vanish(self) -> None:
        """Go away as a closed tab or a dropped network does: no close frame, no Socket.IO
        disconnect, the TCP connection reset."""
        sock = self.writer.get_extra_info("socket")
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


def _masked_frame(first_byte: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first_byte, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", first_byte, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first_byte, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked
