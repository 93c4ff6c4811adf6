"""Where an accepted RTMP publish goes: the media process that owns its room.

The node's RTMP server (rtmp_server.py) speaks RTMP and checks the key; the room's
`RtmpPublishSession` lives in the media plane, in the node (`media.workers = 1`) or in
the room's worker process. Both are reached through an `IngestSink`: the session itself
in-process, or `WorkerIngest`, a Unix stream to the worker that carries the FLV tag
bodies as small frames (kind, timestamp, length, payload). Either side ending the
stream ends the publish: the worker closes it when the session ends (DELETE, taken off
stage, a tag it cannot forward); the node closes it when the encoder goes.

Wire, node -> worker: one JSON line `{"room", "caller", "backup", "camera"}`; the worker answers one
JSON line `{"session"}` or `{"error": {"code", "message"}}`; then frames
`>BIH` (kind: 0 audio, 1 video, 2 end of publish; timestamp ms; length) + payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from liveroom.errors import CommandError

from .callers import Caller
from .rtmp_flv import FlvError

__all__ = ["IngestSink", "WorkerIngest", "serve_ingest"]

log = logging.getLogger(__name__)
FRAME = struct.Struct(">BII")
KINDS = ("audio", "video")
END = 2
MAX_BUFFERED = 8 * 1024 * 1024  # the worker is stuck if this much waits for it


class IngestSink(Protocol):
    """One accepted publish, as the RTMP connection sees it."""

    id: str
    # Set by the connection: called when the publish ends from the media side.
    disconnect: Callable[[], None]

    def media(self, kind: str, timestamp_ms: int, payload: bytes) -> None:
        """An FLV tag body; FlvError if it cannot be forwarded."""

    async def end(self, requested: bool) -> None:
        """The encoder went (`requested`: it said so, rather than losing its connection)."""


class WorkerIngest:
    """An `IngestSink` in a worker process, reached over its ingest socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: str) -> None:
        self.id = session
        self.disconnect: Callable[[], None] = lambda: None
        self._reader = reader
        self._writer = writer
        self._watch = asyncio.ensure_future(self._until_closed())

    @classmethod
    async def open(
        cls, path: Path, room: str, caller: Caller, backup: bool, camera: str | None = None
    ) -> WorkerIngest:
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
        except OSError as exc:
            raise CommandError(f"media worker is unavailable: {exc}", "media_unavailable") from None
        head = {"room": room, "caller": dataclasses.asdict(caller), "backup": backup, "camera": camera}
        writer.write(json.dumps(head).encode() + b"\n")
        line = await reader.readline()
        reply: dict[str, Any] = json.loads(line) if line else {"error": {"code": "media_unavailable"}}
        if "error" in reply:
            writer.close()
            error = reply["error"]
            raise CommandError(error.get("message", "the media worker refused"), error["code"])
        return cls(reader, writer, str(reply["session"]))

    def media(self, kind: str, timestamp_ms: int, payload: bytes) -> None:
        if self._writer.is_closing():
            return
        if self._writer.transport.get_write_buffer_size() > MAX_BUFFERED:
            raise FlvError("the media worker does not keep up")
        self._writer.write(FRAME.pack(KINDS.index(kind), timestamp_ms & 0xFFFFFFFF, len(payload)) + payload)

    async def end(self, requested: bool) -> None:
        if requested and not self._writer.is_closing():
            self._writer.write(FRAME.pack(END, 0, 0))
        self._writer.close()
        self._watch.cancel()

    async def _until_closed(self) -> None:
        with contextlib.suppress(ConnectionError):
            while await self._reader.read(4096):
                pass
        self.disconnect()


async def serve_ingest(plane: Any, path: Path) -> asyncio.Server:
    """The worker's side: each connection is one publish into `plane` (a MediaPlane)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await _ingest(plane, reader, writer)
        writer.close()

    return await asyncio.start_unix_server(handle, path=str(path))


async def _ingest(plane: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = json.loads(await reader.readline())
    try:
        caller = Caller(**head["caller"])
        session = await plane.publish_rtmp(head["room"], caller, head["backup"], head.get("camera"))
    except CommandError as error:
        writer.write(json.dumps({"error": error.as_error()}).encode() + b"\n")
        return
    session.disconnect = writer.close
    writer.write(json.dumps({"session": session.id}).encode() + b"\n")
    requested = False
    try:
        while not session.closed:
            kind, timestamp, size = FRAME.unpack(await reader.readexactly(FRAME.size))
            if kind == END:
                requested = True
                break
            session.media(KINDS[kind], timestamp, await reader.readexactly(size))
    except FlvError as exc:
        log.warning("rtmp ingest in room %s: closed: %s", session.room, exc)
    finally:
        await session.end(requested)
