"""Recording the host program to a file on request: its H.264 and AAC remuxed (never
re-encoded) into fragmented MP4 by PyAV (FFmpeg's mp4 muxer, `frag_keyframe+empty_moov`).

A `Recorder` listens to the program's video relay (so it follows failovers, with the
program's spliced timestamps) and to the room's AAC (program_aac.py: an RTMP encoder's
own AAC, or the WHIP host's Opus transcoded once per room), and writes
`<recordings_dir>/<room>/<id>.mp4`. Each fragment closes at a keyframe and is flushed to
disk at once, so the file is playable, and grows, while the recording runs, and a crash
loses at most the fragment being written. A keyframe is asked for (through the relay's
gate) when the publisher's are further apart than `fragment_s`. Past `max_s` the
recorder stops writing by itself. The durable record of a recording (who, when, which
file) is the node's job (recording_routes.py): media worker processes have no Store.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av

from .remux import AvRemux

__all__ = ["Recorder", "new_recording_id"]

log = logging.getLogger(__name__)
MP4_OPTIONS = {
    "movflags": "frag_keyframe+empty_moov+default_base_moof",
    "flush_packets": "1",
    "max_interleave_delta": "1000000",  # a silent track holds the other back at most 1 s
}


def new_recording_id(now: float) -> str:
    """Sortable by start time, unique: 20261122T054501Z-3fa9c2."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + secrets.token_hex(3)


class Recorder(AvRemux):
    def __init__(
        self,
        path: Path,
        fragment_s: float,
        max_s: float,
        request_keyframe: Callable[[], None],
        aac: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(aac)
        self.id = path.stem
        self.what = f"recording {self.id}"
        self.path = path
        self.fragment_s = fragment_s
        self.max_s = max_s
        self.started_at = time.time()
        self._request_keyframe = request_keyframe
        self._clock = clock
        self._began = clock()
        self._last_keyframe_at = self._began

    def frame(self, data: bytes, timestamp: int, keyframe: bool) -> None:
        """A listener of the program's video relay."""
        now = self._clock()
        if now - self._began > self.max_s:
            self.close()
            return
        if keyframe:
            self._last_keyframe_at = now
        elif now - self._last_keyframe_at >= self.fragment_s:
            self._request_keyframe()
        self.video(data, timestamp, keyframe, now)

    def sound(self, data: bytes, timestamp: int) -> None:
        """A listener of the room's AAC."""
        self.audio(data, timestamp, self._clock())

    def _make_container(self) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return av.open(str(self.path), "w", format="mp4", options=MP4_OPTIONS)

    def summary(self) -> dict[str, Any]:
        size = self.path.stat().st_size if self.path.exists() else 0
        return {
            "id": self.id,
            "file": f"{self.path.parent.name}/{self.path.name}",
            "started_at": round(self.started_at, 3),
            "media_started_at": round(self.opened_at, 3) if self.opened_at is not None else None,
            "frames": self.frames,
            "audio": self._audio is not None,
            "duration_s": round(self.duration_s, 3),
            "bytes": size,
            "recording": not self.closed,
        }
