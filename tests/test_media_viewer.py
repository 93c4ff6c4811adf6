"""The media benchmark's cheap viewer: frames and keyframes from RTP headers, over real SRTP."""

from __future__ import annotations

import os
import struct

import pylibsrtp
from aiortc import RTCPeerConnection
from liveroom.loadtest.media_viewer import FrameCounter, count_frames, h264_starts_keyframe, rtp_payload

KEY = os.urandom(30)  # AES-128 key + 14-byte salt


def session(direction: int) -> pylibsrtp.Session:
    return pylibsrtp.Session(
        pylibsrtp.Policy(KEY, direction, pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    )


def rtp(seq: int, marker: bool, payload: bytes, extension: bool = False) -> bytes:
    first = 0x90 if extension else 0x80
    header = struct.pack("!BBHII", first, (0x80 if marker else 0) | 102, seq, 3000, 0x1234)
    if extension:
        header += struct.pack("!HH", 0xBEDE, 1) + b"\x10\x01\x00\x00"
    return header + payload


def test_keyframes_are_told_from_the_nal_unit_type() -> None:
    assert h264_starts_keyframe(bytes([24, 0, 4, 0x67, 1, 2]))  # STAP-A opening with an SPS
    assert h264_starts_keyframe(bytes([28, 0x85, 0]))  # FU-A start of an IDR slice
    assert not h264_starts_keyframe(bytes([28, 0x05, 0]))  # an IDR fragment, not its start
    assert not h264_starts_keyframe(bytes([28, 0x81, 0]))  # a P slice
    assert h264_starts_keyframe(bytes([0x65, 0]))  # a single IDR NAL unit
    assert rtp_payload(rtp(1, False, b"xyz", extension=True)) == b"xyz"


def test_counter_counts_frames_keyframes_and_gaps_over_srtp() -> None:
    sender, receiver = session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND), session(pylibsrtp.Policy.SSRC_ANY_INBOUND)
    key_frame = [rtp(1, False, bytes([24, 0, 4, 0x67, 1, 2])), rtp(2, True, bytes([28, 0x45, 0]))]
    delta_frame = [rtp(3, False, bytes([28, 0x81, 0])), rtp(5, True, bytes([28, 0x41, 0]))]  # 4 lost
    counter = FrameCounter()
    for packet in key_frame + delta_frame:
        counter.on_rtp(sender.protect(packet), receiver)
    assert len(counter.arrivals) == 2 and counter.keyframes == 1 and counter.packets == 4
    assert [missing for _, missing in counter.losses] == [1] and counter.undecryptable == 0


async def test_the_hook_finds_aiortcs_ice_connection() -> None:
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("video", "recvonly").receiver
        await pc.setLocalDescription(await pc.createOffer())
        count_frames(receiver, FrameCounter())  # raises if aiortc's internals moved
    finally:
        await pc.close()
