"""One Engine.IO session, whatever carries it: the asyncio side of liveroom.wire.

A session opened straight on WebSocket (what the official clients do with `transports:
["websocket"]`, and the load generator) is this object as the connection's
`asyncio.Protocol` from the 101 on: frames parsed by `wire.websocket.ServerProtocol` in
`data_received`, pings from one timer wheel for all sessions (ping_wheel.py), replies
written with `transport.write`. A long-polling session (polling.py) has a
`PollingQueue` instead; when its client upgrades, the WebSocket's transport is given to
this same object, which then answers the probe and, at the client's `5`, moves over.

Every byte the session writes is counted against an outbound limit (small before sign-in,
`[delivery] outbound_buffer_bytes` after): past it the connection is aborted, never
closed gracefully, so a client that does not read cannot make the server hold more.
The session's Engine.IO messages run one after another, in the order sent, in one task
that lives while there is work; past `MAX_PENDING` the WebSocket stops being read.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Any

from liveroom.frames import ws_binary_frame, ws_text_frame
from liveroom.wire import engineio
from liveroom.wire.engineio import Beat, Heartbeat, Upgrade, UpgradeStep
from liveroom.wire.socketio import Assembly
from liveroom.wire.websocket import (
    BinaryMessage,
    CloseCode,
    CloseReceived,
    ServerProtocol,
    State,
    TextMessage,
    unframe,
)

if TYPE_CHECKING:
    from liveroom.polling import PollingQueue
    from liveroom.sio import SocketServer

__all__ = ["EngineSession", "Reason"]

log = logging.getLogger(__name__)

MAX_PENDING = 64  # messages waiting for the command loop before reading pauses
RESUME_PENDING = 16
_PING_FRAME = ws_text_frame(b"2")
_PROBE_PONG_FRAME = ws_text_frame(b"3probe")
_CLOSE_PACKET_FRAME = ws_text_frame(b"1")
_GONE = object()  # queued after the last message: the disconnect runs in order


class Reason:
    """Why a session ended (what the node's disconnect handler is told)."""

    CLIENT = "client disconnect"
    SERVER = "server disconnect"
    PING_TIMEOUT = "ping timeout"
    TRANSPORT_CLOSE = "transport close"
    TRANSPORT_ERROR = "transport error"


class EngineSession(asyncio.Protocol):
    __slots__ = (
        "_runner",
        "_ws",
        "assembly",
        "bad_input_seen",
        "close_reason",
        "closed",
        "closing",
        "connect_attempts",
        "eio_sid",
        "expires_ms",
        "heartbeat",
        "limit_bytes",
        "paused",
        "pending",
        "poll",
        "remote",
        "server",
        "sid",
        "skip_binary",
        "transport",
        "upgrade",
        "upgraded",
        "wheel_slot",
    )

    def __init__(self, server: SocketServer, eio_sid: str, remote: str) -> None:
        self.server = server
        self.eio_sid = eio_sid
        self.remote = remote  # the peer's address, for the per-address cap
        self.sid: str | None = None  # the Socket.IO session, once CONNECT was accepted
        self.transport: asyncio.Transport | None = None  # the WebSocket's, once there is one
        self.upgraded = False  # True while messages go out over the WebSocket
        self.poll: PollingQueue | None = None
        self.upgrade: Upgrade | None = None  # a polling client's WebSocket, before its `5`
        self.heartbeat = Heartbeat(server.ping_interval_s, server.ping_timeout_s)
        self.wheel_slot: int | None = None  # where the server's PingWheel keeps this session
        self.limit_bytes = server.unauthenticated_buffer_bytes
        self.closing = self.closed = self.paused = self.bad_input_seen = False
        self.close_reason: str | None = None
        self.pending: collections.deque[Any] = collections.deque()
        self._runner: asyncio.Task[None] | None = None
        self._ws: ServerProtocol | None = None
        self.assembly: Assembly | None = None  # a binary event waiting for its attachments
        self.skip_binary = 0  # attachments of a refused binary event still to come
        self.connect_attempts = 0
        self.expires_ms: float | None = None  # when the signed-in token expires (liveroom.renewal)

    # -- opening --------------------------------------------------------------------------

    def open_websocket(self, transport: asyncio.Transport, rest: bytes) -> None:
        """A session opened on WebSocket: the 101 and the open packet are written."""
        self._attach(transport)
        self.upgraded = True
        self.server.wheel.schedule(self, self.heartbeat.interval_s, self._on_timer)
        if rest:
            self.data_received(rest)

    def open_polling(self, queue: PollingQueue) -> None:
        self.poll = queue
        self.server.wheel.schedule(self, self.heartbeat.interval_s, self._on_timer)

    @property
    def polling(self) -> bool:
        """A long-polling session still open (what `Connection.live` asks of one)."""
        return self.poll is not None and not self.closing

    def can_upgrade(self) -> bool:
        return self.poll is not None and self.upgrade is None and not self.closing

    def begin_upgrade(self, transport: asyncio.Transport, rest: bytes) -> None:
        """A polling client opened its WebSocket: wait for its probe, then its `5`."""
        self._attach(transport)
        self.upgrade = Upgrade()
        if rest:
            self.data_received(rest)

    def _attach(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._ws = ServerProtocol(self.server.message_limit(self.sid is not None))
        sock = transport.get_extra_info("socket")
        if sock is not None and self.server.send_buffer_bytes > 0:
            with contextlib.suppress(OSError):  # a stalled reader may not hide megabytes there either
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.server.send_buffer_bytes)

    def signed_in(self, sid: str) -> None:
        """CONNECT was accepted: the larger limits of a known user apply from now."""
        self.sid = sid
        self.limit_bytes = self.server.outbound_buffer_bytes
        if self.poll is not None:
            self.poll.limit_bytes = self.limit_bytes
        if self._ws is not None:
            self._ws.max_message_bytes = self.server.message_limit(True)

    # -- writing: every byte counts against the limit ------------------------------------

    def write_frame(self, frame: bytes) -> bool:
        """Write WebSocket bytes; past the outbound limit the connection is aborted."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        if transport.get_write_buffer_size() > self.limit_bytes:
            self._over_limit()
            return False
        transport.write(frame)
        return True

    def send_message(self, message: bytes, binary: bool = False) -> bool:
        """One Engine.IO message (text: with its `4`; binary: as it is)."""
        if self.closing:
            return False
        if self.upgraded:
            return self.write_frame(ws_binary_frame(message) if binary else ws_text_frame(message))
        return self._push(message if binary else message.decode())

    def queue_message(self, message: bytes) -> bool:
        """The polling path of `Connection.deliver`: False if the client is too far behind."""
        if self.closing:
            return True
        return self._push(self._as_packet(message))

    def _as_packet(self, message: bytes) -> str | bytes:
        return message if self.server.msgpack else message.decode()

    def _push(self, packet: str | bytes) -> bool:
        poll = self.poll
        if poll is None or not poll.push(packet):
            if poll is not None:
                self._over_limit()
            return False
        return True

    def _over_limit(self) -> None:
        log.info("aborted %s: past its outbound limit of %d bytes", self.remote, self.limit_bytes)
        self.server.count_error("slow_consumer")
        self.abort(Reason.TRANSPORT_ERROR)

    # -- closing --------------------------------------------------------------------------

    def close(
        self,
        reason: str,
        code: int = CloseCode.NORMAL_CLOSURE,
        why: str = "",
        farewell: bytes = b"",
        packet: bool = True,
    ) -> None:
        """End the session, saying so: `farewell` (a WebSocket frame of one Engine.IO
        message), an Engine.IO close unless `packet` is false, then a WebSocket close."""
        if self.closing:
            return
        self.closing = True
        self.close_reason = reason
        transport = self.transport
        if self.upgraded and transport is not None and self._ws is not None:
            if transport.get_write_buffer_size() > self.limit_bytes:
                transport.abort()  # it would not read the goodbye either
                return
            goodbye = _CLOSE_PACKET_FRAME if packet else b""
            transport.write(farewell + goodbye + self._ws.close(code, why))
            transport.close()
            # A client that never reads would hold the bytes forever: abort after a while.
            self.server.wheel.schedule(self, self.server.ping_timeout_s, transport.abort)
            return
        if self.poll is not None:
            self.poll.close(self._as_packet(unframe(farewell)) if farewell else None)  # for the next GET
            self.server.wheel.schedule(self, self.server.ping_timeout_s, self._finish_polling)
        if transport is not None:  # a polling client's WebSocket that was probing
            transport.abort()

    def abort(self, reason: str) -> None:
        if self.closed:
            return
        self.closing = True
        self.close_reason = self.close_reason or reason
        if self.transport is not None and (self.upgraded or self.upgrade is not None):
            self.transport.abort()
        if self.poll is not None:
            self._finish_polling()

    def _finish_polling(self) -> None:
        if self.poll is not None:
            self.poll.close(None)
        self._finish(self.close_reason or Reason.TRANSPORT_CLOSE)

    def _finish(self, reason: str) -> None:
        """The session is over: forget it, and run the disconnect after its messages."""
        if self.closed:
            return
        self.closed = self.closing = True
        self.server.wheel.cancel(self)
        self.server.forget(self)
        if self.sid is not None or self._runner is not None:  # (a CONNECT may be under way)
            self.pending.append((_GONE, self.close_reason or reason))
            self._run()

    # -- asyncio.Protocol (the WebSocket) -------------------------------------------------

    def data_received(self, data: bytes) -> None:
        ws = self._ws
        if ws is None:
            return
        client_closed = False
        for event in ws.receive_data(data):
            if type(event) is TextMessage:
                if self.upgrade is not None:
                    self._probe(self.upgrade, event.text)
                else:
                    self.on_packet(event.text)
            elif type(event) is BinaryMessage:
                if self.upgrade is None:
                    self.on_packet(event.data)
            elif type(event) is CloseReceived:
                client_closed = True
                self.close_reason = self.close_reason or Reason.CLIENT
            if self.closing:
                break
        if ws.outgoing:
            self.write_frame(ws.take_outgoing())
        if ws.state is State.CLOSED and not self.closing:
            if not client_closed:
                self.bad_input("websocket", ws.close_reason)
            if self.upgrade is not None:  # a failed upgrade: the polling session goes on
                self._drop_probe(gracefully=True)
                return
            self.closing = True
            self.close_reason = self.close_reason or Reason.TRANSPORT_ERROR
            if self.transport is not None:
                self.transport.close()

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upgrade is not None or (self.poll is not None and not self.upgraded):
            self._drop_probe()  # the polling session goes on
            return
        self._finish(self.close_reason or Reason.TRANSPORT_CLOSE)

    def pause_writing(self) -> None:  # the outbound limit is checked per write
        pass

    def resume_writing(self) -> None:
        pass

    # -- the upgrade from polling ---------------------------------------------------------

    def _probe(self, upgrade: Upgrade, text: str) -> None:
        step = upgrade.on_packet(text)
        if step is UpgradeStep.ANSWER_PROBE:
            self.write_frame(_PROBE_PONG_FRAME)
            if self.poll is not None:
                self.poll.wake_with_noop()  # the pending GET returns; the client pauses polling
        elif step is UpgradeStep.COMPLETE and self.poll is not None:
            self.upgrade, self.upgraded = None, True
            poll, self.poll = self.poll, None
            for packet in poll.drain():  # what the last GET did not take goes out here
                if isinstance(packet, bytes):
                    self.write_frame(ws_binary_frame(packet))
                else:
                    self.write_frame(ws_text_frame(packet.encode()))
            self.server.transport_changed(self)
        else:
            self.bad_input("engineio", "an upgrade that did not follow the probe")
            self._drop_probe()

    def _drop_probe(self, gracefully: bool = False) -> None:
        transport, self.transport, self._ws, self.upgrade = self.transport, None, None, None
        if transport is not None:
            if gracefully:
                transport.close()  # after the close frame just written
            else:
                transport.abort()

    # -- Engine.IO packets, from either transport -----------------------------------------

    def on_packet(self, packet: str | bytes) -> None:
        if self.closing:
            return
        if type(packet) is bytes:
            self._enqueue(packet)  # an Engine.IO v4 binary message (msgpack, attachments)
            return
        assert isinstance(packet, str)
        kind = packet[:1]
        if kind == engineio.MESSAGE:
            self._enqueue(packet[1:])
        elif kind == engineio.PONG:
            self.heartbeat.pong()
        elif kind == engineio.CLOSE:
            self.close_reason = Reason.CLIENT
            if self.upgraded and self.transport is not None:
                self.transport.close()
            else:
                self.abort(Reason.CLIENT)
        elif kind == engineio.PING and len(packet) <= 64:
            # Clients ping only to probe an upgrade; a short one is answered, the reply counted.
            self.send_message(b"3" + packet[1:].encode())
        elif kind not in (engineio.UPGRADE, engineio.NOOP):
            self.bad_input("engineio", "a packet that is not Engine.IO")

    def bad_input(self, layer: str, what: str) -> None:
        """Logged once per session (a flood of garbage is one line), always counted."""
        self.server.count_bad_input(layer)
        if not self.bad_input_seen:
            self.bad_input_seen = True
            log.info("bad %s input from %s: %s", layer, self.remote, what)

    # -- the heartbeat: one wheel alternates each session's ping and its deadline ----------

    def _on_timer(self) -> None:
        if self.closing:
            return
        beat, delay = self.heartbeat.on_timer()
        if beat is Beat.PING:
            if self.sid is None:
                # No Socket.IO CONNECT in a whole ping interval: a half-done handshake
                # holds nothing for long.
                self.close(Reason.SERVER, CloseCode.GOING_AWAY, "connect_timeout")
                return
            self.server.heartbeat(self)
            if self.closing:
                return
            if not (self.write_frame(_PING_FRAME) if self.upgraded else self._push(engineio.PING)):
                return
        elif beat is Beat.TIMEOUT:
            self.abort(Reason.PING_TIMEOUT)
            return
        self.server.wheel.schedule(self, delay, self._on_timer)

    # -- the message loop -----------------------------------------------------------------

    def _enqueue(self, message: str | bytes) -> None:
        self.pending.append(message)
        if len(self.pending) > MAX_PENDING and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._run()

    def _run(self) -> None:
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        server = self.server
        pending = self.pending
        try:
            while pending:
                message = pending.popleft()
                if self.paused and len(pending) <= RESUME_PENDING and not self.closing:
                    self.paused = False
                    if self.transport is not None:
                        self.transport.resume_reading()
                try:
                    if isinstance(message, tuple):  # (_GONE, reason): the session ended
                        await server.session_ended(self, message[1])
                    elif not self.closing:
                        await server.handle_message(self, message)
                except Exception:
                    log.exception("a message from %s failed", self.remote)
        finally:
            self._runner = None

    def backlog(self) -> int:
        return len(self.pending)
