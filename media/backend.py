"""Where media sessions run: in the node process, or in worker processes (one room, one worker).

The HTTP layer (routes.py) talks to a `MediaBackend` and does not know which it has.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from liveroom.config import MediaConfig

from .callers import Caller
from .plane import MediaPlane, PublishEvent
from .rtmp_ingest import IngestSink

__all__ = ["LocalMedia", "MediaBackend"]


class MediaBackend(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(
        self, room: str, caller: Caller, offer: str, backup: bool, camera: str | None = None
    ) -> tuple[str, str]:
        """WHIP: (session id, SDP answer), or a CommandError (`camera`: `?camera=NAME`)."""
        ...

    async def play(
        self, room: str, slot: str, caller: Caller, offer: str, quality: str | None = None
    ) -> tuple[str, str]:
        """WHEP: (session id, SDP answer), or a CommandError."""
        ...

    async def ingest(self, room: str, caller: Caller, backup: bool, camera: str | None = None) -> IngestSink:
        """An RTMP publish (rtmp_server.py): where its tags go, or a CommandError."""
        ...

    async def end(self, session_id: str, caller: Caller) -> None: ...

    async def end_slot(self, room: str, slot: str, caller: Caller, only_user: str | None = None) -> None:
        """Take the slot's publisher off (`only_user`: only if that user publishes there)."""
        ...

    async def trickle(self, session_id: str, caller: Caller, fragment: str) -> None: ...

    async def status(self, session_id: str, caller: Caller) -> dict[str, Any]:
        """GET {Location}: the session's state for its owner, or a CommandError."""
        ...

    async def start_recording(self, room: str, caller: Caller) -> dict[str, Any]:
        """Record the room's program to fMP4: the recording's summary, or a CommandError."""
        ...

    async def stop_recording(self, room: str, recording_id: str, caller: Caller) -> dict[str, Any]: ...

    async def add_restream(self, room: str, caller: Caller, url: str) -> dict[str, Any]:
        """Push the program to an RTMP(S) URL: the destination's summary, or a CommandError."""
        ...

    async def list_restreams(self, room: str, caller: Caller) -> list[dict[str, Any]]: ...

    async def cut_program(self, room: str, caller: Caller, camera: str) -> dict[str, Any]:
        """Cut the host's program to `camera`: the program's state, or a CommandError."""
        ...

    async def program(self, room: str, caller: Caller) -> dict[str, Any]:
        """The camera on air and every camera of the host's program, or a CommandError."""
        ...

    async def remove_restream(self, room: str, restream_id: str, caller: Caller) -> dict[str, Any]: ...

    def snapshots(self) -> Mapping[str, Mapping[str, Any]]:
        """The latest figures of each media process, by worker name (for /metrics)."""
        ...


class LocalMedia:
    """`media.workers = 1`: the plane runs on the node's own event loop."""

    def __init__(self, config: MediaConfig, publish_event: PublishEvent) -> None:
        self.plane = MediaPlane(config, publish_event)

    async def start(self) -> None:
        await self.plane.start()

    async def stop(self) -> None:
        await self.plane.stop()

    async def publish(
        self, room: str, caller: Caller, offer: str, backup: bool, camera: str | None = None
    ) -> tuple[str, str]:
        return await self.plane.publish(room, caller, offer, backup, camera)

    async def play(
        self, room: str, slot: str, caller: Caller, offer: str, quality: str | None = None
    ) -> tuple[str, str]:
        return await self.plane.play(room, slot, caller, offer, quality)

    async def ingest(self, room: str, caller: Caller, backup: bool, camera: str | None = None) -> IngestSink:
        return await self.plane.publish_rtmp(room, caller, backup, camera)

    async def end(self, session_id: str, caller: Caller) -> None:
        await self.plane.end(session_id, caller)

    async def end_slot(self, room: str, slot: str, caller: Caller, only_user: str | None = None) -> None:
        await self.plane.end_slot(room, slot, caller, only_user)

    async def trickle(self, session_id: str, caller: Caller, fragment: str) -> None:
        await self.plane.trickle(session_id, caller, fragment)

    async def status(self, session_id: str, caller: Caller) -> dict[str, Any]:
        return self.plane.status(session_id, caller)

    async def start_recording(self, room: str, caller: Caller) -> dict[str, Any]:
        return self.plane.start_recording(room, caller)

    async def stop_recording(self, room: str, recording_id: str, caller: Caller) -> dict[str, Any]:
        return self.plane.stop_recording(room, recording_id, caller)

    async def add_restream(self, room: str, caller: Caller, url: str) -> dict[str, Any]:
        return self.plane.add_restream(room, caller, url)

    async def list_restreams(self, room: str, caller: Caller) -> list[dict[str, Any]]:
        return self.plane.list_restreams(room, caller)

    async def remove_restream(self, room: str, restream_id: str, caller: Caller) -> dict[str, Any]:
        return self.plane.remove_restream(room, restream_id, caller)

    async def cut_program(self, room: str, caller: Caller, camera: str) -> dict[str, Any]:
        return self.plane.cut_program(room, caller, camera)

    async def program(self, room: str, caller: Caller) -> dict[str, Any]:
        return self.plane.program(room, caller)

    def snapshots(self) -> Mapping[str, Mapping[str, Any]]:
        return {"0": self.plane.snapshot()}
