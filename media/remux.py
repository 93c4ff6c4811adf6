"""Encoded H.264 frames muxed into a file without decoding them: the part HLS variants
and recordings share.

A `H264Remux` listens to a video relay: frames (Annex B, RTP timestamps at 90 kHz) go into
a container that its subclass opens at the first keyframe (its SPS gives the stream's
parameters), and a keyframe is asked for whenever none came for `keyframe_s` (through the
relay's gate, so at most one request per interval reaches the publisher).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av

__all__ = ["TIME_BASE", "AvRemux", "H264Remux", "Timeline", "close_container", "signed_delta"]

log = logging.getLogger(__name__)
TIME_BASE = Fraction(1, 90000)
AUDIO_TIME_BASE = Fraction(1, 48000)  # program_aac.py's timestamps
AUDIO_WAIT_S = 1.0  # an output waits this long for the room's first AAC frame before opening


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


class Timeline:
    """One stream's timestamps in an output: the first frame at its arrival's offset from
    the output's origin (so separate streams line up, as in HLS), then the RTP deltas."""

    def __init__(self, origin: float, rate: int) -> None:
        self.origin = origin
        self.rate = rate
        self.pts: int | None = None
        self._last = 0

    def at(self, timestamp: int, arrival: float) -> int:
        if self.pts is None:
            self.pts = max(0, round((arrival - self.origin) * self.rate))
        else:
            self.pts += signed_delta(timestamp, self._last)
        self._last = timestamp
        return self.pts


class AvRemux:
    """The program's H.264 and AAC (program_aac.py) remuxed into one container.

    Opened at the first video keyframe (its SPS gives the video stream; the AAC settings
    known then give the audio stream, if the room has sound). Frames carry their arrival
    time (`clock()` for the caller on the event loop, the enqueue time for a thread).
    A subclass makes the container (`_container`) and may add rules (`_keyframe`).
    """

    what = "remux"

    def __init__(self, aac: Any = None) -> None:
        self.aac = aac  # a ProgramAac, or None for video only
        self.frames = 0
        self.audio_frames = 0
        self.closed = False
        self.duration_s = 0.0
        self._container: Any = None
        self._video: Any = None
        self._audio: Any = None
        self._timelines: dict[str, Timeline] = {}
        self._first_at: float | None = None
        self.opened_at: float | None = None

    def video(self, data: bytes, timestamp: int, keyframe: bool, arrival: float) -> None:
        if self.closed:
            return
        if self._container is None:
            if self._first_at is None:
                self._first_at = arrival
            if not keyframe or (self._sound_pending() and arrival - self._first_at < AUDIO_WAIT_S):
                return
            self._open(data, arrival)
        self._mux(self._video, "video", data, timestamp, arrival, keyframe)

    def _sound_pending(self) -> bool:
        """The room has sound but its AAC settings are not known yet (its first frame)."""
        return self.aac is not None and self.aac.has_source and self.aac.sample is None

    def audio(self, data: bytes, timestamp: int, arrival: float) -> None:
        if self.closed or self._audio is None:
            return
        self._mux(self._audio, "audio", data, timestamp, arrival, True)

    def _open(self, keyframe: bytes, arrival: float) -> None:
        self.opened_at = time.time()  # the wall-clock time of the output's first picture
        self._container = self._make_container()
        video_probe = av.open(io.BytesIO(keyframe), format="h264")
        self._video = self._container.add_stream_from_template(video_probe.streams.video[0])
        self._video.time_base = TIME_BASE
        video_probe.close()
        self._timelines = {"video": Timeline(arrival, 90000), "audio": Timeline(arrival, 48000)}
        config = self.aac.config if self.aac is not None else None
        if config is not None and self.aac.sample is not None:
            self._audio = self._container.add_stream_from_template(_aac_template(config, self.aac.sample))
            self._audio.codec_context.extradata = config.raw
            self._audio.time_base = AUDIO_TIME_BASE

    def _mux(self, stream: Any, kind: str, data: bytes, timestamp: int, arrival: float, key: bool) -> None:
        timeline = self._timelines[kind]
        if timeline.pts is None and arrival < timeline.origin:
            return  # from before the output began
        packet = av.Packet(data)
        packet.pts = packet.dts = timeline.at(timestamp, arrival)
        packet.time_base = TIME_BASE if kind == "video" else AUDIO_TIME_BASE  # muxers may change the stream's
        packet.stream = stream
        packet.is_keyframe = key
        self._write(packet)
        if kind == "video":
            self.frames += 1
            self.duration_s = float(packet.pts * TIME_BASE)
        else:
            self.audio_frames += 1

    def _write(self, packet: Any) -> None:
        try:
            self._container.mux(packet)
        except Exception as exc:  # FFmpeg refused the packet (its timestamps): skip it
            log.warning("%s: packet skipped: %r", self.what, exc)

    def _make_container(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        close_container(self._container, self.what)


def _aac_template(config: Any, sample: bytes) -> Any:
    """An AAC stream to copy settings from: FFmpeg's probe of a frame of the program's."""
    from .program_aac import adts

    probe = av.open(io.BytesIO(adts(sample, config)), format="aac")
    return probe.streams.audio[0]
