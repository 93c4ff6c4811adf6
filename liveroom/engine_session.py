"""Engine.IO v4 over a WebSocket, served without a task, queue or timer task per connection.

python-engineio runs every WebSocket with a reader task, a writer task and its queue, a
ping task and a `wait_for` per message, and aiohttp adds a request task that lives as
long as the socket: about 32 KB and 18 µs of CPU a second per idle viewer, and most of a
millisecond per connect. Here a connection that opens straight on WebSocket (what the
official clients do with `transports: ["websocket"]`, and what the load generator does)
is an `asyncio.Protocol` of its own from the 101 on: frames are parsed in
`data_received`, pings come from one timer wheel for all connections (ping_wheel.py), the
opening is taken by `DirectEngine` (direct_engine.py), and the bytes go
out through `transport.write`. python-socketio still speaks Socket.IO: every Engine.IO
message is handed to `SocketServer._handle_eio_message`, and the session stands in for
python-engineio's socket object (`send`, `close`, `upgraded`...) wherever python-socketio
or python-engineio look one up.

Commands of one connection run one after another, in the order sent, in one task that
lives while there is work (none while the viewer is idle); past `MAX_PENDING` waiting
messages the connection stops being read until they are done, so a client flooding
commands slows itself, not the room.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, Any

from liveroom.frames import ws_binary_frame, ws_close_frame, ws_text_frame
from liveroom.wire.websocket import BinaryMessage, CloseReceived, ServerProtocol, State, TextMessage

if TYPE_CHECKING:
    from liveroom.direct_engine import DirectEngine

__all__ = ["EngineSession"]

log = logging.getLogger(__name__)

MAX_PENDING = 64  # messages waiting for the command loop before reading pauses
RESUME_PENDING = 16
_PING_FRAME = ws_text_frame(b"2")
_CLOSE_PACKET_FRAME = ws_text_frame(b"1")
_NORMAL_CLOSURE, _GOING_AWAY = 1000, 1001
_GONE = object()  # queued after the last message: run the disconnect in order


class EngineSession(asyncio.Protocol):
    """One Engine.IO connection over WebSocket; python-engineio's socket, as far as it looks."""

    # What python-socketio and python-engineio read of a socket.
    upgraded = True
    connected = True
    upgrading = False

    __slots__ = (
        "_reader",
        "_runner",
        "_session",
        "awaiting_pong",
        "close_reason",
        "closed",
        "closing",
        "engine",
        "paused",
        "pending",
        "sid",
        "transport",
        "wheel_slot",
    )

    def __init__(self, engine: DirectEngine, sid: str, transport: asyncio.Transport) -> None:
        self.engine = engine
        self.sid = sid
        self.transport = transport
        self.closed = False
        self.closing = False
        self.awaiting_pong = False
        self.paused = False
        self.close_reason: str | None = None
        self.pending: collections.deque[Any] = collections.deque()
        self._reader = ServerProtocol(engine.server.eio.max_http_buffer_size)
        self._runner: asyncio.Task[None] | None = None
        self.wheel_slot: int | None = None  # where the engine's PingWheel keeps this session
        self._session: dict[str, Any] | None = None

    def start(self, rest: bytes) -> None:
        self.engine.wheel.schedule(self, self.engine.ping_interval_s, self._send_ping)
        if rest:
            self.data_received(rest)

    # -- python-engineio's socket surface ---------------------------------------------

    @property
    def session(self) -> dict[str, Any]:
        if self._session is None:
            self._session = {}
        return self._session

    async def send(self, pkt: Any) -> None:
        if self.closing:
            return
        encoded = pkt.encode()
        self.transport.write(
            ws_text_frame(encoded.encode()) if isinstance(encoded, str) else ws_binary_frame(encoded)
        )

    async def close(self, wait: bool = True, abort: bool = False, reason: str | None = None) -> None:
        self.shut(reason or self.engine.server.reason.SERVER_DISCONNECT, abort=abort)

    async def check_ping_timeout(self) -> bool:
        return not self.closed

    def shut(self, reason: str, abort: bool = False, code: int = _NORMAL_CLOSURE, why: str = "") -> None:
        """Close the connection, saying why (an Engine.IO close, then a WebSocket close)."""
        if self.closing:
            return
        self.closing = True
        self.close_reason = reason
        if abort:
            self.transport.abort()
            return
        self.transport.write(_CLOSE_PACKET_FRAME + ws_close_frame(code, why))
        self.transport.close()

    # -- asyncio.Protocol -------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        for event in reader.receive_data(data):
            if self.closing:
                return
            if type(event) is TextMessage:
                self._engine_packet(event.text)
            elif type(event) is BinaryMessage:
                self._enqueue(event.data)  # an Engine.IO v4 binary message (msgpack, attachments)
            elif type(event) is CloseReceived:
                self.closing = True
                self.close_reason = self.engine.server.reason.CLIENT_DISCONNECT
        if reader.outgoing:
            self.transport.write(reader.take_outgoing())
        if reader.state is State.CLOSED and not self.transport.is_closing():
            if reader.close_code not in (1000, 1001, 1005) and self.close_reason is None:
                log.info("closed a WebSocket: %s", reader.close_reason)
                self.engine.server.on_error("bad_request")
                self.close_reason = self.engine.server.reason.TRANSPORT_ERROR
            self.closing = True
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = self.closing = True
        self.engine.wheel.cancel(self)
        self.engine.server.forget_session(self.sid)
        server = self.engine.server
        reason = self.close_reason or server.reason.TRANSPORT_CLOSE
        self.pending.append((_GONE, reason))
        self._run()

    def pause_writing(self) -> None:  # the outbound limit is checked per write (Connection.deliver)
        pass

    def resume_writing(self) -> None:
        pass

    # -- Engine.IO packets ------------------------------------------------------------

    def _engine_packet(self, text: str) -> None:
        kind = text[:1]
        if kind == "4":
            self._enqueue(text[1:])
        elif kind == "3":
            self.awaiting_pong = False
        elif kind == "2":  # a client's probe ping (only during polling upgrades, answered anyway)
            self.transport.write(ws_text_frame(b"3" + text[1:].encode()))
        elif kind == "1":
            self.shut(self.engine.server.reason.CLIENT_DISCONNECT)
        elif kind not in ("5", "6"):  # upgrade and noop mean nothing here
            # python-engineio would end the connection with a traceback; skip it instead.
            log.info("skipped a frame that is not an Engine.IO packet")
            self.engine.server.on_error("bad_request")

    # -- pings: the engine's wheel alternates a ping and its pong deadline ---------------

    def _send_ping(self) -> None:
        if self.closing:
            return
        if not self.engine.server.is_socketio_connected(self.sid):
            # Opened a WebSocket but never joined the Socket.IO namespace in a whole ping
            # interval: a half-done handshake holds no resources for long.
            self.shut(self.engine.server.reason.SERVER_DISCONNECT, code=_GOING_AWAY, why="connect_timeout")
            return
        self.awaiting_pong = True
        self.transport.write(_PING_FRAME)
        self.engine.wheel.schedule(self, self.engine.ping_timeout_s, self._pong_deadline)

    def _pong_deadline(self) -> None:
        if self.closing:
            return
        if self.awaiting_pong:
            self.shut(self.engine.server.reason.PING_TIMEOUT, abort=True)
            return
        wait = max(self.engine.ping_interval_s - self.engine.ping_timeout_s, 0.0)
        self.engine.wheel.schedule(self, wait, self._send_ping)

    # -- the command loop ---------------------------------------------------------------

    def _enqueue(self, message: str | bytes) -> None:
        self.pending.append(message)
        if len(self.pending) > MAX_PENDING and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._run()

    def _run(self) -> None:
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        server = self.engine.server
        pending = self.pending
        try:
            while pending:
                message = pending.popleft()
                if self.paused and len(pending) <= RESUME_PENDING and not self.closing:
                    self.paused = False
                    self.transport.resume_reading()
                try:
                    if isinstance(message, tuple):  # (_GONE, reason): the connection ended
                        await server._handle_eio_disconnect(self.sid, message[1])
                    else:
                        await server._handle_eio_message(self.sid, message)
                except Exception:
                    log.exception("a message from %s failed", self.sid)
        finally:
            self._runner = None
