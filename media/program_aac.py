"""The room program's sound as AAC, made once per room for the outputs that take AAC
(restreams over RTMP, recordings): the encoder's own AAC when the program comes from
RTMP (remuxed, never re-encoded), else the program's Opus transcoded once.

An RTMP publisher's session carries its AAC in a relay of kind "aac" beside the Opus
(rtmp_session.py); it goes through the host's two paths like the other tracks. When such
a relay exists its frames are passed on as they are; while it is silent (a WHIP path on
air) the Opus is transcoded, to the same sample rate and channels, so every output's one
AAC stream goes on. `config` is fixed by the first frame: outputs open with it.
Timestamps are at 48 kHz in the program's timeline (spliced across failovers).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import av

from .relay import TrackRelay
from .rtmp_flv import AacConfig

__all__ = ["ProgramAac", "adts"]

log = logging.getLogger(__name__)
RATE = 48000
SOURCE_SILENT_S = 0.5  # the AAC relay is this long without a frame: transcode the Opus
LC_48K_STEREO = AacConfig(b"\x11\x90", 48000, 2)
SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)

AacListener = Callable[[bytes, int], None]  # (raw AAC frame, 48 kHz timestamp)


def adts(frame: bytes, config: AacConfig) -> bytes:
    """One raw AAC frame with an ADTS header (for FFmpeg's aac probe)."""
    profile = max(0, (config.raw[0] >> 3) - 1)
    index = SAMPLE_RATES.index(config.sample_rate)
    size = len(frame) + 7
    header = bytes(
        [
            0xFF,
            0xF1,
            (profile << 6) | (index << 2) | (config.channels >> 2),
            ((config.channels & 3) << 6) | (size >> 11),
            (size >> 3) & 0xFF,
            ((size & 7) << 5) | 0x1F,
            0xFC,
        ]
    )
    return header + frame


class ProgramAac:
    def __init__(
        self, program: Mapping[str, TrackRelay], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._source = program.get("aac")
        self._opus = program.get("audio")
        self.listeners: list[AacListener] = []
        self.config: AacConfig | None = None
        self.sample: bytes | None = None  # the latest frame (outputs probe their settings from it)
        self.transcoded = 0  # frames made from Opus
        self._source_at = float("-inf")
        self._encoder: _OpusToAac | None = None
        if self._source is not None:
            self._source.listeners.append(self._aac)
        if self._opus is not None and self._opus.mime_type.lower() == "audio/opus":
            self._opus.listeners.append(self._from_opus)

    @property
    def has_source(self) -> bool:
        """The program has sound to make AAC from."""
        return self._source is not None or self._opus is not None

    def close(self) -> None:
        for relay, listener in ((self._source, self._aac), (self._opus, self._from_opus)):
            if relay is not None and listener in relay.listeners:
                relay.listeners.remove(listener)

    def _aac(self, data: bytes, timestamp: int, keyframe: bool) -> None:
        assert self._source is not None
        if self.config is None:
            self.config = self._source.codec
        if self._source.codec != self.config:
            return  # another encoder's AAC settings: the Opus stands in
        self._source_at = self._clock()
        self._emit(data, timestamp)

    def _from_opus(self, data: bytes, timestamp: int, keyframe: bool) -> None:
        if self._clock() - self._source_at < SOURCE_SILENT_S:
            return
        if self.config is None:
            if self._source is not None:
                return  # an RTMP program: its own AAC settings come with its first frame
            self.config = LC_48K_STEREO
        try:
            for frame, at in self._transcode(data, timestamp):
                self.transcoded += 1
                self._emit(frame, at)
        except Exception as exc:  # a broken Opus frame: skip it
            log.warning("program aac: frame skipped: %r", exc)

    def _transcode(self, data: bytes, timestamp: int) -> list[tuple[bytes, int]]:
        assert self.config is not None
        if self._encoder is None:
            self._encoder = _OpusToAac(self.config, timestamp)
        return self._encoder.transcode(data, timestamp)

    def _emit(self, data: bytes, timestamp: int) -> None:
        self.sample = data
        for listener in self.listeners:
            listener(data, timestamp)


class _OpusToAac:
    """Opus decoded, resampled to the output's rate in 1024-sample frames, AAC-LC encoded."""

    def __init__(self, config: AacConfig, timestamp: int) -> None:
        self._decoder: Any = av.CodecContext.create("opus", "r")
        self._decoder.sample_rate = RATE
        layout = "stereo" if config.channels == 2 else "mono"
        self._resampler = av.AudioResampler(
            format="fltp", layout=layout, rate=config.sample_rate, frame_size=1024
        )
        self._encoder: Any = av.CodecContext.create("aac", "w")
        self._encoder.sample_rate = config.sample_rate
        self._encoder.layout = layout
        self._encoder.format = "fltp"
        self._encoder.bit_rate = 128_000
        self._encoder.open()
        self._scale = RATE / config.sample_rate
        self._next = timestamp

    def transcode(self, data: bytes, timestamp: int) -> list[tuple[bytes, int]]:
        out = []
        for decoded in self._decoder.decode(av.Packet(data)):
            for chunk in self._resampler.resample(decoded):
                for packet in self._encoder.encode(chunk):
                    out.append((bytes(packet), self._next & 0xFFFFFFFF))
                    self._next += round((packet.duration or 1024) * self._scale)
        return out
