"""HLS audio: the room's AAC (program_aac.py) remuxed into one audio-only rendition
(`audio.m3u8`) that every video variant of the master playlist refers to
(`#EXT-X-MEDIA:TYPE=AUDIO`), so no variant carries its own copy.

Opus cannot go into MPEG-TS for players such as hls.js; AAC can. The AAC is made once per
room, for HLS, recordings and restreams together: an RTMP encoder's own AAC, remuxed, or a
WHIP host's Opus transcoded once (about a hundred microseconds per 20 ms frame, on the
event loop). Audio and video are aligned by arrival: each output's first timestamp is
its offset from the room's HLS origin, not derived from RTCP sender reports, so they
agree to within the network jitter.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from .program_aac import adts
from .remux import close_container, signed_delta

__all__ = ["HlsAudio"]

log = logging.getLogger(__name__)
RATE = 48000  # program_aac.py's timestamps
TIME_BASE = Fraction(1, RATE)
NAME = "audio"


class HlsAudio:
    def __init__(
        self,
        directory: Path,
        prefix: str,
        segment_s: float,
        list_size: int,
        origin: float,
        aac: Any,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.prefix = prefix
        self.segment_s = segment_s
        self.list_size = list_size
        self.origin = origin  # the room's HLS timeline starts here (monotonic seconds)
        self.aac = aac  # the room's ProgramAac
        self.frames = 0
        self.closed = False
        self.on_started: Callable[[], None] = lambda: None
        self._clock = clock
        self._container: Any = None
        self._stream: Any = None
        self._pts = 0
        self._last_timestamp = 0

    def frame(self, data: bytes, timestamp: int) -> None:
        """A listener of the room's AAC: one raw AAC frame, timestamp at 48 kHz."""
        if self.closed:
            return
        try:
            if self._container is None:
                self._open(data, timestamp)
            self._pts += signed_delta(timestamp, self._last_timestamp)
            self._last_timestamp = timestamp
            packet = av.Packet(data)
            packet.pts = packet.dts = self._pts
            packet.time_base = TIME_BASE
            packet.stream = self._stream
            self._container.mux(packet)
            self.frames += 1
        except Exception as exc:  # a refused packet: skip it
            log.warning("hls audio: frame skipped: %r", exc)

    def _open(self, sample: bytes, timestamp: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.aac.config
        options = {
            "hls_time": str(self.segment_s),
            "hls_list_size": str(self.list_size),
            "hls_flags": "delete_segments+independent_segments+temp_file",
            "hls_segment_filename": str(self.directory / f"{self.prefix}-{NAME}-%d.ts"),
        }
        self._container = av.open(str(self.directory / f"{NAME}.m3u8"), "w", format="hls", options=options)
        probe = av.open(io.BytesIO(adts(sample, config)), format="aac")
        self._stream = self._container.add_stream_from_template(probe.streams.audio[0])
        self._stream.codec_context.extradata = config.raw
        self._stream.time_base = TIME_BASE
        probe.close()
        self._last_timestamp = timestamp
        self._pts = round((self._clock() - self.origin) * RATE)  # on the room's timeline
        self.on_started()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        close_container(self._container, "hls audio")
