"""Encoded H.264 frames muxed into a file without decoding them: the part HLS variants
and recordings share.

A `H264Remux` listens to a video relay: frames (Annex B, RTP timestamps at 90 kHz) go into
a container that its subclass opens at the first keyframe (its SPS gives the stream's
parameters), and a keyframe is asked for whenever none came for `keyframe_s` (through the
relay's gate, so at most one request per interval reaches the publisher).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av

__all__ = ["TIME_BASE", "H264Remux", "close_container", "signed_delta"]

log = logging.getLogger(__name__)
TIME_BASE = Fraction(1, 90000)


def signed_delta(timestamp: int, previous: int) -> int:
    """RTP timestamps wrap at 2**32; a small step back is a reordering, kept at +1."""
    delta = (timestamp - previous) & 0xFFFFFFFF
    if delta >= 1 << 31:
        return 1
    return delta


def close_container(container: Any, what: str) -> None:
    """Close a PyAV output (it writes the trailer); a failure is logged, never raised."""
    if container is None:
        return
    try:
        container.close()
    except Exception as exc:
        log.warning("%s: closing failed: %r", what, exc)


class H264Remux:
    what = "remux"  # for the log

    def __init__(
        self, keyframe_s: float, request_keyframe: Callable[[], None], clock: Callable[[], float]
    ) -> None:
        self.keyframe_s = keyframe_s
        self.frames = 0
        self.closed = False
        self._request_keyframe = request_keyframe
        self._clock = clock
        self._container: Any = None
        self._stream: Any = None
        self._last_timestamp = 0
        self._pts = 0
        self._last_keyframe_at = 0.0

    def frame(self, data: bytes, timestamp: int, keyframe: bool) -> None:
        """A listener of a video relay: one encoded H.264 frame."""
        if self.closed:
            return
        now = self._clock()
        if self._expired(now):
            self.close()
            return
        if keyframe:
            self._last_keyframe_at = now
        elif now - self._last_keyframe_at >= self.keyframe_s:
            self._request_keyframe()
        if self._container is None:
            if not keyframe:
                return
            self._open(data, timestamp)
        self._pts += signed_delta(timestamp, self._last_timestamp)
        self._last_timestamp = timestamp
        packet = av.Packet(data)
        packet.pts = packet.dts = self._pts
        packet.time_base = TIME_BASE
        packet.stream = self._stream
        packet.is_keyframe = keyframe
        try:
            self._container.mux(packet)
            self.frames += 1
        except Exception as exc:  # FFmpeg refuses a packet (timestamps): skip it
            log.warning("%s: packet skipped: %r", self.what, exc)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        close_container(self._container, self.what)

    def _expired(self, now: float) -> bool:
        return False

    def _open(self, keyframe: bytes, timestamp: int) -> None:
        """Open the container and `_stream` from this keyframe; set `_pts` and `_last_timestamp`."""
        raise NotImplementedError
