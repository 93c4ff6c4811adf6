"""Co-stream composite: the host and the stage guests in one picture, for the HLS output.

While the host publishes (and `media.composite_layout` is not "off"), the room's media
process decodes each stage member's video **once** (whatever its codec), keeps each one's
latest picture, and at `composite_fps` composes them into one canvas and encodes it
**once** (x264 ultrafast/zerolatency) into a relay that an HLS output
(`composite.m3u8`) remuxes. WebRTC viewers keep the separate tracks. Layouts:

* `side_by_side`: equal tiles in a row (the host first, then guests by slot);
* `host_large`: the host on the left two thirds, guests stacked on the right third.

Tiles keep their place; a member's picture is scaled (one reformatter per member) to fit
its tile, letterboxed on black. The work runs in one thread per room, off the event
loop; encoded frames go back with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
from av.video.reformatter import VideoReformatter

from .relay import TrackRelay

__all__ = ["LAYOUTS", "Compositor", "tiles"]

log = logging.getLogger(__name__)
LAYOUTS = ("off", "side_by_side", "host_large")
TIME_BASE = Fraction(1, 90000)
BLACK = (16, 128, 128)
QUEUE_FRAMES = 120  # encoded input frames waiting for the thread, all members together

Tile = tuple[int, int, int, int]  # x, y, width, height (even numbers)


def tiles(layout: str, count: int, width: int, height: int) -> list[Tile]:
    """Where each of `count` members goes (member 0 is the host)."""
    if count <= 1:
        return [(0, 0, width, height)]
    if layout == "host_large":
        big = width * 2 // 3 // 2 * 2
        each = height // (count - 1) // 2 * 2
        return [(0, 0, big, height)] + [(big, i * each, width - big, each) for i in range(count - 1)]
    each = width // count // 2 * 2
    return [(i * each, 0, each, height) for i in range(count)]


class _Member:
    def __init__(self, mime_type: str) -> None:
        codec = "h264" if mime_type.lower() == "video/h264" else "vp8"
        self.decoder: Any = av.CodecContext.create(codec, "r")
        self.decoder.thread_count = 1
        self.reformatter = VideoReformatter()
        self.picture: Any = None
        self.started = False  # decoding starts at a keyframe


class Compositor:
    def __init__(
        self,
        relay: TrackRelay,
        layout: str,
        size: tuple[int, int],
        fps: float,
        bitrate_bps: int,
        loop: asyncio.AbstractEventLoop,
        origin: float,
    ) -> None:
        self.relay = relay  # the output: a relay like a published track's
        self.layout = layout
        self.width, self.height = size
        self.fps = fps
        self.bitrate_bps = bitrate_bps
        self.frames = 0
        self.closed = False
        self._loop = loop
        self._origin = origin
        self._order: list[str] = []  # slots, the host first
        self._sources: dict[str, TrackRelay] = {}
        self._listeners: dict[str, Callable[[bytes, int, bool], None]] = {}
        # (slot, encoded frame, keyframe, codec: given once when the member joins), or None: stop
        self._queue: queue.Queue[tuple[str, bytes, bool, str] | None] = queue.Queue(QUEUE_FRAMES)
        self._members: dict[str, _Member] = {}  # the thread's own
        self._force_keyframe = True
        relay.request_keyframe = self._want_keyframe
        self._thread = threading.Thread(target=self._run, name="liveroom-composite", daemon=True)
        self._thread.start()

    def _want_keyframe(self) -> None:
        self._force_keyframe = True

    # -- the event loop's side ----------------------------------------------------------

    def add(self, slot: str, source: TrackRelay) -> None:
        """A stage member's video joins the picture (the host first)."""
        if slot in self._sources or self.closed:
            return
        self._order.append(slot)
        self._sources[slot] = source
        listener = self._listener(slot, source.mime_type)
        self._listeners[slot] = listener
        source.listeners.append(listener)
        source.keyframe_wanted()  # its decoder starts at a keyframe

    def remove(self, slot: str) -> None:
        """A member left the stage: its tile goes, the others move up."""
        source, listener = self._sources.pop(slot, None), self._listeners.pop(slot, None)
        if slot in self._order:
            self._order.remove(slot)
        if source is not None and listener in source.listeners:
            source.listeners.remove(listener)

    def _listener(self, slot: str, mime_type: str) -> Callable[[bytes, int, bool], None]:
        self._put((slot, b"", False, mime_type))  # tells the thread the member's codec

        def frame(data: bytes, timestamp: int, keyframe: bool) -> None:
            self._put((slot, data, keyframe, ""))

        return frame

    def _put(self, item: tuple[str, bytes, bool, str] | None) -> None:
        with contextlib.suppress(queue.Full):  # the thread is behind: this frame is lost
            self._queue.put_nowait(item)

    def close(self) -> None:
        for slot in list(self._sources):
            self.remove(slot)
        self.closed = True
        while True:
            try:
                self._queue.put_nowait(None)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()

    # -- the composite's thread -----------------------------------------------------------

    def _run(self) -> None:
        encoder = self._encoder()
        interval, next_at = 1 / self.fps, time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, next_at - time.monotonic()))
            except queue.Empty:
                item = ("", b"", False, "")
            if item is None:
                return
            if item[0]:
                self._decode(*item)
            if time.monotonic() >= next_at:
                next_at += interval
                if not self._emit(encoder):
                    return

    def _decode(self, slot: str, data: bytes, keyframe: bool, mime_type: str) -> None:
        if mime_type:
            self._members[slot] = _Member(mime_type)
            return
        member = self._members.get(slot)
        if member is None or (not member.started and not keyframe):
            return
        member.started = True
        try:
            for picture in member.decoder.decode(av.Packet(data)):
                member.picture = picture
        except av.FFmpegError as exc:
            log.debug("composite: %s frame skipped: %r", slot, exc)

    def _emit(self, encoder: Any) -> bool:
        canvas = av.VideoFrame(self.width, self.height, "yuv420p")
        for plane, value in zip(canvas.planes, BLACK, strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        order = [slot for slot in list(self._order) if slot in self._members]
        for slot, tile in zip(order, tiles(self.layout, len(order), self.width, self.height), strict=False):
            member = self._members[slot]
            if member.picture is not None:
                _blit(canvas, member.reformatter, member.picture, tile)
        now = time.monotonic()
        canvas.pts, canvas.time_base = round((now - self._origin) * 90000), TIME_BASE
        if self._force_keyframe:
            self._force_keyframe = False
            canvas.pict_type = av.video.frame.PictureType.I
        try:
            for packet in encoder.encode(canvas):
                timestamp = (packet.pts or 0) & 0xFFFFFFFF
                self._loop.call_soon_threadsafe(self._deliver, bytes(packet), timestamp)
        except RuntimeError:  # the event loop is closed: the server is stopping
            return False
        self.frames += 1
        return True

    def _deliver(self, data: bytes, timestamp: int) -> None:
        if not self.relay.ended:
            self.relay.push(data, timestamp)

    def _encoder(self) -> Any:
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt = self.width, self.height, "yuv420p"
        codec.time_base, codec.framerate = TIME_BASE, Fraction(round(self.fps))
        codec.bit_rate, codec.thread_count = self.bitrate_bps, 1
        kbps, keyint = self.bitrate_bps // 1000, round(self.fps * 2)
        params = f"keyint={keyint}:scenecut=0:repeat-headers=1:vbv-maxrate={kbps}:vbv-bufsize={kbps}"
        codec.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                         "forced-idr": "1", "x264-params": params}  # fmt: skip
        return codec


