"""Engine.IO long-polling: the HTTP half of liveroom's Engine.IO (the WebSocket half is
engine_session.py, through the front door).

`GET ?EIO=4&transport=polling` opens a session (the handshake lists the `websocket`
upgrade); then the client's GETs wait for what the server has to say, and its POSTs carry
what it says, several packets joined by the record separator. Clients use this only when
WebSocket is not available, and move to WebSocket as soon as it is; liveroom's pages and
the load generator never poll. What waits for a GET is bounded like a WebSocket's buffer:
in bytes (the session's outbound limit) and in packets.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from liveroom.wire import engineio
from liveroom.wire.engineio import EngineIOError

if TYPE_CHECKING:
    from liveroom.engine_session import EngineSession
    from liveroom.sio import SocketServer

__all__ = ["MAX_PACKETS", "PollingQueue", "add_polling_route"]

MAX_PACKETS = 256  # waiting for the client's next GET
MAX_POST_PACKETS = 16  # in one POST body
MAX_BACKLOG = 64  # messages of a session still to run before its POSTs are refused


class PollingQueue:
    """The packets waiting for a long-polling client's next GET."""

    __slots__ = ("_closing", "_packets", "_size", "_waiter", "finished", "limit_bytes")

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes  # the session's, updated at sign-in
        self._packets: list[str | bytes] = []
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._closing = False
        self.finished = False  # the close packet went out with a GET

    def push(self, packet: str | bytes) -> bool:
        """Queue a packet; False (nothing queued) past the byte or packet limit."""
        if self._closing:
            return True
        if self._size > self.limit_bytes or len(self._packets) >= MAX_PACKETS:
            return False
        self._packets.append(packet)
        self._size += len(packet)
        self._wake()
        return True

    def wake_with_noop(self) -> None:
        """The client is upgrading: its pending GET returns (with a noop if nothing else)."""
        self._packets.append(engineio.NOOP)
        self._wake()

    def close(self, farewell: str | bytes | None) -> None:
        if self._closing:
            return
        if farewell is not None:
            self._packets.append(farewell)
        self._packets.append(engineio.CLOSE)
        self._closing = True
        self._wake()

    def drain(self) -> list[str | bytes]:
        packets, self._packets, self._size = self._packets, [], 0
        return packets

    async def take(self, timeout_s: float) -> list[str | bytes] | None:
        """What is queued, waiting up to `timeout_s` for something; None if a GET is already waiting."""
        if self._waiter is not None:
            return None
        if not self._packets:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._waiter), timeout_s)
            except TimeoutError:
                pass
            finally:
                self._waiter = None
        packets = self.drain()
        if self._closing and engineio.CLOSE in packets:
            self.finished = True
        return packets

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def add_polling_route(router: web.UrlDispatcher, path: str, server: SocketServer) -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await _handle(server, request)

    router.add_route("*", path, handle)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def _handle(server: SocketServer, request: web.Request) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if origin is not None and not server.allow_origin(origin, request.host):
        return _error(400, "forbidden_origin", f"origin {origin} is not allowed")
    response = await _answer(server, request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"
    return response


async def _answer(server: SocketServer, request: web.Request) -> web.StreamResponse:
    query = request.query
    if request.method == "OPTIONS":
        response = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "OPTIONS, GET, POST"
        response.headers["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", "Content-Type"
        )
        return response
    if (
        query.get("transport") == "websocket"
        and "sid" not in query
        and server.peers.full(request.remote or "")
    ):
        return _error(429, "too_many_connections", "too many connections from this address")
    if query.get("transport") != "polling" or "j" in query:
        return _error(400, "bad_request", "this endpoint serves Engine.IO v4 long-polling and WebSocket")
    sid = query.get("sid")
    if sid is None:
        if request.method != "GET" or query.get("EIO") != "4":
            return _error(400, "bad_request", "open a session with GET ?EIO=4&transport=polling")
        return _open(server, request)
    session = server.sessions.get(sid)
    if session is None or session.poll is None:
        return _error(400, "bad_request", "unknown or upgraded session")
    if request.method == "GET":
        return await _get(server, session)
    if request.method == "POST":
        return await _post(session, request)
    return _error(405, "bad_request", "GET, POST or OPTIONS")


def _open(server: SocketServer, request: web.Request) -> web.StreamResponse:
    session = server.open_session(request.remote or "")
    if session is None:
        return _error(429, "too_many_connections", "too many connections from this address")
    queue = PollingQueue(session.limit_bytes)
    session.open_polling(queue)
    return _text(server.open_packet(session.eio_sid, ["websocket"]).decode())


async def _get(server: SocketServer, session: EngineSession) -> web.StreamResponse:
    queue = session.poll
    assert queue is not None
    packets = await queue.take(server.ping_interval_s + server.ping_timeout_s)
    if packets is None:
        session.bad_input("engineio", "two GETs at once")
        session.abort("transport error")
        return _error(400, "bad_request", "a GET is already waiting for this session")
    if queue.finished:
        session.abort("transport close")
    return _text(engineio.encode_payload(packets) if packets else engineio.NOOP)


async def _post(session: EngineSession, request: web.Request) -> web.StreamResponse:
    if session.backlog() > MAX_BACKLOG:
        return _error(429, "rate_limited", "the session's messages have not been run yet")
    try:
        packets = engineio.decode_payload(await request.text(), MAX_POST_PACKETS)
    except (EngineIOError, UnicodeDecodeError) as error:
        session.bad_input("engineio", str(error))
        return _error(400, "bad_request", "not an Engine.IO payload")
    for packet in packets:
        session.on_packet(packet)
    return web.Response(text="ok", content_type="text/html")


def _text(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/plain", charset="UTF-8")
