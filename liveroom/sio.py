"""The Socket.IO adapter: python-socketio speaks the protocol, liveroom writes the bytes.

python-socketio keeps the handshake, namespaces, acks and client compatibility. Two things
go below it: once a connection runs over WebSocket, every Socket.IO packet for it (acks,
and the hub's pre-built batch frames) is written straight to its transport, in order,
with no per-packet queue or task; and an oversized command is answered `payload_too_large`
from its header alone, before any JSON is decoded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import socketio
from aiohttp import WSCloseCode, web
from engineio.async_drivers import aiohttp as eio_aiohttp
from socketio import packet as sio_packet

from liveroom.direct_engine import DirectEngine
from liveroom.engine_session import EngineSession
from liveroom.errors import BadRequest, CommandError, PayloadTooLarge
from liveroom.frames import event_ack_id, plain_event, ws_binary_frame, ws_close_frame, ws_text_frame
from liveroom.protocol import EncodedJson, error_ack

__all__ = ["OrjsonWire", "RefuseConnection", "SocketServer", "msgpack_packet_class"]

log = logging.getLogger(__name__)

CommandHandler = Callable[..., Awaitable[Any]]


def _embed_json(value: Any) -> Any:
    if isinstance(value, EncodedJson):
        return orjson.Fragment(value.raw)  # copied into the packet as is
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


class OrjsonWire:
    """The JSON module python-socketio encodes and decodes packets with."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj, default=_embed_json).decode()

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        return orjson.loads(text)


def msgpack_packet_class() -> type[Any]:
    """python-socketio's msgpack packets, taught to embed an item's ready-made JSON."""
    from socketio.msgpack_packet import MsgPackPacket

    def embed(value: Any) -> Any:
        if isinstance(value, EncodedJson):
            return orjson.loads(value.raw)
        raise TypeError(f"cannot send {type(value).__name__} as msgpack")

    packet_class: type[Any] = MsgPackPacket.configure(dumps_default=embed)
    return packet_class


class RefuseConnection(socketio.exceptions.ConnectionRefusedError):  # type: ignore[misc]
    """A connect error whose data is `{"code", "message"}` (and the same under `data`,
    which is where the JavaScript client exposes it: `err.data.code`)."""

    def __init__(self, error: CommandError) -> None:
        super().__init__(error.message)
        self.error_args = {**error.as_error(), "data": error.as_error()}