def _blit(canvas: Any, reformatter: VideoReformatter, picture: Any, tile: Tile) -> None:
    """Scale `picture` into `tile` (keeping its aspect, centred) and copy it onto the canvas."""
    x, y, width, height = tile
    scale = min(width / picture.width, height / picture.height)
    fit_w, fit_h = max(2, int(picture.width * scale) // 2 * 2), max(2, int(picture.height * scale) // 2 * 2)
    x, y = x + (width - fit_w) // 2 // 2 * 2, y + (height - fit_h) // 2 // 2 * 2
    scaled = reformatter.reformat(picture, fit_w, fit_h, "yuv420p")
    for index, (target, source) in enumerate(zip(canvas.planes, scaled.planes, strict=True)):
        shift = 0 if index == 0 else 1
        _copy(target, source, x >> shift, y >> shift, fit_w >> shift, fit_h >> shift)


def _copy(target: Any, source: Any, x: int, y: int, width: int, height: int) -> None:
    """Rows of `source` into `target` at (x, y): a memoryview copy per row, no numpy."""
    into, out_stride = memoryview(target), target.line_size
    rows, in_stride = memoryview(source), source.line_size
    for row in range(height):
        start = (y + row) * out_stride + x
        into[start : start + width] = rows[row * in_stride : row * in_stride + width]
