"""Media worker processes, rooms assigned by a stable hash: `media.workers >= 2`.

One Python process drives about one core. The node keeps HTTP, auth and Socket.IO; each
worker runs the peer connections of the rooms hashed to it, so a room's publisher and
all its viewers share one process (forwarding never crosses a process boundary), and
two workers serve about twice the viewers of one. Workers start on first use, so a
node that never sees WHIP/WHEP never pays for them.

A user's WHEP sessions still connecting are counted here, over every worker
(`admission.Connecting`, fed by the workers' viewer reports): with rooms spread over
processes, `max_pending_sessions_per_user` holds per node, not once per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sys
import tempfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from liveroom.config import MediaConfig
from liveroom.errors import CommandError, OutcomeUnknown

from .admission import Connecting
from .callers import Caller
from .plane import PublishEvent
from .rtmp_ingest import IngestSink, WorkerIngest

__all__ = ["WorkerPool", "ingest_path"]

log = logging.getLogger(__name__)
START_TIMEOUT_S = 20.0


def ingest_path(socket_path: Path) -> Path:
    """The worker's second socket: RTMP publishes (rtmp_ingest.py)."""
    return socket_path.with_suffix(".rtmp")


OnViewer = Callable[[str], None]  # a WHEP session ("<worker>.<session>") connected or closed


async def _accepts(path: Path) -> bool:
    """Whether a Unix socket at `path` accepts connections now."""
    try:
        _, writer = await asyncio.open_unix_connection(str(path))
    except OSError:  # not there yet, or not listening yet
        return False
    writer.close()
    return True


