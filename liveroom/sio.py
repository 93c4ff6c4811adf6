"""One Socket.IO endpoint (`/socket.io/` in JSON, `/socket.io-msgpack/` in msgpack): its
sessions, and the Socket.IO protocol between them and the node.

The packets are liveroom.wire.socketio's; the sessions engine_session.py's. The node sees
three things: a CONNECT with its `auth` (`on_connect`, which refuses by raising
`RefuseConnection`), commands (`command_handler(name, sid, *args) -> ack`), and the end of
a session (`on_disconnect`). Commands, the hot path, are a plain EVENT on `/` decoded
straight from the text (`frames.plain_event`); everything else goes through the packet
decoder. Every packet a client sends counts against `[limits] max_command_bytes` in
bytes, attachments included; bad packets are answered (an error ack when they carry an
ack id, a connect error for a CONNECT) and counted, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from liveroom.digits import is_digits
from liveroom.direct_engine import DirectEngine
from liveroom.engine_session import EngineSession, Reason
from liveroom.errors import CommandError
from liveroom.frames import event_ack_id, plain_event, ws_text_frame
from liveroom.handoff import new_session_id
from liveroom.ping_wheel import PingWheel
from liveroom.protocol import EncodedJson
from liveroom.renewal import REFRESH_COMMAND
from liveroom.wire import engineio
from liveroom.wire import socketio as sio
from liveroom.wire.socketio import Assembly, Packet, SocketIOError
from liveroom.wire.websocket import CloseCode

if TYPE_CHECKING:
    from liveroom.config import Config
    from liveroom.metrics import Metrics
    from liveroom.renewal import Renewal

__all__ = ["PeerLimit", "RefuseConnection", "SocketServer"]

log = logging.getLogger(__name__)

RESERVED_EVENTS = frozenset(("connect", "connect_error", "disconnect", "disconnecting", "*"))
MAX_ATTACHMENTS = 4  # binary attachments of one event
MAX_CONNECT_ATTEMPTS = 3  # refused CONNECTs before the session is closed
_NOT_CONNECTED = {"code": "unauthorized", "message": "not connected"}

CommandHandler = Callable[..., Awaitable[Any]]


class RefuseConnection(Exception):
    """Raised by `on_connect`: the client gets a connect error with the error's code.

    Its data is `{"code", "message"}`, and the same under `data`, which is where the
    JavaScript client exposes it (`err.data.code`)."""

    def __init__(self, error: CommandError) -> None:
        super().__init__(error.message)
        self.error = error


def _embed_json(value: Any) -> Any:
    if isinstance(value, EncodedJson):
        return orjson.Fragment(value.raw)  # copied into the packet as is
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def _embed_msgpack(value: Any) -> Any:
    if isinstance(value, EncodedJson):
        return orjson.loads(value.raw)
    raise TypeError(f"cannot send {type(value).__name__} as msgpack")


class PeerLimit:
    """Open sessions per peer address, shared by the endpoints; 0 means no cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.counts: dict[str, int] = {}

    def take(self, address: str) -> bool:
        count = self.counts.get(address, 0)
        if self.cap and count >= self.cap:
            return False
        self.counts[address] = count + 1
        return True

    def full(self, address: str) -> bool:
        return bool(self.cap) and self.counts.get(address, 0) >= self.cap

    def release(self, address: str) -> None:
        count = self.counts.get(address, 0) - 1
        if count > 0:
            self.counts[address] = count
        else:
            self.counts.pop(address, None)


