"""The listening socket: Engine.IO WebSocket openings go to liveroom, the rest to aiohttp.

Every accepted connection is a `FrontDoor` for as long as it speaks HTTP. It reads each
request head whole before anyone sees it, under `[server] request_head_timeout_s` from
the head's first byte (the first head: from the connection's start), whatever the path:
aiohttp has no head timeout of its own, so a head dribbled a byte a second would hold a
connection for as long as the client liked. A head that opens an Engine.IO WebSocket
(`GET /socket.io/?EIO=4&transport=websocket`, new or the upgrade of a polling session)
is taken by that endpoint's `DirectEngine` (direct_engine.py), even on a keep-alive
connection that served other requests first; every other head, and its body (counted
by `Content-Length`), goes to aiohttp's request handler unchanged. A chunked body or a
protocol upgrade ends the tracking: the rest of that connection is aiohttp's alone.

aiohttp logs a malformed request (`BadHttpMessage`, `LineTooLong`...) with a traceback at
ERROR; `QuietHttpLog` makes it one WARNING line and a count in `/metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from liveroom.digits import is_digits
from liveroom.direct_engine import DirectEngine
from liveroom.handoff import Handoff
from liveroom.websocket import RequestHead, parse_request_head

Route = Callable[[RequestHead, bytes, asyncio.BaseTransport], bool]

__all__ = ["FrontDoor", "FrontDoorSite", "QuietHttpLog", "run_app"]

MAX_HEAD_BYTES = 16_384  # a longer head goes to aiohttp as it is, which answers 431 / 400
_HEAD, _BODY, _PASS = 0, 1, 2


class FrontDoor(asyncio.Protocol):
    __slots__ = (
        "_body_left",
        "_buffer",
        "_engines",
        "_head_timeout_s",
        "_http",
        "_make_http",
        "_route",
        "_state",
        "_timer",
        "_transport",
    )

    def __init__(
        self,
        make_http: Callable[[], asyncio.Protocol],
        engines: Mapping[str, DirectEngine],
        head_timeout_s: float,
        route: Route | None = None,
    ) -> None:
        self._make_http = make_http
        self._route = route  # workers: a request for another worker's session goes there
        self._engines = engines
        self._head_timeout_s = head_timeout_s
        self._http: asyncio.Protocol | None = None  # aiohttp's handler, from the first HTTP request
        self._buffer = b""
        self._state = _HEAD
        self._body_left = 0
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._arm()  # a connection that never sends a whole head (slowloris) is closed

    def data_received(self, data: bytes) -> None:
        while data:
            if self._state == _PASS:
                self._forward(data)
                return
            if self._state == _BODY:
                taken = data[: self._body_left]
                self._body_left -= len(taken)
                if not self._body_left:
                    self._state = _HEAD
                self._forward(taken)
                data = data[len(taken) :]
                continue
            data = self._head_bytes(data)

    def _head_bytes(self, data: bytes) -> bytes:
        """Collect a head; once whole, route it. Returns what follows it."""
        if self._timer is None:
            self._arm()
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                self._disarm()
                self._state = _PASS
                self._forward(self._take(len(self._buffer)))
            return b""
        self._disarm()
        raw = self._take(end + 4)
        rest, self._buffer = self._buffer, b""
        head = parse_request_head(raw)
        engine = None if head is None else self._engines.get(head.path)
        if engine is not None and head is not None and self._route is not None:
            assert self._transport is not None
            if self._route(head, raw + rest, self._transport):
                return b""  # the connection is another worker's now
        if engine is not None and head is not None and self._open_websocket(engine, head, rest):
            return b""
        self._state, self._body_left = _after(head)
        self._forward(raw)
        return rest

    def _open_websocket(self, engine: DirectEngine, head: RequestHead, rest: bytes) -> bool:
        transport = self._transport
        assert transport is not None
        return engine.accept(transport, head, rest, before=self._release_http)

    def _release_http(self) -> None:
        """The connection leaves aiohttp (a WebSocket opening after keep-alive requests):
        aiohttp forgets it without closing it."""
        http, self._http = self._http, None
        if http is not None:
            cast(Any, http).transport = None  # what aiohttp's handler would close
            http.connection_lost(None)

    def _take(self, size: int) -> bytes:
        taken, self._buffer = self._buffer[:size], self._buffer[size:]
        return taken

    def _forward(self, data: bytes) -> None:
        if self._http is None:
            transport = self._transport
            assert transport is not None
            self._http = self._make_http()
            self._http.connection_made(transport)
        self._http.data_received(data)

    def eof_received(self) -> bool | None:
        if self._http is not None:
            return self._http.eof_received()
        return None  # closed before a request: nothing to answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._http is not None:
            self._http.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._http is not None:
            self._http.pause_writing()

    def resume_writing(self) -> None:
        if self._http is not None:
            self._http.resume_writing()

    def _arm(self) -> None:
        transport = self._transport
        assert transport is not None
        self._timer = asyncio.get_running_loop().call_later(self._head_timeout_s, transport.close)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _after(head: RequestHead | None) -> tuple[int, int]:
    """What follows a head handed to aiohttp: (state, body bytes to count)."""
    if head is None or "upgrade" in head.headers:
        return _PASS, 0  # aiohttp answers a malformed head; an upgrade is its business
    if "transfer-encoding" in head.headers:
        return _PASS, 0  # a chunked body: the rest of the connection goes as it is
    length = head.headers.get("content-length", "0").strip()
    if not is_digits(length):
        return _PASS, 0  # aiohttp refuses it
    size = int(length)
    return (_BODY, size) if size else (_HEAD, 0)


class PrefedDoor(FrontDoor):
    """A connection another worker passed here, with the bytes it had read of it."""

    __slots__ = ("_prefed",)

    def __init__(self, prefed: bytes, *args: Any) -> None:
        super().__init__(*args)
        self._prefed = prefed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        data, self._prefed = self._prefed, b""
        self.data_received(data)


class QuietHttpLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger, with a malformed request as one line and a count."""

    def __init__(self, on_bad_request: Callable[[], None]) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self._on_bad_request = on_bad_request

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self._on_bad_request()
            self.logger.warning("refused a malformed HTTP request: %s", exc_info.message or exc_info)
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


