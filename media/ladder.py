"""A server-side ABR ladder for a host who publishes one H.264 stream (`media.transcode_ladder`).

The room's media process decodes the host program's video **once** and encodes each
lower rung of `media.abr_ladder` **once** (x264 ultrafast/zerolatency, one reformatter
per rung), never per viewer. Each rung's output goes into its own `TrackRelay`, exactly
like a rendition the host publishes as a separate track, so the per-viewer controller,
`?quality=` pinning and the HLS variants work on it unchanged. The top rung is the
program itself, forwarded, never re-encoded.

The work runs in one thread per room, off the event loop (PyAV releases the GIL while
FFmpeg decodes, scales and encodes). Frames reach it through a bounded queue; when the
thread falls behind, the backlog is dropped and decoding resumes at the next keyframe
of the source (one is asked for, through the program relay's gate). Encoded frames go
back to the event loop with `call_soon_threadsafe` and keep the source's RTP timestamps,
so every rung shares the program's timeline.

A rung's keyframe requests (joining or lagging viewers, PLI/FIR, HLS segment cuts) never
reach the host: the next frame of that rung is simply encoded as an IDR. Each rung also
starts an IDR wherever the source has one, so the rungs' segments line up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
from av.video.reformatter import VideoReformatter

from .abr import Rung
from .relay import TrackRelay
from .remux import TIME_BASE, signed_delta

__all__ = ["LADDER_CODECS", "LadderTranscoder", "RungEncoder", "rung_size"]

log = logging.getLogger(__name__)
MASK = 0xFFFFFFFF
# Codecs this process made for ladders (a forwarding-only room adds none); /metrics shows them.
LADDER_CODECS = {"decoder": 0, "encoder": 0}


def rung_size(rung_height: int, width: int, height: int) -> tuple[int, int]:
    """A rung's picture: its height (never above the source's), the source's aspect, even sizes."""
    out_height = min(rung_height, height) // 2 * 2
    out_width = max(2, round(width * out_height / height) // 2 * 2)
    return out_width, max(2, out_height)


class RungEncoder:
    """One lower rung: a reformatter and an x264 encoder at the rung's size and bitrate."""

    def __init__(self, rung: Rung, relay: TrackRelay, keyframe_interval_frames: int) -> None:
        self.rung = rung
        self.relay = relay
        self.keyframe_interval_frames = keyframe_interval_frames
        self.force_keyframe = True  # set from the event loop (a bool store is atomic), read by the thread
        self.frames = 0
        self._reformatter = VideoReformatter()
        self._codec: Any = None
        self._size = (0, 0)
        relay.request_keyframe = self.want_keyframe

    def want_keyframe(self) -> None:
        self.force_keyframe = True

    def encode(self, picture: av.VideoFrame, source_keyframe: bool) -> list[tuple[bytes, int]]:
        """(Annex-B bytes, pts) of the encoded frames; runs on the ladder's thread."""
        if self._codec is None:
            self._open(picture.width, picture.height)
        width, height = self._size
        scaled = self._reformatter.reformat(picture, width, height, "yuv420p")
        scaled.pts, scaled.time_base = picture.pts, TIME_BASE
        if self.force_keyframe or source_keyframe:
            self.force_keyframe = False
            scaled.pict_type = av.video.frame.PictureType.I
        self.frames += 1
        return [(bytes(packet), packet.pts or 0) for packet in self._codec.encode(scaled)]

    def _open(self, width: int, height: int) -> None:
        self._size = rung_size(self.rung.height, width, height)
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height = self._size
        codec.pix_fmt, codec.time_base, codec.framerate = "yuv420p", TIME_BASE, Fraction(30)
        codec.bit_rate, codec.thread_count = self.rung.bitrate_bps, 1
        kbps = self.rung.bitrate_bps // 1000
        keyint = self.keyframe_interval_frames
        # A quarter-second VBV buffer bounds an IDR to about a quarter second of the rung's bits:
        # frames go out unpaced, and a bigger burst overflows a narrow link's queue.
        params = f"keyint={keyint}:scenecut=0:repeat-headers=1:vbv-maxrate={kbps}:vbv-bufsize={kbps // 4}"
        codec.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",
            "forced-idr": "1",
            "x264-params": params,
        }
        self._codec = codec
        LADDER_CODECS["encoder"] += 1


class LadderTranscoder:
    """One room's ladder: frames of the program video in, one relay per lower rung out."""

    def __init__(
        self,
        rungs: list[RungEncoder],
        loop: asyncio.AbstractEventLoop,
        request_source_keyframe: Callable[[], None],
        queue_frames: int,
    ) -> None:
        self.rungs = rungs
        self.frames_dropped = 0
        self._loop = loop
        self._request_source_keyframe = request_source_keyframe
        self._queue: queue.Queue[tuple[bytes, int, bool] | None] = queue.Queue(queue_frames)
        self._resync = True  # the decoder starts (and restarts after a drop) at a source keyframe
        self._first_timestamp: int | None = None
        self._last_timestamp = 0
        self._pts = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="liveroom-ladder", daemon=True)
        self._thread.start()

    @property
    def relays(self) -> list[TrackRelay]:
        return [rung.relay for rung in self.rungs]

    def frame(self, data: bytes, timestamp: int, keyframe: bool) -> None:
        """A listener of the program's video relay: one encoded frame (event loop)."""
        if self._closed:
            return
        if self._resync and not keyframe:
            return
        self._resync = False
        if self._first_timestamp is None:
            self._first_timestamp = self._last_timestamp = timestamp
        self._pts += signed_delta(timestamp, self._last_timestamp)
        self._last_timestamp = timestamp
        try:
            self._queue.put_nowait((data, self._pts, keyframe))
        except queue.Full:
            self._drop_backlog()

    def _drop_backlog(self) -> None:
        """The thread is behind: skip what waits and restart at the source's next keyframe."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            self.frames_dropped += 1
        self.frames_dropped += 1
        self._resync = True
        self._request_source_keyframe()

    def close(self) -> None:
        """The program ended: the thread stops after the frame it is on."""
        self._closed = True
        while True:
            try:
                self._queue.put_nowait(None)
                return
            except queue.Full:
                self._drop_one()

    def _drop_one(self) -> None:
        with contextlib.suppress(queue.Empty):
            self._queue.get_nowait()

    # -- the ladder's thread ------------------------------------------------------------

    def _run(self) -> None:
        decoder: Any = av.CodecContext.create("h264", "r")
        decoder.thread_count = 1
        LADDER_CODECS["decoder"] += 1
        while (item := self._queue.get()) is not None:
            data, pts, keyframe = item
            try:
                self._transcode(decoder, data, pts, keyframe)
            except av.FFmpegError as exc:  # a broken frame: skip it, the next keyframe repairs
                log.debug("ladder: frame skipped: %r", exc)
            except RuntimeError:  # the event loop is closed: the server is stopping
                return

    def _transcode(self, decoder: Any, data: bytes, pts: int, keyframe: bool) -> None:
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = TIME_BASE
        for picture in decoder.decode(packet):
            for rung in self.rungs:
                for encoded, out_pts in rung.encode(picture, keyframe):
                    self._loop.call_soon_threadsafe(self._deliver, rung.relay, encoded, out_pts)

    def _deliver(self, relay: TrackRelay, data: bytes, pts: int) -> None:
        if not relay.ended and self._first_timestamp is not None:
            relay.push(data, (self._first_timestamp + pts) & MASK)