class SocketServer:
    def __init__(
        self,
        config: Config,
        msgpack: bool,
        metrics: Metrics,
        peers: PeerLimit,
        renewal: Renewal | None = None,
    ) -> None:
        limits, delivery = config.limits, config.delivery
        self.msgpack = msgpack
        self.metrics = metrics
        self.peers = peers
        self.renewal = renewal  # tokens that expire while connected
        self.ping_interval_s = config.server.ping_interval_s
        self.ping_timeout_s = config.server.ping_timeout_s
        self.max_command_bytes = limits.max_command_bytes
        self.max_message_bytes = limits.max_message_bytes
        self.outbound_buffer_bytes = delivery.outbound_buffer_bytes
        self.unauthenticated_buffer_bytes = limits.unauthenticated_buffer_bytes
        self.send_buffer_bytes = delivery.send_buffer_bytes
        self.sessions: dict[str, EngineSession] = {}
        self._wheel: PingWheel | None = None
        self.direct = DirectEngine(self)  # WebSocket openings, from the front door
        # Set by the node and the web layer.
        self.on_connect: Callable[[str, EngineSession, Any], Awaitable[None]] | None = None
        self.on_disconnect: Callable[[str, str], Awaitable[None]] | None = None
        self.command_handler: CommandHandler | None = None
        self.on_transport: Callable[[str, asyncio.Transport | None], None] = lambda sid, transport: None
        self.allow_origin: Callable[[str, str | None], bool] = lambda origin, host: True

    @property
    def wheel(self) -> PingWheel:
        if self._wheel is None:  # made in the running loop, on first use
            shortest = min(self.ping_interval_s, self.ping_timeout_s)
            self._wheel = PingWheel(max(0.05, min(1.0, shortest / 4)))
        return self._wheel

    def message_limit(self, signed_in: bool) -> int:
        """The largest WebSocket message: before sign-in only a CONNECT is worth reading."""
        return (
            self.max_message_bytes if signed_in else min(self.max_message_bytes, 2 * self.max_command_bytes)
        )

    # -- sessions -------------------------------------------------------------------------

    def open_session(self, remote: str) -> EngineSession | None:
        if not self.peers.take(remote):
            self.count_error("too_many_connections")
            return None
        session = EngineSession(self, new_session_id(), remote)
        self.sessions[session.eio_sid] = session
        return session

    def open_packet(self, eio_sid: str, upgrades: list[str]) -> bytes:
        return engineio.open_packet(
            eio_sid, upgrades, self.ping_interval_s, self.ping_timeout_s, self.max_message_bytes
        )

    def forget(self, session: EngineSession) -> None:
        if self.sessions.pop(session.eio_sid, None) is not None:
            self.peers.release(session.remote)
            if session.sid is not None:  # its connection leaves its rooms now, before its disconnect
                self.on_transport(session.eio_sid, None)

    def transport_changed(self, session: EngineSession) -> None:
        self.on_transport(session.eio_sid, session.transport if session.upgraded else None)

    def heartbeat(self, session: EngineSession) -> None:
        if session.sid is not None and self.renewal is not None:
            self.renewal.heartbeat(session.sid)

    async def session_ended(self, session: EngineSession, reason: str) -> None:
        sid, session.sid = session.sid, None
        if sid is not None:
            if self.renewal is not None:
                self.renewal.forget(sid)
            if self.on_disconnect is not None:
                await self.on_disconnect(sid, reason)

    def close_transport(self, eio_sid: str, code: str, message: str, frames: bytes = b"") -> bool:
        """Write `frames` (one Engine.IO message), then a WebSocket close with `code` as
        the reason, and close. The client sees the transport close (not a Socket.IO
        disconnect), so the official clients reconnect by themselves and resume with `since`."""
        session = self.sessions.get(eio_sid)
        if session is None or session.closing:
            return False
        if code == "slow_consumer":
            session.abort(Reason.TRANSPORT_ERROR)  # its buffer is full: more would only wait
            return True
        status = CloseCode.GOING_AWAY if code == "server_shutdown" else CloseCode.POLICY_VIOLATION
        session.close(Reason.SERVER, status, code, frames, packet=False)
        return True

    async def shutdown(self) -> None:
        for session in list(self.sessions.values()):
            session.abort(Reason.SERVER)

    def count_error(self, code: str) -> None:
        self.metrics.errors.labels(code).inc()

    def count_bad_input(self, layer: str) -> None:
        self.metrics.bad_input.labels(layer).inc()

    # -- Socket.IO ------------------------------------------------------------------------

    async def handle_message(self, session: EngineSession, message: str | bytes) -> None:
        """One Engine.IO message of `session`, in the order it was sent."""
        if isinstance(message, bytes):
            if self.msgpack:
                await self._msgpack(session, message)
            else:
                await self._attachment(session, message)
        elif self.msgpack:
            session.bad_input("socketio", "a text message on the msgpack endpoint")
        else:
            await self._text(session, message)

    async def _text(self, session: EngineSession, text: str) -> None:
        # A client sends a packet's attachments right after it: a text packet ends them.
        session.skip_binary = 0
        if session.assembly is not None:
            packet, session.assembly = session.assembly.packet, None
            await self._refuse(session, SocketIOError("a binary event's attachments did not come", packet.id))
        limit = self.max_command_bytes
        if len(text) * 4 > limit and len(text.encode()) > limit:  # bytes, not characters
            await self._oversized(session, text)
            return
        sid = session.sid
        if sid is not None and text[:1] == "2":
            event = plain_event(text)  # the hot path: a command
            if event is not None:
                try:
                    args = orjson.loads(event[1])
                except orjson.JSONDecodeError:
                    await self._refuse(session, SocketIOError("the packet is not valid JSON", event[0]))
                    return
                await self._event(session, sid, event[0], args)
                return
        try:
            packet = sio.decode_text(text)
        except SocketIOError as error:
            await self._refuse(session, error)
            return
        await self._packet(session, packet, len(text.encode()) if packet.attachments else len(text))

    async def _msgpack(self, session: EngineSession, data: bytes) -> None:
        if len(data) > self.max_command_bytes:
            ack_id = sio.msgpack_ack_id(data)
            error = SocketIOError(f"a command may be at most {self.max_command_bytes} bytes", ack_id)
            error.code = "payload_too_large"
            await self._refuse(session, error)
            return
        try:
            packet = sio.decode_msgpack(data)
        except SocketIOError as error:
            await self._refuse(session, error)
            return
        await self._packet(session, packet, len(data))

    async def _attachment(self, session: EngineSession, data: bytes) -> None:
        if session.skip_binary:
            session.skip_binary -= 1  # an attachment of a refused event
            return
        assembly = session.assembly
        if assembly is None:
            session.bad_input("socketio", "a binary message that no event announced")
            return
        try:
            packet = assembly.add(data)
        except SocketIOError as error:
            session.assembly = None
            session.skip_binary = assembly.packet.attachments - len(assembly.parts) - 1
            await self._refuse(session, error)
            return
        if packet is not None:
            session.assembly = None
            await self._packet(session, packet, 0)

    async def _packet(self, session: EngineSession, packet: Packet, size: int) -> None:
        kind = packet.type
        if kind == sio.CONNECT:
            await self._connect(session, packet)
            return
        if kind in (sio.BINARY_EVENT, sio.BINARY_ACK) and packet.attachments:
            await self._collect(session, packet, size)
            return
        sid = session.sid
        if sid is None:
            session.bad_input("socketio", "a packet before CONNECT")
            return
        if kind in (sio.EVENT, sio.BINARY_EVENT):
            if packet.namespace != "/":
                await self._refuse(
                    session, SocketIOError(f"no namespace {packet.namespace[:64]!r}", packet.id)
                )
                return
            await self._event(session, sid, packet.id, packet.data)
        elif kind == sio.DISCONNECT:
            if packet.namespace == "/":
                await self.session_ended(session, Reason.CLIENT)
        elif kind not in (sio.ACK, sio.BINARY_ACK):  # the server never asks for acks: nothing to do
            session.bad_input("socketio", "a connect error from a client")

    async def _collect(self, session: EngineSession, packet: Packet, size: int) -> None:
        """A binary event: its attachments come next, at most MAX_ATTACHMENTS of them and,
        with the packet itself, at most `max_command_bytes`."""
        if packet.attachments > MAX_ATTACHMENTS or session.sid is None:
            session.skip_binary = packet.attachments
            why = f"at most {MAX_ATTACHMENTS} binary attachments, after CONNECT"
            await self._refuse(session, SocketIOError(why, packet.id, "payload_too_large"))
            return
        session.assembly = Assembly(packet, self.max_command_bytes - size)

    async def _event(self, session: EngineSession, sid: str, ack_id: int | None, args: Any) -> None:
        name = args[0] if isinstance(args, list) and args else None
        if not isinstance(name, str) or name in RESERVED_EVENTS:
            error = SocketIOError("an event needs a name that is not reserved by Socket.IO", ack_id)
            await self._refuse(session, error)
            return
        handler, renewal = self.command_handler, self.renewal
        reply: Any
        if renewal is not None and name == REFRESH_COMMAND:
            reply = renewal.refresh(sid, tuple(args[1:]))
            session.expires_ms = renewal.expires_ms(sid)
        elif renewal is not None and session.expires_ms is not None and renewal.past(session.expires_ms):
            self.count_error("token_expired")
            reply = renewal.refused()
        else:
            reply = _NOT_CONNECTED if handler is None else await handler(name, sid, *args[1:])
        if ack_id is not None:
            self.ack(session, ack_id, reply)

    def ack(self, session: EngineSession, ack_id: int, reply: Any) -> None:
        if self.msgpack:
            session.send_message(sio.encode_msgpack(sio.ACK, [reply], ack_id, _embed_msgpack), binary=True)
            return
        ack = b"43%d%b" % (ack_id, orjson.dumps([reply], default=_embed_json))
        if session.upgraded:
            session.write_frame(ws_text_frame(ack))
        else:
            session.send_message(ack)

    async def _oversized(self, session: EngineSession, text: str) -> None:
        why = f"a packet may be at most {self.max_command_bytes} bytes"
        error = SocketIOError(why, code="payload_too_large")
        kind, rest = text[:1], text[1:]
        if kind == "0":
            self._connect_error(session, CommandError(why, error.code), "/")
            return
        if kind in ("5", "6"):  # its attachments will follow: skip them
            dash = text.find("-", 1, 9)
            count = text[1:dash] if dash > 0 else ""
            session.skip_binary = int(count) if is_digits(count) else 0
            rest = text[dash + 1 :] if dash > 0 else rest
        error.ack_id = event_ack_id("2" + rest) if kind in ("2", "5") else None
        await self._refuse(session, error)

    async def _refuse(self, session: EngineSession, error: SocketIOError) -> None:
        """Answer a bad packet: an error ack if it asked for one, and count it."""
        self.count_error(error.code)
        if error.ack_id is None or session.sid is None:
            session.bad_input("socketio", error.message)
            return
        self.ack(
            session, error.ack_id, {"ok": False, "error": {"code": error.code, "message": error.message}}
        )

    # -- CONNECT --------------------------------------------------------------------------

    async def _connect(self, session: EngineSession, packet: Packet) -> None:
        if packet.namespace != "/":
            self._connect_error(session, CommandError("Invalid namespace", "bad_request"), packet.namespace)
            return
        if session.sid is not None:
            session.bad_input("socketio", "a second CONNECT")
            return
        session.connect_attempts += 1
        if session.connect_attempts > MAX_CONNECT_ATTEMPTS:
            session.close(Reason.SERVER, CloseCode.POLICY_VIOLATION, "too_many_attempts")
            return
        sid = secrets.token_urlsafe(15)
        if self.on_connect is None:
            return
        try:
            await self.on_connect(sid, session, packet.data)
        except RefuseConnection as refused:
            self._connect_error(session, refused.error, "/")
            return
        if session.closing:
            return
        session.signed_in(sid)
        if self.renewal is not None:
            session.expires_ms = self.renewal.expires_ms(sid)
        if self.msgpack:
            session.send_message(sio.encode_msgpack(sio.CONNECT, {"sid": sid}), binary=True)
        else:
            session.send_message(b"40" + orjson.dumps({"sid": sid}))
        self.transport_changed(session)

    def _connect_error(self, session: EngineSession, error: CommandError, namespace: str) -> None:
        data = {**error.as_error(), "data": error.as_error()}
        if self.msgpack:
            session.send_message(
                sio.encode_msgpack(sio.CONNECT_ERROR, data, namespace=namespace), binary=True
            )
            return
        prefix = b"" if namespace == "/" else namespace.encode() + b","
        session.send_message(b"44" + prefix + orjson.dumps(data))
