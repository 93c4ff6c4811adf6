"""Encoded-frame facts with no I/O: is this a keyframe, and RTP payloads for one frame.

The relay never decodes. It only needs to know where a viewer may start (a keyframe) and
to cut each frame into RTP payloads once, for every viewer. The payload formats are
aiortc's own packetizers (RFC 7741 for VP8, RFC 6184 for H.264), called as class
functions so no encoder object is ever made.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder

__all__ = [
    "H264ParameterSets",
    "h264_nal_units",
    "is_keyframe",
    "packetize",
]

H264_IDR = 5
H264_SPS = 7
H264_PPS = 8
START_CODE = b"\x00\x00\x00\x01"


def h264_nal_units(annex_b: bytes) -> list[bytes]:
    """The NAL units of an Annex-B buffer (as aiortc's depayloader reassembles it)."""
    return list(H264Encoder._split_bitstream(annex_b))


def is_keyframe(mime_type: str, data: bytes) -> bool:
    """Whether a decoder can start at this frame."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        # RFC 6386 9.1: bit 0 of the frame tag is 0 for a key frame.
        return bool(data) and data[0] & 0x01 == 0
    if mime == "video/h264":
        return any(nal and nal[0] & 0x1F == H264_IDR for nal in h264_nal_units(data))
    return True  # audio: every frame is a starting point


def packetize(mime_type: str, data: bytes, picture_id: int) -> list[bytes]:
    """RTP payloads for one encoded frame; `picture_id` is VP8's 15-bit counter."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        return Vp8Encoder._packetize(data, picture_id)
    if mime == "video/h264":
        return H264Encoder._packetize(h264_nal_units(data))
    return [data]  # Opus: one frame, one packet


class H264ParameterSets:
    """Keeps the latest SPS/PPS so every forwarded IDR carries them in-band.

    A viewer joining at a keyframe needs the parameter sets in that very frame; some
    publishers send them only once at the start of the stream.
    """

    def __init__(self) -> None:
        self.sps: bytes | None = None
        self.pps: bytes | None = None

    def complete(self, data: bytes) -> bytes:
        """The frame, with cached SPS/PPS put in front of an IDR that lacks them."""
        nals = h264_nal_units(data)
        types = {nal[0] & 0x1F for nal in nals if nal}
        for nal in nals:
            if nal and nal[0] & 0x1F == H264_SPS:
                self.sps = nal
            elif nal and nal[0] & 0x1F == H264_PPS:
                self.pps = nal
        if H264_IDR not in types or (H264_SPS in types and H264_PPS in types):
            return data
        if self.sps is None or self.pps is None:
            return data
        return _annex_b([self.sps, self.pps, *nals])


def _annex_b(nals: Iterable[bytes]) -> bytes:
    return b"".join(START_CODE + nal for nal in nals)
