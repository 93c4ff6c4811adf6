"""A Socket.IO client on a raw WebSocket, lean enough to drive tens of thousands of viewers.

It speaks just what a viewer needs: the Engine.IO v4 open packet, ping (`2`) answered by
pong (`3`), the Socket.IO connect with `{"token"}`, `join` and other commands with acks
(`42N[...]` out, `43N[...]` in), and `batch` events. picows parses WebSocket frames in C;
a batch is not decoded: its deliveries are counted as occurrences of `"seq":` (every item
has that key, and inside JSON strings the quotes would be escaped). Only the sampled
connections decode their batches, for per-item latency from the item's `ts`.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from .stats import Snapshot

__all__ = ["SocketIOClient", "connect_client", "socketio_url"]

Ack = Callable[[Any], None]
_BATCH = b'42["batch"'
_SEQ = b'"seq":'
PRIORITY_TYPES = frozenset({b"bench.priority", b"coupon.granted", b"sale.started", b"poll.result", b"system"})
_TYPE_TS = re.compile(rb'"type":"([^"]+)","ts":(\d+)')


def socketio_url(base: str) -> str:
    """ws://host:port/socket.io/?EIO=4&transport=websocket from http(s):// or ws(s):// base."""
    base = base.rstrip("/")
    if base.startswith("http"):
        base = "ws" + base[4:]
    return base + "/socket.io/?EIO=4&transport=websocket"


class SocketIOClient(WSListener):
    """One connection. `stats` is shared by every connection of the process."""

    def __init__(self, stats: Snapshot, token: str, sample: bool) -> None:
        super().__init__()
        self.stats = stats
        self.sample = sample
        self.transport: WSTransport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed_by_us = False
        self.counted = False  # in `stats.connected`
        self._auth = b"40" + orjson.dumps({"token": token})
        self._next_ack = 0
        self._acks: dict[int, Ack] = {}

    # -- commands -------------------------------------------------------------------------

    def emit(self, event: str, data: Any, on_ack: Ack | None = None) -> None:
        assert self.transport is not None
        if on_ack is None:
            self.transport.send(WSMsgType.TEXT, b"42" + orjson.dumps([event, data]))
            return
        ack_id = self._next_ack
        self._next_ack += 1
        self._acks[ack_id] = on_ack
        self.transport.send(WSMsgType.TEXT, b"42%d" % ack_id + orjson.dumps([event, data]))

    def call(self, event: str, data: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def settle(reply: Any) -> None:
            if not future.done():
                future.set_result(reply)

        self.emit(event, data, settle)
        return future

    def stop_reading(self) -> None:
        """Stall: the kernel buffers fill and the server sees a consumer that never reads."""
        if self.transport is not None:
            self.transport.underlying_transport.pause_reading()

    def close(self) -> None:
        self.closed_by_us = True
        if self.transport is not None:
            self.transport.disconnect(graceful=False)

    # -- picows callbacks -----------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        # A server may send its first frame in the same segment as the 101 (liveroom does):
        # picows can hand it over before on_ws_connected.
        self.transport = transport
        if frame.msg_type != WSMsgType.TEXT:
            if frame.msg_type == WSMsgType.CLOSE:
                self.stats.close_reasons[frame.get_close_message().decode(errors="replace") or "close"] += 1
            return
        data = frame.get_payload_as_bytes()
        if data.startswith(_BATCH):
            self.stats.frames += 1
            self.stats.items += data.count(_SEQ)
            if self.sample:
                self._measure(data)
        elif data == b"2":
            transport.send(WSMsgType.TEXT, b"3")
        elif data.startswith(b"43"):
            self._on_ack(data)
        elif data.startswith(b"40"):
            if not self.ready.done():
                self.ready.set_result(None)
        elif data.startswith(b"44"):
            if not self.ready.done():
                self.ready.set_exception(ConnectionRefusedError(data[2:].decode(errors="replace")))
        elif data.startswith(b"0"):
            transport.send(WSMsgType.TEXT, self._auth)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the Socket.IO connect"))
        elif not self.closed_by_us:
            self.stats.dropped += 1
        if self.counted:
            self.counted = False
            self.stats.connected -= 1
            self.stats.sampled_connections -= self.sample

    # -- inside -----------------------------------------------------------------------------

    def _on_ack(self, data: bytes) -> None:
        end = data.index(b"[")
        callback = self._acks.pop(int(data[2:end]), None)
        if callback is not None:
            reply = orjson.loads(data[end:])
            callback(reply[0] if reply else None)

    def _measure(self, data: bytes) -> None:
        # Items are encoded {"seq","type","ts",...} in that order: a regex finds each item's
        # type and ts without building the items (orjson would be slower here).
        now_ms = time.time() * 1000.0
        stats = self.stats
        normal = stats.latency
        for item_type, ts in _TYPE_TS.findall(data):
            latency = now_ms - int(ts)
            stats.sampled_items += 1
            if item_type in PRIORITY_TYPES:
                stats.priority_items += 1
                stats.priority_latency.add(latency)
            elif item_type == b"room.online" or item_type.endswith(b".count"):
                stats.counter_updates += 1
            else:
                normal.add(latency)


async def connect_client(
    url: str, stats: Snapshot, token: str, sample: bool = False, receive_buffer: int | None = None
) -> SocketIOClient:
    """Open the WebSocket and finish the Socket.IO connect; raise if refused or closed."""

    factory: Any = None
    if receive_buffer is not None:
        # A small receive window (for viewers that will stall): the server's side of the
        # connection fills within seconds instead of hiding megabytes in our kernel.

        async def factory(parsed: Any) -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (parsed.host, parsed.port))
            return sock

    _, client = await ws_connect(
        lambda: SocketIOClient(stats, token, sample),
        socketio_url(url),
        websocket_handshake_timeout=20,
        socket_factory=factory,
    )
    assert isinstance(client, SocketIOClient)
    await client.ready
    client.counted = True
    stats.connected += 1
    stats.sampled_connections += sample
    return client
