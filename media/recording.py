"""Recording the host program to a file on request: its H.264 remuxed (never re-encoded) into
fragmented MP4 by PyAV (FFmpeg's mp4 muxer, `frag_keyframe+empty_moov`).

A `Recorder` listens to the program's video relay (so it follows failovers, with the
program's spliced timestamps) and writes `<recordings_dir>/<room>/<id>.mp4`. Each
fragment closes at a keyframe and is flushed to disk at once, so the file is playable,
and grows, while the recording runs, and a crash loses at most the fragment being
written. A keyframe is asked for (through the relay's gate) when the publisher's are
further apart than `fragment_s`. Past `max_s` the recorder stops writing by itself.
The durable record of a recording (who, when, which file) is the node's job
(recording_routes.py): media worker processes have no Store.
"""

from __future__ import annotations

import io
import logging
import secrets
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from .hls import _signed_delta

__all__ = ["Recorder", "new_recording_id"]

log = logging.getLogger(__name__)
TIME_BASE = Fraction(1, 90000)
MP4_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}


def new_recording_id(now: float) -> str:
    """Sortable by start time, unique: 20261122T054501Z-3fa9c2."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + secrets.token_hex(3)


class Recorder:
    def __init__(
        self,
        path: Path,
        fragment_s: float,
        max_s: float,
        request_keyframe: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = path.stem
        self.path = path
        self.fragment_s = fragment_s
        self.max_s = max_s
        self.started_at = time.time()
        self.frames = 0
        self.closed = False
        self._request_keyframe = request_keyframe
        self._clock = clock
        self._began = clock()
        self._container: Any = None
        self._stream: Any = None
        self._last_timestamp = 0
        self._pts = 0
        self._last_keyframe_at = self._began

    def frame(self, data: bytes, timestamp: int, keyframe: bool) -> None:
        """A listener of the program's video relay: one encoded H.264 frame (Annex B)."""
        if self.closed:
            return
        now = self._clock()
        if now - self._began > self.max_s:
            self.close()
            return
        if keyframe:
            self._last_keyframe_at = now
        elif now - self._last_keyframe_at >= self.fragment_s:
            self._request_keyframe()
        if self._container is None:
            if not keyframe:
                return
            self._open(data, timestamp)
        self._pts += _signed_delta(timestamp, self._last_timestamp)
        self._last_timestamp = timestamp
        packet = av.Packet(data)
        packet.pts = packet.dts = self._pts
        packet.time_base, packet.stream, packet.is_keyframe = TIME_BASE, self._stream, keyframe
        try:
            self._container.mux(packet)
            self.frames += 1
        except Exception as exc:  # FFmpeg refuses a packet (timestamps): skip it
            log.warning("recording %s: packet skipped: %r", self.id, exc)

    def _open(self, keyframe: bytes, timestamp: int) -> None:
        """Start at a keyframe: its SPS gives the stream's parameters."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        probe = av.open(io.BytesIO(keyframe), format="h264")
        self._container = av.open(str(self.path), "w", format="mp4", options=MP4_OPTIONS)
        self._stream = self._container.add_stream_from_template(probe.streams.video[0])
        self._stream.time_base = TIME_BASE
        probe.close()
        self._last_timestamp, self._pts = timestamp, 0

    def summary(self) -> dict[str, Any]:
        size = self.path.stat().st_size if self.path.exists() else 0
        return {
            "id": self.id,
            "file": f"{self.path.parent.name}/{self.path.name}",
            "started_at": round(self.started_at, 3),
            "frames": self.frames,
            "duration_s": round(self._pts / 90000, 3),
            "bytes": size,
            "recording": not self.closed,
        }

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._container is not None:
            try:
                self._container.close()
            except Exception as exc:
                log.warning("recording %s: closing failed: %r", self.id, exc)
