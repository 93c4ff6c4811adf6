"""The listening socket: Engine.IO WebSocket openings go to liveroom, the rest to aiohttp.

Every accepted connection starts with a `FrontDoor` that reads the first request head.
`GET /socket.io/?EIO=4&transport=websocket` (no session yet) is taken by the Socket.IO
server's `DirectEngine` (engine_session.py); anything else, including every mistake, is
handed to aiohttp's request handler as if it had been there from the start, bytes
included. Only the first request of a connection is looked at, so keep-alive HTTP pays
nothing after it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import cast

from aiohttp import web

from liveroom.direct_engine import DirectEngine
from liveroom.websocket import parse_request_head

__all__ = ["FrontDoor", "FrontDoorSite", "run_app"]

MAX_HEAD_BYTES = 16_384  # longer heads go to aiohttp, which answers 431 / 400


class FrontDoor(asyncio.Protocol):
    __slots__ = ("_buffer", "_engines", "_head_timeout_s", "_http", "_timer", "_transport")

    def __init__(
        self,
        http: Callable[[], asyncio.Protocol],
        engines: Mapping[str, DirectEngine],
        head_timeout_s: float,
    ) -> None:
        self._http = http
        self._engines = engines
        self._head_timeout_s = head_timeout_s
        self._buffer = b""
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        # A connection that never finishes its request head (slowloris) is closed.
        self._timer = asyncio.get_running_loop().call_later(self._head_timeout_s, self._transport.close)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._buffer.startswith(b"GET /socket.io"):
            if len(self._buffer) >= 14 or not b"GET /socket.io".startswith(self._buffer):
                self._hand_over()
            return
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                self._hand_over()
            return
        head = parse_request_head(self._buffer[: end + 4])
        engine = None if head is None else self._engines.get(head.path)
        transport = self._transport
        assert transport is not None
        if engine is not None and head is not None:
            self._cancel_timer()
            if engine.accept(transport, head, self._buffer[end + 4 :]):
                return
        self._hand_over()

    def eof_received(self) -> bool | None:
        return None  # closed before a request: nothing to answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()

    def _hand_over(self) -> None:
        self._cancel_timer()
        transport = self._transport
        assert transport is not None
        protocol = self._http()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(self._buffer)
        self._buffer = b""

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


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
    ) -> None:
        super().__init__(runner, host, port, backlog=backlog)
        self._engines = engines
        self._head_timeout_s = head_timeout_s

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        http = self._runner.server
        assert http is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: FrontDoor(http, self._engines, self._head_timeout_s),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )


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
) -> None:
    """Serve until SIGINT or SIGTERM, then shut down as `aiohttp.web.run_app` does.
    `started` is called once the node is up and the port is listening."""
    asyncio.set_event_loop(loop)
    runner = web.AppRunner(app, handle_signals=True, access_log=None, shutdown_timeout=shutdown_timeout_s)

    async def serve() -> None:
        await runner.setup()
        try:
            site = FrontDoorSite(runner, host, port, engines, head_timeout_s, backlog)
            await site.start()
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
