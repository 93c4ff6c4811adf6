"""HLS for the crowd: the host program's H.264 remuxed (never re-encoded) into MPEG-TS segments.

An `HlsOutput` (one variant) listens to one video relay of the host: the program's (so
it follows failovers: the program's timestamps are already spliced) and one per further
rendition the host publishes (ABR rungs). Each encoded frame becomes an `av.Packet`
muxed by FFmpeg's `hls` muxer (through PyAV), which cuts a segment at the first keyframe
after `segment_s`, keeps `list_size` segments in `<rung>.m3u8` and deletes older ones.
`HlsRoom` holds a room's variants and writes `master.m3u8` listing each once it started.
When the publisher's keyframes are further apart than a segment, one is asked for
(through the relay's keyframe gate). Files land in `<hls_dir>/<room>/`; the node serves
them (`hls_routes.py`). Segment names carry the output's id, so a name is never reused
and a CDN may cache segments for good.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av

from .bitstream import h264_nal_units
from .remux import TIME_BASE, H264Remux

__all__ = ["HlsOutput", "HlsRoom", "remove_directory", "room_directory"]

log = logging.getLogger(__name__)


def room_directory(root: str, room: str) -> Path | None:
    """Where a room's HLS files live; None for names that would leave `root`."""
    if room in (".", "..") or "/" in room:
        return None
    return Path(root) / room


class HlsRoom:
    """A room's HLS variants (one per rung), its audio rendition (hls_audio.py), and its
    master playlist. `origin` starts the room's timeline: every output's first timestamp
    is its offset from it, so separate outputs (variants, audio) line up."""

    def __init__(self, directory: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self.origin = clock()
        self.variants: dict[str, tuple[int, str, str]] = {}  # rung -> (bandwidth, resolution, codecs)
        self.outputs: list[HlsOutput] = []
        self.audio: Any = None  # an HlsAudio, once the program has Opus audio
        self.extra: list[HlsOutput] = []  # outputs not in the master playlist (the composite)
        self._audio_started = False

    def add(self, output: HlsOutput) -> None:
        output.on_started = self._started
        output.origin = self.origin
        self.outputs.append(output)

    def add_audio(self, audio: Any) -> None:
        self.audio = audio
        audio.on_started = self._audio_began

    def _started(self, output: HlsOutput, width: int, height: int, codecs: str) -> None:
        self.variants[output.variant] = (output.bandwidth, f"{width}x{height}", codecs)
        self._write_master()

    def _audio_began(self) -> None:
        self._audio_started = True
        self._write_master()

    def _write_master(self) -> None:
        head = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        audio = ""
        if self._audio_started:
            head += '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="program",DEFAULT=YES,AUTOSELECT=YES'
            head += ',URI="audio.m3u8"\n'
            audio = ',AUDIO="aac"'
        ordered = sorted(self.outputs, key=lambda o: -o.bandwidth)
        lines = []
        for output in ordered:
            if output.variant in self.variants:
                bandwidth, resolution, codecs = self.variants[output.variant]
                codecs += ",mp4a.40.2" if audio else ""
                stream = f'BANDWIDTH={bandwidth},RESOLUTION={resolution},CODECS="{codecs}"{audio}'
                lines.append(f"#EXT-X-STREAM-INF:{stream}\n{output.variant}.m3u8\n")
        temporary = self.directory / "master.m3u8.tmp"
        temporary.write_text(head + "".join(lines))
        os.replace(temporary, self.directory / "master.m3u8")

    def close(self) -> None:
        """The program ended: finish the files (the muxers end each playlist with
        `#EXT-X-ENDLIST`); the plane removes them a little later (`remove_directory`)."""
        for output in self.outputs:
            output.close()
        for output in self.extra:
            output.close()
        if self.audio is not None:
            self.audio.close()


def remove_directory(directory: Path) -> None:
    """An ended program's HLS files go (the stream is over)."""
    shutil.rmtree(directory, ignore_errors=True)


class HlsOutput(H264Remux):
    def __init__(
        self,
        directory: Path,
        variant: str,
        bandwidth: int,
        segment_s: float,
        list_size: int,
        request_keyframe: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(segment_s, request_keyframe, clock)
        self.what = f"hls {variant}"
        self.directory = directory
        self.variant = variant  # the rung's name: "720p"
        self.bandwidth = bandwidth
        self.on_started: Callable[[HlsOutput, int, int, str], None] = lambda *started: None
        self.segment_s = segment_s
        self.list_size = list_size
        self.prefix = secrets.token_hex(4)
        self.origin: float | None = None  # the room's timeline origin (HlsRoom.add sets it)

    def _open(self, keyframe: bytes, timestamp: int) -> None:
        """Start at a keyframe: its SPS gives the stream's size and codec string."""
        self.directory.mkdir(parents=True, exist_ok=True)
        probe = av.open(io.BytesIO(keyframe), format="h264")
        template = probe.streams.video[0]
        options = {
            "hls_time": str(self.segment_s),
            "hls_list_size": str(self.list_size),
            "hls_flags": "delete_segments+independent_segments+temp_file",
            "hls_segment_filename": str(self.directory / f"{self.prefix}-{self.variant}-%d.ts"),
        }
        playlist = str(self.directory / f"{self.variant}.m3u8")
        self._container = av.open(playlist, "w", format="hls", options=options)
        self._stream = self._container.add_stream_from_template(template)
        self._stream.time_base = TIME_BASE
        self._started(template.codec_context.width, template.codec_context.height, keyframe)
        probe.close()
        self._last_timestamp = timestamp
        self._pts = round((self._clock() - self.origin) * 90000) if self.origin is not None else 0

    def _started(self, width: int, height: int, keyframe: bytes) -> None:
        sps = next((nal for nal in h264_nal_units(keyframe) if nal and nal[0] & 0x1F == 7), b"")
        codecs = f"avc1.{sps[1:4].hex()}" if len(sps) >= 4 else "avc1.42e01f"
        self.on_started(self, width, height, codecs)
