"""RTMP ingest: `rtmp://HOST:PORT/live/{room}` with a publish token as the stream key.

An asyncio adapter around `RtmpServerProtocol` (rtmp_protocol.py), in the node process:
it reads the room and the token from the publish (rtmp_protocol.ingest_target), checks
the token as WHIP does (a host's token for the host slot, `?path=backup` for its second
path; a stage guest's publish token for its slot), asks the media backend for the slot,
and then hands every audio/video tag to the `IngestSink` it got (rtmp_ingest.py).

Every refusal or fault closes that one connection with one log line saying why (a wrong
key, a bad room, a slot already taken, malformed chunks, a codec we do not forward, no
publish within `rtmp_handshake_timeout_s`); other connections and rooms never notice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

from liveroom.config import MediaConfig

from .backend import MediaBackend
from .callers import CallerVerifier
from .rtmp_flv import FlvError
from .rtmp_ingest import IngestSink
from .rtmp_protocol import (
    MediaData,
    ProtocolError,
    PublishRequest,
    RtmpServerProtocol,
    Unpublished,
    ingest_target,
)

__all__ = ["RtmpServer"]

log = logging.getLogger(__name__)
BAD_NAME = "NetStream.Publish.BadName"
STATUS_CODES = {"unauthorized": BAD_NAME, "already_publishing": BAD_NAME}


class RtmpServer:
    def __init__(
        self,
        config: MediaConfig,
        verifier: CallerVerifier,
        backend: MediaBackend,
        check_name: Callable[[str, str], str],
    ) -> None:
        self.config = config
        self.verifier = verifier
        self.backend = backend
        self.check_name = check_name  # routes._name: a room name as WHIP accepts it
        self.connections: set[RtmpConnection] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int | None:
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        host, port = self.config.rtmp_host, self.config.rtmp_port
        try:
            self._server = await asyncio.get_running_loop().create_server(
                lambda: RtmpConnection(self), host, port
            )
        except OSError as exc:  # the port is taken: the rest of the node still serves
            log.error("rtmp ingest could not listen on %s:%s: %s", host, port, exc)
            return
        log.info("rtmp ingest on rtmp://%s:%s/live/<room>", host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.close("the server is stopping", requested=False)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    def spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class RtmpConnection(asyncio.Protocol):
    def __init__(self, server: RtmpServer) -> None:
        self.server = server
        self.protocol = RtmpServerProtocol(server.config.rtmp_max_message_bytes)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.sink: IngestSink | None = None
        self.closing = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.server.connections.add(self)
        timeout = self.server.config.rtmp_handshake_timeout_s
        self._timer = asyncio.get_running_loop().call_later(timeout, self._too_slow)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            events = self.protocol.receive(data)
        except ProtocolError as exc:
            self.fail(f"malformed RTMP: {exc}")
            return
        self._flush()
        for event in events:
            if isinstance(event, MediaData):
                self._media(event)
            elif isinstance(event, PublishRequest):
                assert self.transport is not None
                self.transport.pause_reading()  # nothing more until the slot is ours
                self.server.spawn(self._admit(event))
            elif isinstance(event, Unpublished):
                self.close("the encoder stopped publishing", requested=True)
            if self.closing:
                return

    def _media(self, event: MediaData) -> None:
        if self.sink is None:
            return
        try:
            self.sink.media(event.kind, event.timestamp, event.payload)
        except FlvError as exc:
            self.fail(str(exc))

    async def _admit(self, request: PublishRequest) -> None:
        try:
            target = ingest_target(request.app, request.name)
            room = self.server.check_name(target.room, "room")
            caller = await self.server.verifier.verify_everywhere(target.token)
            camera = target.params.get("camera")
            if camera is not None:
                camera = self.server.check_name(camera, "camera")
            sink = await self.server.backend.ingest(room, caller, target.backup, camera)
        except Exception as exc:  # refused (CommandError, ProtocolError), or the worker is gone
            code = getattr(
                exc, "code", "bad_request" if isinstance(exc, ProtocolError) else "media_unavailable"
            )
            self.protocol.reject(STATUS_CODES.get(code, "NetStream.Publish.Denied"), str(exc))
            self._flush()
            self.fail(f"publish refused ({code}): {exc}")
            return
        if self.closing:  # the encoder left while we asked
            await sink.end(False)
            return
        self.sink = sink
        sink.disconnect = lambda: self.close("the session was ended by the server", requested=False)
        self.protocol.accept_publish()
        self._flush()
        self._cancel_timer()
        assert self.transport is not None
        self.transport.resume_reading()
        path = "backup" if target.backup else "primary"
        if "camera" in target.params:
            path += f", camera {target.params['camera']}"
        log.info("rtmp %s publishes into room %s (%s path) as %s", self.peer, room, path, caller.user_id)

    def _too_slow(self) -> None:
        self.fail(f"no publish within {self.server.config.rtmp_handshake_timeout_s} s")

    def fail(self, reason: str) -> None:
        if not self.closing:
            log.warning("rtmp %s: closed: %s", self.peer, reason)
        self.close(reason, requested=False)

    def close(self, reason: str, requested: bool) -> None:
        if self.closing:
            return
        self.closing = True
        self._cancel_timer()
        log.info("rtmp %s: %s", self.peer, reason)
        if self.transport is not None:
            self.transport.close()
        self.server.connections.discard(self)
        if self.sink is not None:
            self.sink.disconnect = lambda: None
            self.server.spawn(self.sink.end(requested))

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(f"connection lost ({exc or 'closed by the encoder'})", requested=False)

    def _flush(self) -> None:
        data = self.protocol.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
