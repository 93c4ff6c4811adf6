"""AAC from an RTMP encoder to Opus for WebRTC viewers: the one transcode on the RTMP path.

WebRTC players take Opus, encoders send AAC over RTMP: once per publisher (never per
viewer) each AAC frame is decoded, resampled to 48 kHz stereo in 20 ms frames and
encoded by libopus (PyAV). About 0.25 ms of CPU per 20 ms of sound (docs/media.md), so
it runs on the event loop. Timestamps: Opus frames follow each other at 960 ticks (48
kHz) from the first AAC frame's; if the encoder's timeline jumps (a pause, a restart)
by more than `RESYNC_TICKS`, the Opus timeline jumps with it, so it stays with the video.
"""

from __future__ import annotations

import logging
from typing import Any

import av

from .rtmp_flv import AacConfig

__all__ = ["AacToOpus"]

log = logging.getLogger(__name__)
RATE = 48000
FRAME = 960  # 20 ms
BITRATE = 96_000
RESYNC_TICKS = RATE // 5  # 200 ms


class AacToOpus:
    def __init__(self, config: AacConfig) -> None:
        self.config = config
        self._decoder: Any = av.CodecContext.create("aac", "r")
        self._decoder.extradata = config.raw
        self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=RATE, frame_size=FRAME)
        self._encoder: Any = av.CodecContext.create("libopus", "w")
        self._encoder.sample_rate = RATE
        self._encoder.layout = "stereo"
        self._encoder.format = "s16"
        self._encoder.bit_rate = BITRATE
        self._encoder.open()
        self._next: int | None = None  # the next Opus frame's timestamp (48 kHz)
        self._fed = 0  # input samples fed (at 48 kHz) since `_fed_from`
        self._fed_from = 0
        self.frames = 0

    def transcode(self, data: bytes, timestamp_ms: int) -> list[tuple[bytes, int]]:
        """One AAC frame in; the Opus frames it completed, with their 48 kHz timestamps."""
        at = timestamp_ms * (RATE // 1000)
        if self._next is None:
            self._next = self._fed_from = at
        elif abs(at - (self._fed_from + self._fed)) > RESYNC_TICKS:
            self._next += at - (self._fed_from + self._fed)
            self._fed_from, self._fed = at, 0
        out: list[tuple[bytes, int]] = []
        for decoded in self._decoder.decode(av.Packet(data)):
            self._fed += round(decoded.samples * RATE / (decoded.sample_rate or RATE))
            for chunk in self._resampler.resample(decoded):
                for packet in self._encoder.encode(chunk):
                    out.append((bytes(packet), self._next & 0xFFFFFFFF))
                    self._next += packet.duration or FRAME
        self.frames += len(out)
        return out
