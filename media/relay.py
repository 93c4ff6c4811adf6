"""Forwarding one published track to many viewers, encoded, never decoded or re-encoded.

A `TrackRelay` receives each encoded frame of a publisher's track once, cuts it into RTP
payloads once, and hands the same `ForwardedFrame` to every viewer's `ViewerTrack`.
Each viewer's aiortc `RTCRtpSender` then only stamps what must differ per viewer (SSRC,
sequence number, timestamp offset, SRTP) and keeps its own history for NACKs.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .bitstream import H264ParameterSets, is_keyframe, packetize
from .keyframes import KeyframeGate

__all__ = ["ForwardedFrame", "RelayStats", "TrackRelay", "ViewerTrack"]


@dataclass(frozen=True, slots=True)
class ForwardedFrame:
    """One encoded frame, already cut into RTP payloads; shared by every viewer."""

    payloads: list[bytes]
    timestamp: int  # in the codec's RTP clock, from the publisher's first frame
    keyframe: bool
    size: int


@dataclass(slots=True)
class RelayStats:
    frames: int = 0
    bytes: int = 0
    keyframes: int = 0
    last_keyframe_at: float | None = None
    keyframe_interval_s: float | None = None


class ViewerTrack(MediaStreamTrack):
    """What one viewer's sender reads: a bounded queue of shared encoded frames.

    When the queue is full the viewer has fallen behind; its backlog is dropped and it
    resumes at the next keyframe (for audio, the oldest frame is dropped instead).
    """

    def __init__(self, relay: TrackRelay, limit: int) -> None:
        super().__init__()
        self.kind = relay.kind
        self._relay = relay
        self._limit = limit
        self._frames: collections.deque[ForwardedFrame | None] = collections.deque()
        self._ready = asyncio.Event()
        self.waiting_for_keyframe = relay.kind == "video"
        self.frames_dropped = 0
        # Set by the session when `media.fast_send` is on: once aiortc's sender starts
        # reading this track, frames go straight to the viewer (see fastpath.py).
        self.make_direct: Callable[[], Callable[[ForwardedFrame], None]] | None = None
        self.direct: Callable[[ForwardedFrame], None] | None = None
        # Rendition switching (ABR): the relay this track moves to at its next keyframe,
        # and the timestamp shift that keeps the viewer's timeline continuous after a move.
        self._pending: TrackRelay | None = None
        self._shift = 0
        self._last_out = 0
        self._last_at = 0.0
        self.moves = 0
        # Told when a move completes (the target's keyframe goes out): (old relay, new relay, keyframe).
        self.on_moved: Callable[[TrackRelay, TrackRelay, ForwardedFrame], None] = lambda old, new, key: None
        # Told when the old rendition's packets become worthless to the viewer (a move cut it
        # off, or completed): what was sent of it need not be sent again (NACKs).
        self.on_left: Callable[[], None] = lambda: None

    @property
    def relay(self) -> TrackRelay:
        return self._relay

    @property
    def keyframe_source(self) -> TrackRelay:
        """Where this viewer's next keyframe comes from (its PLI/FIR go there)."""
        return self._pending or self._relay

    def move_to(self, relay: TrackRelay, cut: bool = False) -> None:
        """Play another rendition from its next keyframe on. The current one plays until
        then, unless `cut`: a congested viewer stops getting it at once, so that what its
        link still holds drains before the new rendition's keyframe comes (the picture
        holds for that moment instead of feeding a full queue)."""
        if relay is self._pending or relay.ended:
            return
        if relay is self._relay:
            self._stay()
            return
        if self._pending is not None:
            self._pending.unsubscribe(self)
        self._pending = relay
        relay.viewers.add(self)
        if cut:
            self._relay.unsubscribe(self)
            self.on_left()
        relay.keyframe_wanted(for_move=True)

    def _stay(self) -> None:
        """Called back before a move completed: no move (after a cut, from its next keyframe)."""
        if self._pending is None:
            return
        self._pending.unsubscribe(self)
        self._pending = None
        if self not in self._relay.viewers:  # cut off: it resumes at a keyframe
            self._relay.viewers.add(self)
            self.waiting_for_keyframe = True
            self._relay.keyframe_wanted(for_move=True)

    def offer(self, frame: ForwardedFrame, source: TrackRelay | None = None) -> None:
        if self._pending is not None and source is not None and source is not self._relay:
            if source is not self._pending:
                return
            if not frame.keyframe:
                source.keyframe_wanted(for_move=True)  # gated; asks again if one was absorbed
                return
            self._complete_move(frame)
        if self._shift:  # only a viewer that moved pays for a copy
            frame = dataclasses.replace(frame, timestamp=(frame.timestamp + self._shift) & 0xFFFFFFFF)
        self._last_out, self._last_at = frame.timestamp, time.monotonic()
        self._deliver(frame)

    def _complete_move(self, keyframe: ForwardedFrame) -> None:
        """The target rendition's keyframe: leave the old relay, splice the timestamps."""
        assert self._pending is not None
        self._relay.unsubscribe(self)
        old, self._relay, self._pending = self._relay, self._pending, None
        step = max(3000, round((time.monotonic() - self._last_at) * 90000)) if self._last_at else 3000
        self._shift = (self._last_out + step - keyframe.timestamp) & 0xFFFFFFFF
        self.moves += 1
        self.waiting_for_keyframe = False
        self.on_left()
        self.on_moved(old, self._relay, keyframe)

    def _deliver(self, frame: ForwardedFrame) -> None:
        if self.waiting_for_keyframe:
            if not frame.keyframe:
                return
            self.waiting_for_keyframe = False
        if self.direct is not None:
            self._send_direct(frame)
            return
        if len(self._frames) >= self._limit:
            self._overflow()
            if self.waiting_for_keyframe and not frame.keyframe:
                return
        self._frames.append(frame)
        self._ready.set()

    def _overflow(self) -> None:
        if self.kind == "audio":
            self._frames.popleft()
            self.frames_dropped += 1
            return
        self.frames_dropped += len(self._frames)
        self._frames.clear()
        self.waiting_for_keyframe = True
        self._relay.keyframe_wanted()

    def _send_direct(self, frame: ForwardedFrame) -> None:
        assert self.direct is not None
        try:
            self.direct(frame)
        except Exception:  # the viewer's path is gone; its session closes on the state change
            self.frames_dropped += 1

    def finish(self) -> None:
        """The publisher is gone: the sender sees the end of the track."""
        self._frames.append(None)
        self._ready.set()

    async def recv(self) -> ForwardedFrame:  # type: ignore[override]  # encoded, not a Frame
        if self.make_direct is not None and self.direct is None:
            await self._go_direct()  # returns only at the end of the track
        while not self._frames:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        frame = self._frames.popleft()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame

    async def _go_direct(self) -> None:
        """aiortc's sender is started (so DTLS is up): send what is queued, then hand
        every later frame straight to the viewer; park aiortc's RTP loop until the end."""
        assert self.make_direct is not None
        self.direct = self.make_direct()
        while self._frames and self._frames[0] is not None:
            frame = self._frames.popleft()
            assert frame is not None
            self._send_direct(frame)
        while not self._frames and self.readyState == "live":
            self._ready.clear()
            await self._ready.wait()

    def stop(self) -> None:
        super().stop()
        self._relay.unsubscribe(self)
        if self._pending is not None:
            self._pending.unsubscribe(self)


