"""A raw WebSocket / Engine.IO client over a plain socket, for probing the server as an
attacker would: frames built by hand, nothing read unless asked, and the server's memory
and CPU read from /proc."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from typing import Any

import orjson

from liveroom.wire.websocket import apply_mask


def client_frame(
    opcode: int,
    payload: bytes,
    final: bool = True,
    masked: bool = True,
    mask: bytes | None = None,
    rsv: int = 0,
) -> bytes:
    """A client's frame as a client (or a hostile one: unmasked, reserved bits) would send it."""
    first = (0x80 if final else 0) | (rsv << 4) | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not masked:
        return header + payload
    mask = os.urandom(4) if mask is None else mask
    return header + mask + apply_mask(payload, mask)


def rss_bytes(pid: int) -> int:
    """The process's resident memory, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of the process so far, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RawSocket:
    """One TCP connection to the server: a WebSocket once `open` succeeds."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, receive_buffer: int = 0) -> RawSocket:
        """`receive_buffer`: a small kernel receive buffer, so a client that does not read
        fills up fast (the kernel would otherwise take megabytes for it)."""
        sock = socket.socket()
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    async def open(self, path: str = "/socket.io/", query: str = "EIO=4&transport=websocket") -> bytes:
        """The opening handshake; returns the response head."""
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            f"GET {path}?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101"), head
        return head

    def send(self, opcode: int, payload: bytes, final: bool = True) -> None:
        self.writer.write(client_frame(opcode, payload, final))

    def send_text(self, text: str) -> None:
        self.send(0x1, text.encode())

    async def frame(self, timeout: float = 10) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload); (-1, b"") at EOF."""
        try:
            head = await asyncio.wait_for(self.reader.readexactly(2), timeout)
            length = head[1] & 0x7F
            if length == 126:
                length = int.from_bytes(await self.reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await self.reader.readexactly(8), "big")
            return head[0] & 0x0F, await asyncio.wait_for(self.reader.readexactly(length), timeout)
        except (asyncio.IncompleteReadError, ConnectionError):
            return -1, b""

    async def text(self, timeout: float = 10) -> str:
        """The next text message (pings are answered on the way)."""
        while True:
            opcode, payload = await self.frame(timeout)
            if opcode == 0x1 and payload == b"2":
                self.send_text("3")
                continue
            assert opcode == 0x1, (opcode, payload)
            return payload.decode()

    async def close_code(self, timeout: float = 10) -> int | None:
        """Read until the server's close frame: its code (None if the connection just ended)."""
        while True:
            opcode, payload = await self.frame(timeout)
            if opcode == -1:
                return None
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big") if payload else 1005

    async def signin(self, token: str, path: str = "/socket.io/") -> None:
        await self.open(path)
        assert (await self.text()).startswith("0")
        self.send_text("40" + orjson.dumps({"token": token}).decode())
        connected = await self.text()
        assert connected.startswith("40{"), connected

    async def call(self, ack_id: int, event: str, payload: Any) -> Any:
        self.send_text(f"42{ack_id}" + orjson.dumps([event, payload]).decode())
        while True:
            message = await self.text()
            if message.startswith(f"43{ack_id}["):
                return orjson.loads(message[len(f"43{ack_id}") :])[0]

    async def ended(self, timeout: float = 10) -> bool:
        """Whether the server ends the connection (reads and drops what comes until then)."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), timeout):
                pass
        except ConnectionError:
            pass
        return True

    def close(self) -> None:
        self.writer.close()
