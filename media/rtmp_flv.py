"""FLV tag bodies (what RTMP audio and video messages carry) to what the relays take: pure.

Video: H.264 only (codec id 7). The sequence header (AVCDecoderConfigurationRecord)
gives the NAL length size and the SPS/PPS; each later tag's length-prefixed NAL units
become one Annex-B frame (what aiortc's depayloader hands the relays), with the SPS/PPS
put in front of every IDR that lacks them, so any keyframe is a starting point. A
non-zero composition time means B-frames, which WebRTC players cannot reorder: refused.
Audio: AAC only (sound format 10): the AudioSpecificConfig, then raw AAC frames.
Enhanced RTMP (HEVC, AV1, Opus...) is refused with a message naming what to send.
"""

from __future__ import annotations

from dataclasses import dataclass

from .bitstream import H264_IDR, H264_PPS, H264_SPS, START_CODE

__all__ = ["AacConfig", "FlvAudio", "FlvError", "FlvVideo"]

AVC, AAC = 7, 10
COMMAND_FRAME = 5
SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


class FlvError(ValueError):
    """A tag we cannot forward (the connection is closed, with this message logged)."""


@dataclass(frozen=True, slots=True)
class AacConfig:
    raw: bytes  # the AudioSpecificConfig (extradata for a decoder or a muxer)
    sample_rate: int
    channels: int


class FlvVideo:
    def __init__(self) -> None:
        self.parameter_sets: list[bytes] = []  # SPS and PPS NAL units from the sequence header
        self._length_size = 4

    def frame(self, payload: bytes) -> bytes | None:
        """An Annex-B frame, or None for a tag that carries no picture."""
        if len(payload) < 2:
            raise FlvError("a video tag cut short")
        if payload[0] & 0x80:
            raise FlvError("enhanced RTMP video (HEVC/AV1/VP9) is not supported: send H.264")
        frame_type, codec = payload[0] >> 4, payload[0] & 0x0F
        if frame_type == COMMAND_FRAME:
            return None
        if codec != AVC:
            raise FlvError(f"video codec id {codec} is not supported: send H.264")
        if len(payload) < 5:
            raise FlvError("an AVC tag cut short")
        packet_type = payload[1]
        if packet_type == 0:
            self._configure(payload[5:])
            return None
        if packet_type != 1:
            return None  # end of sequence
        if int.from_bytes(payload[2:5], "big", signed=True) != 0:
            raise FlvError("B-frames are not supported: use the baseline profile, or bframes=0")
        return self._annex_b(payload[5:])

    def _configure(self, record: bytes) -> None:
        if len(record) < 7 or record[0] != 1:
            raise FlvError("a bad AVCDecoderConfigurationRecord")
        self._length_size = (record[4] & 0x03) + 1
        sets: list[bytes] = []
        at = 5
        for count_mask in (0x1F, 0xFF):
            if at >= len(record):
                raise FlvError("a bad AVCDecoderConfigurationRecord")
            count, at = record[at] & count_mask, at + 1
            for _ in range(count):
                size = int.from_bytes(record[at : at + 2], "big")
                if at + 2 + size > len(record):
                    raise FlvError("a bad AVCDecoderConfigurationRecord")
                sets.append(record[at + 2 : at + 2 + size])
                at += 2 + size
        self.parameter_sets = sets

    def _annex_b(self, data: bytes) -> bytes:
        nals, at, width = [], 0, self._length_size
        while at < len(data):
            size = int.from_bytes(data[at : at + width], "big")
            if size == 0 or at + width + size > len(data):
                raise FlvError("a NAL unit longer than its tag")
            nals.append(data[at + width : at + width + size])
            at += width + size
        types = {nal[0] & 0x1F for nal in nals}
        if H264_IDR in types and not {H264_SPS, H264_PPS} <= types:
            nals = [*self.parameter_sets, *nals]
        return b"".join(START_CODE + nal for nal in nals)


class FlvAudio:
    def __init__(self) -> None:
        self.config: AacConfig | None = None

    def frame(self, payload: bytes) -> bytes | None:
        """A raw AAC frame, or None for the AudioSpecificConfig (kept in `config`)."""
        if len(payload) < 2:
            raise FlvError("an audio tag cut short")
        if payload[0] >> 4 != AAC:
            raise FlvError(f"audio format {payload[0] >> 4} is not supported: send AAC")
        if payload[1] == 0:
            self.config = _aac_config(payload[2:])
            return None
        if self.config is None:
            raise FlvError("AAC frames before their AudioSpecificConfig")
        return payload[2:]


def _aac_config(raw: bytes) -> AacConfig:
    if len(raw) < 2:
        raise FlvError("a bad AudioSpecificConfig")
    index = ((raw[0] & 0x07) << 1) | (raw[1] >> 7)
    channels = (raw[1] >> 3) & 0x0F
    if index >= len(SAMPLE_RATES) or not 1 <= channels <= 2:
        raise FlvError("AAC other than mono/stereo at a standard rate is not supported")
    return AacConfig(bytes(raw), SAMPLE_RATES[index], channels)
