"""A cheap WebRTC viewer for the media benchmark: it counts frames from RTP headers.

aiortc sets the session up (ICE, DTLS, SRTP keys) and keeps it alive (STUN consent, RTCP
receiver reports). Then each incoming RTP datagram is taken at aioice's `data_received`,
before aiortc's per-packet path (a queue hop, the DTLS loop, SRTP unprotect, RTP parsing,
the jitter buffer, NACK): that path costs the load generator more per packet than the
server spends forwarding it. SRTP encrypts the payload only, so the clear RTP header
tells enough: the marker bit ends a frame, the sequence number shows loss. The first
packet of each frame alone is unprotected, to read its H.264 NAL unit type, so keyframes
are counted too (the SRTP authentication tag is checked on those packets). Decoding is
left to a few sample viewers on aiortc's normal path (`media_bench.decoding_viewer`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pylibsrtp
from aiortc import RTCRtpReceiver

__all__ = ["FrameCounter", "count_frames", "h264_starts_keyframe"]

# H.264 NAL unit types (RFC 6184): IDR slice, SPS; packetization STAP-A and FU-A.
NAL_IDR, NAL_SPS, STAP_A, FU_A = 5, 7, 24, 28


@dataclass(slots=True)
class FrameCounter:
    """What one viewer received: a wall-clock arrival per frame, keyframes, packets, gaps in
    the sequence numbers (a packet reordered looks like a large gap: none on loopback)."""

    arrivals: list[float] = field(default_factory=list)
    keyframes: int = 0
    packets: int = 0
    losses: list[tuple[float, int]] = field(default_factory=list)  # (wall clock, packets missing)
    undecryptable: int = 0
    _next_seq: int | None = None
    _frame_open: bool = False

    def on_rtp(self, data: bytes, srtp: pylibsrtp.Session | None) -> None:
        self.packets += 1
        seq = (data[2] << 8) | data[3]
        if self._next_seq is not None and seq != self._next_seq:
            self.losses.append((time.time(), (seq - self._next_seq) & 0xFFFF))
        self._next_seq = (seq + 1) & 0xFFFF
        if not self._frame_open:  # the first packet of a frame: is it a keyframe?
            self._frame_open = True
            self._check_keyframe(data, srtp)
        if data[1] & 0x80:  # marker: the frame's last packet
            self._frame_open = False
            self.arrivals.append(time.time())

    def _check_keyframe(self, data: bytes, srtp: pylibsrtp.Session | None) -> None:
        if srtp is None:
            return
        try:
            clear = srtp.unprotect(data)
        except pylibsrtp.Error:
            self.undecryptable += 1
            return
        if h264_starts_keyframe(rtp_payload(clear)):
            self.keyframes += 1


def rtp_payload(packet: bytes) -> bytes:
    """The payload of a clear RTP packet (after CSRCs and the header extension)."""
    offset = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        offset += 4 + 4 * ((packet[offset + 2] << 8) | packet[offset + 3])
    return packet[offset:]


def h264_starts_keyframe(payload: bytes) -> bool:
    """Whether an H.264 RTP payload that starts a frame starts a keyframe (SPS or IDR)."""
    if len(payload) < 2:
        return False
    kind = payload[0] & 0x1F
    if kind == STAP_A:
        return len(payload) > 3 and payload[3] & 0x1F in (NAL_SPS, NAL_IDR)
    if kind == FU_A:
        return bool(payload[1] & 0x80) and payload[1] & 0x1F == NAL_IDR
    return kind in (NAL_SPS, NAL_IDR)


def count_frames(receiver: RTCRtpReceiver, counter: FrameCounter) -> None:
    """Count `receiver`'s RTP in `counter` from now on; call once the offer is set (the ICE
    connection exists). RTCP, STUN and DTLS keep going the normal way."""
    dtls = receiver.transport
    connection: Any = dtls.transport._connection  # aioice Connection (aiortc 1.16 internals)
    normal = connection.data_received

    def data_received(data: bytes, component: int) -> None:
        if 127 < data[0] < 192 and not 192 <= data[1] <= 208 and dtls._rx_srtp is not None:
            counter.on_rtp(data, dtls._rx_srtp)
        else:
            normal(data, component)

    connection.data_received = data_received