class SocketServer(socketio.AsyncServer):  # type: ignore[misc]
    """`socketio.AsyncServer` that writes to WebSocket transports directly."""

    def __init__(self, max_command_bytes: int, **kwargs: Any) -> None:
        super().__init__(async_mode="aiohttp", json=OrjsonWire, **kwargs)
        self.max_command_bytes = max_command_bytes
        # Engine.IO sid -> the WebSocket's transport, while the WebSocket is open.
        self.transports: dict[str, asyncio.Transport] = {}
        self.on_transport: Callable[[str, asyncio.Transport | None], None] = lambda sid, transport: None
        self.on_error: Callable[[str], None] = lambda code: None
        self.eio._async = {**self.eio._async, "websocket": _direct_websocket_class(self)}
        # WebSocket openings taken over below python-engineio (engine_session.py).
        self.direct = DirectEngine(self)
        # `handler(event, sid, *args) -> ack` for commands decoded here (see _handle_command).
        self.command_handler: CommandHandler | None = None

    def register_session(
        self, session: EngineSession, transport: asyncio.Transport, environ: dict[str, Any]
    ) -> None:
        """A direct session is open: known to python-engineio and python-socketio by its sid."""
        if not self.manager_initialized:  # what python-socketio does on an Engine.IO connect
            self.manager_initialized: bool = True
            self.manager.initialize()
        self.eio.sockets[session.sid] = session
        self.environ[session.sid] = environ
        self.transports[session.sid] = transport
        self.on_transport(session.sid, transport)

    def forget_session(self, eio_sid: str) -> None:
        self.eio.sockets.pop(eio_sid, None)
        if self.transports.pop(eio_sid, None) is not None:
            self.on_transport(eio_sid, None)

    def is_socketio_connected(self, eio_sid: str) -> bool:
        return self.manager.sid_from_eio_sid(eio_sid, "/") is not None

    async def shutdown(self) -> None:
        for session in [s for s in self.eio.sockets.values() if isinstance(s, EngineSession)]:
            session.shut(self.reason.SERVER_DISCONNECT, abort=True)
        await super().shutdown()

    def direct_transport(self, eio_sid: str) -> asyncio.Transport | None:
        transport = self.transports.get(eio_sid)
        socket = self.eio.sockets.get(eio_sid)
        if transport is None or socket is None or not socket.upgraded or transport.is_closing():
            return None
        return transport

    async def _send_packet(self, eio_sid: str, pkt: Any) -> None:
        transport = self.direct_transport(eio_sid)
        if transport is not None:
            encoded = pkt.encode()
            if isinstance(encoded, str):
                transport.write(ws_text_frame(b"4" + encoded.encode()))
                return
            if isinstance(encoded, bytes):  # a msgpack packet: one binary message
                transport.write(ws_binary_frame(encoded))
                return
        await super()._send_packet(eio_sid, pkt)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        if isinstance(data, str) and eio_sid not in self._binary_packet:
            if len(data) > self.max_command_bytes:
                await self._refuse_oversized(eio_sid, data)
                return
            if self.command_handler is not None and await self._handle_command(eio_sid, data):
                return
        try:
            await super()._handle_eio_message(eio_sid, data)
        except ValueError:  # not JSON (NaN, Infinity, truncated...) or not a Socket.IO packet
            ack_id = event_ack_id(data) if isinstance(data, str) else None
            if ack_id is not None:
                await self._send_error_ack(eio_sid, ack_id, BadRequest("the packet is not valid JSON"))
            self.on_error("bad_request")

    async def _handle_command(self, eio_sid: str, message: str) -> bool:
        """A command (a plain EVENT on `/`, over WebSocket) decoded and acknowledged here.

        Commands are the other hot path (a flash-sale storm is thousands a second): this
        takes them without python-socketio's packet objects, binary scan and handler
        lookup, and writes the ack straight to the transport. False leaves the message
        to python-socketio: binary packets, other namespaces, invalid JSON, reserved
        names, polling transports, anything unusual.
        """
        event = plain_event(message)
        transport = self.direct_transport(eio_sid)
        if event is None or transport is None or self.command_handler is None:
            return False
        sid = self.manager.sid_from_eio_sid(eio_sid, "/")
        if sid is None or not self.manager.is_connected(sid, "/"):
            return False
        ack_id, body = event
        try:
            args = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        name = args[0] if args else None
        if not isinstance(name, str) or name in self.reserved_events or name == "*":
            return False
        reply = await self.command_handler(name, sid, *args[1:])
        if ack_id is not None and not transport.is_closing():
            ack = orjson.dumps([reply], default=_embed_json)
            transport.write(ws_text_frame(b"43%d%b" % (ack_id, ack)))
        return True

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: int | None, data: Any) -> None:
        # python-socketio would index data[0] blindly, and route reserved names ("connect",
        # "disconnect", ...) to its own handlers without an ack: answer those here instead.
        if (
            not isinstance(data, list)
            or not data
            or not isinstance(data[0], str)
            or data[0] in self.reserved_events
            or data[0] == "*"  # the catch-all's own name would reach it with the wrong arguments
        ):
            if id is not None:
                error = BadRequest("an event needs a name that is not reserved by Socket.IO")
                await self._send_error_ack(eio_sid, id, error)
            self.on_error("bad_request")
            return
        await super()._handle_event(eio_sid, namespace, id, data)

    async def _refuse_oversized(self, eio_sid: str, data: str) -> None:
        ack_id = event_ack_id(data)
        if ack_id is None:
            log.info("dropped an oversized packet (%d bytes) without an ack id", len(data))
            return
        error = PayloadTooLarge(f"a command may be at most {self.max_command_bytes} bytes")
        await self._send_error_ack(eio_sid, ack_id, error)
        self.on_error(error.code)

    async def _send_error_ack(self, eio_sid: str, ack_id: int, error: CommandError) -> None:
        ack = self.packet_class(sio_packet.ACK, namespace="/", id=ack_id, data=[error_ack(error)])
        await self._send_packet(eio_sid, ack)

    def close_transport(self, eio_sid: str, code: str, message: str, frames: bytes = b"") -> bool:
        """Write `frames`, then a WebSocket close with `code` as the reason, and close.

        The client sees the transport close (not a Socket.IO disconnect), so the official
        clients reconnect by themselves and can resume with `since`.
        """
        transport = self.transports.get(eio_sid)
        if transport is None or transport.is_closing():
            return False
        status = WSCloseCode.GOING_AWAY if code == "server_shutdown" else WSCloseCode.POLICY_VIOLATION
        if code == "slow_consumer":
            transport.abort()  # its buffer is full: more bytes would only wait behind the rest
        else:
            transport.write(frames + ws_close_frame(status, code))
            transport.close()
        return True


def _direct_websocket_class(server: SocketServer) -> type[Any]:
    class DirectWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
        """Engine.IO's aiohttp WebSocket, made known to the server by Engine.IO sid."""

        async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
            request: web.Request = environ["aiohttp.request"]
            # Batches are written pre-framed and uncompressed; a deflate context per
            # connection would cost more CPU than the bytes it saves on a LAN or CDN hop.
            self._sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
            await self._sock.prepare(request)
            self.environ = environ
            eio_sid: str = self.handler.__self__.sid
            transport = request.transport
            if transport is not None:
                server.transports[eio_sid] = transport
                server.on_transport(eio_sid, transport)
            try:
                await self.handler(self)
            finally:
                server.transports.pop(eio_sid, None)
                server.on_transport(eio_sid, None)
            return self._sock

        async def wait(self) -> str | bytes:
            # Engine.IO ends the whole connection, with a traceback, on a text frame that is
            # not an Engine.IO packet; a client sending garbage gets it skipped instead.
            while True:
                data: str | bytes = await super().wait()
                if isinstance(data, bytes) or (data and data[0] in "0123456"):
                    return data
                log.info("skipped a frame that is not an Engine.IO packet")
                server.on_error("bad_request")

    return DirectWebSocket