class TrackRelay:
    """One published track's fan-out: frames in once, the same frames out to every viewer."""

    def __init__(
        self,
        kind: str,
        mime_type: str,
        *,
        gop_cache_frames: int,
        queue_frames: int,
        keyframe_interval_s: float,
        move_keyframe_interval_s: float | None = None,
        request_keyframe: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = kind
        self.mime_type = mime_type
        self.codec: Any = None  # the negotiated RTCRtpCodecParameters, for viewers' offers
        self.viewers: set[ViewerTrack] = set()
        self.stats = RelayStats()
        self.gate = KeyframeGate(keyframe_interval_s, move_keyframe_interval_s)
        self._gop: list[ForwardedFrame] = []
        self._gop_cache_frames = gop_cache_frames
        self._queue_frames = queue_frames
        self.request_keyframe = request_keyframe  # replaced by DualPath for the host slot
        self._clock = clock
        self._picture_id = 0
        self._parameter_sets = H264ParameterSets() if mime_type.lower() == "video/h264" else None
        self.ended = False
        self.last_frame_at: float | None = None  # on `clock`
        # Consumers of the encoded bytes other than viewers (the HLS output): (data, timestamp, keyframe).
        self.listeners: list[Callable[[bytes, int, bool], None]] = []

    def push(self, data: bytes, timestamp: int) -> ForwardedFrame:
        """An encoded frame from the publisher: packetize once, fan out to every viewer."""
        self.last_frame_at = self._clock()
        if self._parameter_sets is not None:
            data = self._parameter_sets.complete(data)
        keyframe = self.kind == "video" and is_keyframe(self.mime_type, data)
        frame = ForwardedFrame(
            packetize(self.mime_type, data, self._picture_id), timestamp, keyframe, len(data)
        )
        self._picture_id = (self._picture_id + 1) % (1 << 15)
        self._count(frame)
        self._cache(frame)
        for viewer in self.viewers:
            viewer.offer(frame, self)
        for listener in self.listeners:
            listener(data, timestamp, keyframe)
        if any(viewer.waiting_for_keyframe for viewer in self.viewers):
            self.keyframe_wanted()
        return frame

    def subscribe(self) -> ViewerTrack:
        """A new viewer track, started on a keyframe: the cached GOP, or a requested one."""
        viewer = ViewerTrack(self, self._queue_frames)
        if self.ended:
            viewer.finish()
            return viewer
        self.viewers.add(viewer)
        if self.kind == "video":
            if self._gop and len(self._gop) <= self._gop_cache_frames:
                for frame in self._gop:
                    viewer.offer(frame)
            else:
                self.keyframe_wanted()
        return viewer

    def silent(self, for_s: float) -> bool:
        """No frame for `for_s` seconds (or none yet): nothing to move a viewer onto."""
        return self.last_frame_at is None or self._clock() - self.last_frame_at >= for_s

    def unsubscribe(self, viewer: ViewerTrack) -> None:
        self.viewers.discard(viewer)

    def keyframe_wanted(self, for_move: bool = False) -> None:
        """A viewer needs a keyframe (joined, lagged, sent PLI/FIR, or is moving here from
        another rendition): ask, rate-limited (see KeyframeGate)."""
        if self.kind != "video" or self.ended:
            return
        now = self._clock()
        if self.gate.want(now, for_move):
            self.request_keyframe()

    def end(self) -> None:
        """The publisher left: every viewer track ends cleanly."""
        self.ended = True
        for viewer in list(self.viewers):
            viewer.finish()
        self.viewers.clear()
        self._gop.clear()

    def _count(self, frame: ForwardedFrame) -> None:
        stats = self.stats
        stats.frames += 1
        stats.bytes += frame.size
        if frame.keyframe:
            now = self._clock()
            stats.keyframes += 1
            if stats.last_keyframe_at is not None:
                stats.keyframe_interval_s = now - stats.last_keyframe_at
            stats.last_keyframe_at = now
            self.gate.keyframe_seen(now)

    def _cache(self, frame: ForwardedFrame) -> None:
        if frame.keyframe:
            self._gop = [frame]
        elif self._gop and len(self._gop) <= self._gop_cache_frames:
            self._gop.append(frame)
        else:
            self._gop = []  # too long to replay: joiners ask for a fresh keyframe
