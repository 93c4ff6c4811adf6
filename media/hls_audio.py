"""HLS audio: the host program's Opus decoded and encoded to AAC **once per room** (PyAV), as one
audio-only rendition (`audio.m3u8`) that every video variant of the master playlist refers
to (`#EXT-X-MEDIA:TYPE=AUDIO`), so no variant re-encodes it.

Opus cannot go into MPEG-TS for players such as hls.js; AAC can. The work is small (about
a hundred microseconds per 20 ms Opus frame: decode, resample to 1024-sample frames,
encode at `BITRATE`), so it runs on the event loop. Audio and video are aligned by
arrival: each output's first timestamp is its offset from the room's HLS origin, not
derived from RTCP sender reports, so they agree to within the network jitter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from .remux import close_container, signed_delta

__all__ = ["HlsAudio"]

log = logging.getLogger(__name__)
RATE = 48000
TIME_BASE = Fraction(1, RATE)
BITRATE = 128_000
NAME = "audio"


class HlsAudio:
    def __init__(
        self,
        directory: Path,
        prefix: str,
        segment_s: float,
        list_size: int,
        origin: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.prefix = prefix
        self.segment_s = segment_s
        self.list_size = list_size
        self.origin = origin  # the room's HLS timeline starts here (monotonic seconds)
        self.frames = 0
        self.closed = False
        self.on_started: Callable[[], None] = lambda: None
        self._clock = clock
        self._decoder: Any = None
        self._resampler: Any = None
        self._container: Any = None
        self._stream: Any = None
        self._pts = 0
        self._last_timestamp = 0

    def frame(self, data: bytes, timestamp: int, keyframe: bool) -> None:
        """A listener of the program's audio relay: one Opus frame, RTP timestamp at 48 kHz."""
        if self.closed:
            return
        try:
            if self._container is None:
                self._open(timestamp)
            self._pts += signed_delta(timestamp, self._last_timestamp)
            self._last_timestamp = timestamp
            self._transcode(data)
        except Exception as exc:  # a broken frame or a refused packet: skip it
            log.warning("hls audio: frame skipped: %r", exc)

    def _open(self, timestamp: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._decoder = av.CodecContext.create("opus", "r")
        self._decoder.sample_rate = RATE
        self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=RATE, frame_size=1024)
        options = {
            "hls_time": str(self.segment_s),
            "hls_list_size": str(self.list_size),
            "hls_flags": "delete_segments+independent_segments+temp_file",
            "hls_segment_filename": str(self.directory / f"{self.prefix}-{NAME}-%d.ts"),
        }
        self._container = av.open(str(self.directory / f"{NAME}.m3u8"), "w", format="hls", options=options)
        self._stream = self._container.add_stream("aac", rate=RATE)
        self._stream.bit_rate = BITRATE
        self._last_timestamp = timestamp
        self._pts = round((self._clock() - self.origin) * RATE)  # on the room's timeline
        self.on_started()

    def _transcode(self, data: bytes) -> None:
        packet = av.Packet(data)
        packet.pts = packet.dts = self._pts
        packet.time_base = TIME_BASE
        for decoded in self._decoder.decode(packet):
            decoded.pts, decoded.time_base = self._pts, TIME_BASE
            for chunk in self._resampler.resample(decoded):
                for encoded in self._stream.encode(chunk):
                    self._container.mux(encoded)
                    self.frames += 1

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        close_container(self._container, "hls audio")
