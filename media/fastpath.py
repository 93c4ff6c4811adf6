"""The per-viewer send path without aiortc's per-packet Python (`media.fast_send`, default on).

aiortc's sender builds an `RtpPacket` object, packs its header extensions, awaits four
coroutine layers and updates statistics for every packet of every viewer: about 50 µs.
A `FastSender` keeps one serialized header per viewer (made once by aiortc itself, so the
header-extension layout is aiortc's), patches marker, payload type, sequence number and
timestamp into it with `struct.pack_into`, encrypts with the viewer's SRTP session (C)
and writes the datagram on the ICE pair's socket. It is called by the relay, in the same
pass that receives the frame: no queue and no task per viewer.

What aiortc's sender still does for the viewer: RTCP (sender reports, whose counters we
keep up to date, and receiver-report statistics), PLI/FIR (routed to the relay) and
NACK, answered by `FastSender.retransmit` from this sender's own history, on the media
SSRC (a plain retransmission; receivers accept one whether or not they negotiated RTX),
packets of the group of pictures being played at once, older ones within a budget: a
congested viewer asks for more and more packets again, and answering them all would keep
its link congested, while what it needs first is the keyframe it plays from (after a
rendition switch down, the old rendition's packets are worth nothing to it).
These are aiortc 1.16 internals, pinned and covered by tests/test_media_hooks.py.
"""

from __future__ import annotations

import random
import struct
import time
from typing import Any

from aiortc import RTCRtpSender, clock
from aiortc.rtp import RtpPacket

from .relay import ForwardedFrame

__all__ = ["FastSender"]

ABS_SEND_TIME_MARK = 0x5A5A5A
HISTORY = 512  # packets kept per viewer for NACK (about 3 s of 720p30 at 1.5 Mbps)
# Retransmissions per viewer: a token bucket refilled at this share of the viewer's
# bandwidth estimate (REMB), at least RETRANSMIT_MIN_BPS, holding a quarter second of it.
RETRANSMIT_SHARE = 0.25
RETRANSMIT_MIN_BPS = 100_000


class FastSender:
    def __init__(self, sender: RTCRtpSender, payload_type: int) -> None:
        self.sender = sender
        self.payload_type = payload_type
        self.sequence = random.randrange(1 << 15)  # lower half: no early wrap (as aiortc)
        self.timestamp_origin = random.randrange(1 << 32)
        self.history: list[tuple[int, bytes] | None] = [None] * HISTORY
        self.header, self.abs_send_time_at = _header_template(sender, payload_type)
        self.packets = 0
        self.octets = 0
        self.retransmissions_refused = 0
        self._keyframe_sequence: int | None = None  # where the latest keyframe sent starts
        self._budget = 0.0  # bytes of retransmission allowed now
        self._budget_at = time.monotonic()
        sender._retransmit = self.retransmit  # type: ignore[method-assign,assignment]  # NACKs

    def send_frame(self, frame: ForwardedFrame) -> None:
        """Send every packet of one frame; raises ConnectionError once the path is gone."""
        dtls = self.sender.transport
        srtp, pair = dtls._tx_srtp, dtls.transport._connection._nominated.get(1)
        if srtp is None or pair is None or pair.protocol.transport is None:
            raise ConnectionError("the viewer's transport is not connected")
        sendto, address = pair.protocol.transport.sendto, pair.remote_addr
        timestamp = (self.timestamp_origin + frame.timestamp) & 0xFFFFFFFF
        header = self.header
        if self.abs_send_time_at:
            abs_send_time = (clock.current_ntp_time() >> 14) & 0xFFFFFF
            header[self.abs_send_time_at : self.abs_send_time_at + 3] = abs_send_time.to_bytes(3, "big")
        last = len(frame.payloads) - 1
        if frame.keyframe:
            self._keyframe_sequence = self.sequence
        for index, payload in enumerate(frame.payloads):
            sequence = self.sequence
            struct.pack_into("!BHL", header, 1, (index == last) << 7 | self.payload_type, sequence, timestamp)
            packet = bytes(header) + payload
            self.history[sequence % HISTORY] = (sequence, packet)
            sendto(srtp.protect(packet), address)
            self.sequence = (sequence + 1) & 0xFFFF
            self.octets += len(payload)
        self.packets += len(frame.payloads)
        self._report(timestamp)

    def forget(self) -> None:
        """What was sent is worth nothing to the viewer now (it left that rendition): NACKs
        for it go unanswered, leaving the link to the new rendition's keyframe."""
        self.history = [None] * HISTORY
        self._keyframe_sequence = None

    async def retransmit(self, sequence: int) -> None:
        kept = self.history[sequence % HISTORY]
        dtls = self.sender.transport
        pair = dtls.transport._connection._nominated.get(1)
        if kept is None or kept[0] != sequence or pair is None or pair.protocol.transport is None:
            return
        if not self._current_gop(sequence) and not self._afford(len(kept[1])):
            self.retransmissions_refused += 1
            return
        pair.protocol.transport.sendto(dtls._tx_srtp.protect(kept[1]), pair.remote_addr)

    def _current_gop(self, sequence: int) -> bool:
        start = self._keyframe_sequence
        return start is not None and (sequence - start) & 0xFFFF < 0x8000

    def _afford(self, size: int) -> bool:
        now = time.monotonic()
        estimate = getattr(getattr(self.sender, "_RTCRtpSender__encoder", None), "target_bitrate", None)
        rate = max(RETRANSMIT_MIN_BPS, RETRANSMIT_SHARE * (estimate or 0)) / 8  # bytes per second
        self._budget = min(rate / 4, self._budget + (now - self._budget_at) * rate)
        self._budget_at = now
        if self._budget < size:
            return False
        self._budget -= size
        return True

    def _report(self, timestamp: int) -> None:
        """What aiortc's RTCP loop puts in the sender reports (lip sync needs the pair)."""
        sender: Any = self.sender
        sender._RTCRtpSender__ntp_timestamp = clock.current_ntp_time()
        sender._RTCRtpSender__rtp_timestamp = timestamp
        sender._RTCRtpSender__packet_count = self.packets
        sender._RTCRtpSender__octet_count = self.octets


def _header_template(sender: Any, payload_type: int) -> tuple[bytearray, int]:
    """The viewer's RTP header with its negotiated extensions (mid, abs-send-time), made by
    aiortc's own serializer once; returns it and where abs-send-time sits (0: absent)."""
    extensions_map = sender._RTCRtpSender__rtp_header_extensions_map
    packet = RtpPacket(payload_type=payload_type, sequence_number=0, timestamp=0, ssrc=sender._ssrc)
    packet.extensions.mid = sender._RTCRtpSender__mid
    packet.extensions.abs_send_time = ABS_SEND_TIME_MARK
    header = bytearray(packet.serialize(extensions_map))
    mark = header.find(ABS_SEND_TIME_MARK.to_bytes(3, "big"), 12)
    return header, max(mark, 0)
