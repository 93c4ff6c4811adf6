"""An RTMP encoder as a publisher: the same `PublishSession` a WHIP publisher is, fed from FLV tags.

The plane treats it like any WHIP session (slots, the host's two paths and failover, HLS,
the ladder, recording, viewers): it has the same relays, and its frames enter through
the same `feed` (a DualPath's when it is one of the host's two paths). Only what comes
in differs: H.264 as Annex B from the FLV tags (rtmp_flv.py), never re-encoded, and AAC
transcoded to Opus once (rtmp_audio.py) for WebRTC viewers. RTP timestamps come from the
RTMP timeline (milliseconds x 90 for video, x 48 for audio), so audio and video keep the
encoder's sync. There is no peer connection: the aiortc one the base class makes is
never negotiated. An encoder cannot be asked for a keyframe over RTMP, so keyframe
requests do nothing: joiners start on the relay's cached group of pictures (keep the
encoder's keyframe interval at 1-2 s).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from liveroom.config import MediaConfig

from .callers import Caller
from .relay import TrackRelay
from .rtmp_audio import AacToOpus
from .rtmp_flv import FlvAudio, FlvError, FlvVideo
from .sessions import PublishSession

__all__ = ["RtmpPublishSession"]

log = logging.getLogger(__name__)
MASK = 0xFFFFFFFF
H264 = RTCRtpCodecParameters(
    mimeType="video/H264",
    clockRate=90000,
    payloadType=102,
    parameters={"level-asymmetry-allowed": "1", "packetization-mode": "1", "profile-level-id": "42e01f"},
)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


class RtmpPublishSession(PublishSession):
    kind = "rtmp"

    def __init__(self, room: str, slot: str, caller: Caller, config: MediaConfig) -> None:
        super().__init__(room, slot, caller, config)
        self._video = FlvVideo()
        self._audio = FlvAudio()
        self._opus: AacToOpus | None = None
        self.frames = 0
        # Off air as the host's backup, the whole group of pictures since its last keyframe
        # is kept (dualpath.py): no keyframe can be asked of an RTMP encoder at a switch.
        self.standby_frames = config.gop_cache_frames
        # The connection carrying this session (rtmp_server.py): told to close when the
        # session ends from this side (DELETE, taken off stage, the plane stopping).
        self.disconnect: Callable[[], None] = lambda: None

    def start(self) -> None:
        """Instead of an SDP exchange: the relays are made at once (H.264 video, Opus audio,
        and the encoder's own AAC for outputs that take AAC: no viewer plays that one)."""
        for kind, codec in (("video", H264), ("audio", OPUS)):
            relay = self.new_relay(kind, codec)
            self.relays[kind] = relay
            self.mime_types[kind] = codec.mimeType
        self.relays["aac"] = TrackRelay(
            "aac", "audio/aac", gop_cache_frames=0, queue_frames=1, keyframe_interval_s=1.0,
            request_keyframe=lambda: None,
        )  # fmt: skip
        self.rungs = [self.relays["video"]]
        self.on_connected(self)

    def media(self, kind: str, timestamp_ms: int, payload: bytes) -> None:
        """An RTMP audio or video message (an FLV tag body); FlvError if it cannot be forwarded."""
        if self.closed:
            return
        if kind == "video":
            frame = self._video.frame(payload)
            if frame is not None:
                self.frames += 1
                self.feed("video", frame, (timestamp_ms * 90) & MASK)
            return
        aac = self._audio.frame(payload)
        if aac is None:
            return
        if self._opus is None or self._opus.config != self._audio.config:
            assert self._audio.config is not None
            self._opus = AacToOpus(self._audio.config)
            if "aac" in self.relays and self.relays["aac"].codec is None:
                self.relays["aac"].codec = self._audio.config  # what muxers need (program_aac.py)
        self.feed("aac", aac, (timestamp_ms * 48) & MASK)
        try:
            frames = self._opus.transcode(aac, timestamp_ms)
        except Exception as exc:  # FFmpeg refused the frame: skip it, as a decoder would
            raise FlvError(f"an AAC frame could not be decoded: {exc!r}") from None
        for opus, timestamp in frames:
            self.feed("audio", opus, timestamp)

    def request_keyframe(self) -> None:
        """RTMP has no way to ask the encoder for one (see the module docstring)."""

    def status(self) -> dict[str, Any]:
        state = "closed" if self.closed else "publishing"
        return {"session": self.id, "room": self.room, "slot": self.slot, "state": state, "kind": "rtmp"}

    async def end(self, requested: bool) -> None:
        """The encoder went (`requested`: it unpublished, rather than losing its connection)."""
        self.ended_by_request = self.ended_by_request or requested
        await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        await super().close()
        self.disconnect()