class Worker:
    def __init__(self, index: int, socket_path: Path, on_viewer: OnViewer = lambda session: None) -> None:
        self.index = index
        self.socket_path = socket_path
        self.on_viewer = on_viewer
        self.process: asyncio.subprocess.Process | None = None
        self.http: aiohttp.ClientSession | None = None
        self.reader: asyncio.Task[None] | None = None
        self.snapshot: dict[str, Any] | None = None
        self.call_timeout_s = MediaConfig().worker_call_timeout_s

    async def start(self, config: MediaConfig, publish_event: PublishEvent) -> None:
        self.call_timeout_s = config.worker_call_timeout_s
        settings = json.dumps(dataclasses.asdict(config))
        command = (sys.executable, "-m", "liveroom.media.worker", str(self.socket_path), settings)
        self.process = await asyncio.create_subprocess_exec(*command)
        self.http = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(self.socket_path)))
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        # Until it accepts a connection, not until its socket file exists: the file appears at
        # bind(), a moment before listen(), and a loaded machine can hold the worker between
        # the two (a first WHIP was answered 503 "Connection refused" in a hog run).
        while not await _accepts(self.socket_path):
            if self.process.returncode is not None or asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"media worker {self.index} did not start")
            await asyncio.sleep(0.05)
        self.reader = asyncio.create_task(self._read_events(publish_event), name=f"media-worker-{self.index}")

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self.http is not None
        try:
            # Bounded: a worker that hangs must not hold up a command (or the node's stop).
            timeout = aiohttp.ClientTimeout(total=self.call_timeout_s)
            async with self.http.post(f"http://worker{path}", json=body, timeout=timeout) as response:
                reply: dict[str, Any] = await response.json()
        except TimeoutError:
            waited = f"{self.call_timeout_s:g} s"
            raise OutcomeUnknown(
                f"media worker {self.index} did not answer in {waited}: the outcome is unknown"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise CommandError(
                f"media worker {self.index} is unavailable: {exc}", "media_unavailable"
            ) from None
        if "error" in reply:
            raise CommandError(reply["error"]["message"], reply["error"]["code"])
        return reply

    async def _read_events(self, publish_event: PublishEvent) -> None:
        assert self.http is not None
        while True:
            try:
                async with self.http.get("http://worker/events", timeout=aiohttp.ClientTimeout()) as response:
                    async for line in response.content:
                        await self._on_line(json.loads(line), publish_event)
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                log.warning("media worker %d event stream: %r", self.index, exc)
            if self.process is None or self.process.returncode is not None:
                log.error("media worker %d exited", self.index)
                self.on_viewer(f"{self.index}.")  # its sessions are gone with it
                return
            await asyncio.sleep(0.5)

    async def _on_line(self, item: dict[str, Any], publish_event: PublishEvent) -> None:
        if "snapshot" in item:
            self.snapshot = item["snapshot"]
            return
        if "viewer" in item:
            self.on_viewer(f"{self.index}.{item['viewer']}")
            return
        try:
            await publish_event(item["room"], item["type"], item["data"])
        except Exception:
            log.exception("media worker %d: could not publish %s", self.index, item.get("type"))

    async def stop(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        if self.http is not None:
            await self.http.close()
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


class WorkerPool:
    def __init__(self, config: MediaConfig, count: int, publish_event: PublishEvent) -> None:
        self._config = config
        self._publish_event = publish_event
        self._directory = tempfile.TemporaryDirectory(prefix="liveroom-media-")
        self._connecting = Connecting(config.max_pending_sessions_per_user, config.session_connect_timeout_s)
        directory = Path(self._directory.name)
        self.workers = [Worker(i, directory / f"w{i}.sock", self._viewer_report) for i in range(count)]
        self._started: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Nothing yet: workers start on the first WHIP/WHEP request."""

    async def _ready(self) -> None:
        if self._started is None:
            self._started = asyncio.ensure_future(self._start_all())
        await asyncio.shield(self._started)

    async def _start_all(self) -> None:
        await asyncio.gather(*(w.start(self._config, self._publish_event) for w in self.workers))

    def worker_for(self, room: str) -> Worker:
        return self.workers[zlib.crc32(room.encode()) % len(self.workers)]

    async def publish(
        self, room: str, caller: Caller, offer: str, backup: bool, camera: str | None = None
    ) -> tuple[str, str]:
        caller_data = dataclasses.asdict(caller)
        body = {"room": room, "caller": caller_data, "offer": offer, "backup": backup, "camera": camera}
        return await self._open(self.worker_for(room), "/publish", body)

    async def play(
        self, room: str, slot: str, caller: Caller, offer: str, quality: str | None = None
    ) -> tuple[str, str]:
        caller_data = dataclasses.asdict(caller)
        body = {"room": room, "slot": slot, "caller": caller_data, "offer": offer, "quality": quality}
        loop = asyncio.get_running_loop()
        place = self._connecting.admit(caller.user_id, loop.time())  # over every worker
        try:
            session, answer = await self._open(self.worker_for(room), "/play", body)
        except BaseException:
            self._connecting.failed(place)
            raise
        self._connecting.opened(place, session, loop.time())
        return session, answer

    def _viewer_report(self, session: str) -> None:
        """A worker's WHEP session connected or closed ("<worker>." alone: the worker exited)."""
        if session.endswith("."):
            self._connecting.settled_all(session)
        else:
            self._connecting.reported(session, asyncio.get_running_loop().time())

    async def ingest(self, room: str, caller: Caller, backup: bool, camera: str | None = None) -> IngestSink:
        await self._ready()
        worker = self.worker_for(room)
        sink = await WorkerIngest.open(ingest_path(worker.socket_path), room, caller, backup, camera)
        sink.id = f"{worker.index}.{sink.id}"
        return sink

    async def _open(self, worker: Worker, path: str, body: dict[str, Any]) -> tuple[str, str]:
        await self._ready()
        reply = await worker.call(path, body)
        return f"{worker.index}.{reply['session']}", str(reply["answer"])

    async def end(self, session_id: str, caller: Caller) -> None:
        worker, session = self._owner(session_id)
        await self._ready()
        await worker.call("/end", {"session": session, "caller": dataclasses.asdict(caller)})

    async def trickle(self, session_id: str, caller: Caller, fragment: str) -> None:
        worker, session = self._owner(session_id)
        await self._ready()
        body = {"session": session, "caller": dataclasses.asdict(caller), "fragment": fragment}
        await worker.call("/trickle", body)

    async def status(self, session_id: str, caller: Caller) -> dict[str, Any]:
        worker, session = self._owner(session_id)
        await self._ready()
        reply = await worker.call("/status", {"session": session, "caller": dataclasses.asdict(caller)})
        return {**reply["status"], "session": session_id}

    async def start_recording(self, room: str, caller: Caller) -> dict[str, Any]:
        await self._ready()
        body = {"room": room, "caller": dataclasses.asdict(caller)}
        reply = await self.worker_for(room).call("/record/start", body)
        return dict(reply["recording"])

    async def stop_recording(self, room: str, recording_id: str, caller: Caller) -> dict[str, Any]:
        await self._ready()
        body = {"room": room, "recording": recording_id, "caller": dataclasses.asdict(caller)}
        reply = await self.worker_for(room).call("/record/stop", body)
        return dict(reply["recording"])

    async def add_restream(self, room: str, caller: Caller, url: str) -> dict[str, Any]:
        body = {"room": room, "caller": dataclasses.asdict(caller), "url": url}
        return dict((await self._room_call(room, "/restream/add", body))["restream"])

    async def list_restreams(self, room: str, caller: Caller) -> list[dict[str, Any]]:
        body = {"room": room, "caller": dataclasses.asdict(caller)}
        return list((await self._room_call(room, "/restream/list", body))["restreams"])

    async def remove_restream(self, room: str, restream_id: str, caller: Caller) -> dict[str, Any]:
        body = {"room": room, "restream": restream_id, "caller": dataclasses.asdict(caller)}
        return dict((await self._room_call(room, "/restream/remove", body))["restream"])

    async def cut_program(self, room: str, caller: Caller, camera: str) -> dict[str, Any]:
        body = {"room": room, "caller": dataclasses.asdict(caller), "camera": camera}
        return dict((await self._room_call(room, "/program/cut", body))["program"])

    async def program(self, room: str, caller: Caller) -> dict[str, Any]:
        body = {"room": room, "caller": dataclasses.asdict(caller)}
        return dict((await self._room_call(room, "/program/get", body))["program"])

    async def _room_call(self, room: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        await self._ready()
        return await self.worker_for(room).call(path, body)

    def _owner(self, session_id: str) -> tuple[Worker, str]:
        """The worker named by a session id ("<worker>.<session>") and its own id."""
        index, _, session = session_id.partition(".")
        if not index.isdigit() or int(index) >= len(self.workers):
            raise CommandError("no such media session", "not_found")
        return self.workers[int(index)], session

    async def end_slot(self, room: str, slot: str, caller: Caller, only_user: str | None = None) -> None:
        await self._ready()
        body = {"room": room, "slot": slot, "caller": dataclasses.asdict(caller), "only_user": only_user}
        await self.worker_for(room).call("/end_slot", body)

    def snapshots(self) -> Mapping[str, Mapping[str, Any]]:
        return {str(w.index): w.snapshot for w in self.workers if w.snapshot is not None}

    async def stop(self) -> None:
        if self._started is not None:
            with contextlib.suppress(Exception):
                await self._started
        await asyncio.gather(*(w.stop() for w in self.workers))
        self._directory.cleanup()