class FrontDoorSite(web.TCPSite):
    """aiohttp's TCP site, with a `FrontDoor` in front of its request handlers."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        engines: Mapping[str, DirectEngine],
        head_timeout_s: float,
        backlog: int,
        reuse_port: bool = False,
        handoff: Handoff | None = None,
    ) -> None:
        super().__init__(runner, host, port, backlog=backlog, reuse_port=reuse_port)
        self._engines = engines
        self._head_timeout_s = head_timeout_s
        self._handoff = handoff

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        http = self._runner.server
        assert http is not None
        loop = asyncio.get_running_loop()
        route = None if self._handoff is None else self._handoff.route
        self._server = await loop.create_server(
            lambda: FrontDoor(http, self._engines, self._head_timeout_s, route),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        if self._handoff is not None:
            adopting: set[asyncio.Task[Any]] = set()

            def adopt(sock: socket.socket, data: bytes) -> None:
                door = lambda: PrefedDoor(data, http, self._engines, self._head_timeout_s, route)  # noqa: E731
                task = loop.create_task(loop.connect_accepted_socket(door, sock))
                adopting.add(task)
                task.add_done_callback(adopting.discard)

            self._handoff.listen(adopt)


def run_app(
    app: web.Application,
    loop: asyncio.AbstractEventLoop,
    host: str,
    port: int,
    engines: Mapping[str, DirectEngine],
    head_timeout_s: float,
    shutdown_timeout_s: float,
    backlog: int,
    started: Callable[[], None] | None = None,
    on_bad_request: Callable[[], None] = lambda: None,
    reuse_port: bool = False,
    handoff: Handoff | None = None,
    unix_path: str | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then shut down as `aiohttp.web.run_app` does.
    `started` is called once the node is up and the port is listening. `reuse_port`: one of
    several workers listening on the same port (SO_REUSEPORT: the kernel spreads connections).
    `unix_path`: the app is served there too, plainly (the worker holding the media plane:
    the other workers forward its routes there, media/forward.py)."""
    asyncio.set_event_loop(loop)
    runner = web.AppRunner(
        app,
        handle_signals=True,
        access_log=None,
        shutdown_timeout=shutdown_timeout_s,
        logger=QuietHttpLog(on_bad_request),
    )

    async def serve() -> None:
        await runner.setup()
        try:
            site = FrontDoorSite(runner, host, port, engines, head_timeout_s, backlog, reuse_port, handoff)
            await site.start()
            if unix_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(unix_path)  # left by this worker's previous life
                await web.UnixSite(runner, unix_path).start()
            if started is not None:
                started()
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    main = loop.create_task(serve())
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        main.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(main)
        others = asyncio.all_tasks(loop)
        for task in others:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*others, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
