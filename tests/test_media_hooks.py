"""The aiortc internals liveroom.media.hooks relies on, checked against the installed aiortc."""

from __future__ import annotations

import asyncio
import threading

import aiortc
from aiortc import RTCPeerConnection, RTCRtpSender, rtcrtpreceiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket
from liveroom.media.bitstream import packetize
from liveroom.media.fastpath import FastSender
from liveroom.media.hooks import SUPPORTED_AIORTC, ForwardingPacker, attach_sender, tap_receiver
from liveroom.media.relay import ForwardedFrame
from media_support import wait_until


def test_the_pinned_aiortc_and_aioice_are_installed() -> None:
    import aioice

    assert aiortc.__version__.startswith(SUPPORTED_AIORTC)
    assert aioice.__version__.startswith("0.13.")


async def test_the_tap_takes_frames_and_ends_aiortcs_decoder_thread() -> None:
    pc = RTCPeerConnection()
    receiver = pc.addTransceiver("video", "recvonly").receiver
    got: list[tuple[bytes, int]] = []
    tap = tap_receiver(receiver, lambda codec, data, ts: got.append((data, ts)))
    assert receiver._RTCRtpReceiver__decoder_queue is tap  # type: ignore[attr-defined]  # aiortc's own
    # aiortc's own decoder thread body, reading from the tap as it would in receive().
    loop, output = asyncio.get_running_loop(), asyncio.Queue[object]()
    thread = threading.Thread(
        target=rtcrtpreceiver.decoder_worker, args=(loop, tap, output, threading.Event())
    )
    thread.start()
    tap.put(("codec", JitterFrame(b"frame", 1234)))
    assert got == [(b"frame", 1234)]
    tap.put(None)  # what aiortc's receiver does on stop / BYE
    assert await asyncio.wait_for(output.get(), 5) is None  # the thread ended the remote track
    thread.join(5)
    assert not thread.is_alive()
    await pc.close()


async def test_the_sender_forwards_without_an_encoder_and_routes_pli_and_fir() -> None:
    pc = RTCPeerConnection()
    sender = pc.addTransceiver("video", "sendonly").sender
    requests: list[str] = []
    attach_sender(sender, lambda: requests.append("keyframe"))
    assert isinstance(sender._RTCRtpSender__encoder, ForwardingPacker)  # type: ignore[attr-defined]
    for fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
        await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=fmt, ssrc=1, media_ssrc=sender._ssrc))
    assert requests == ["keyframe", "keyframe"]
    # What aiortc's RTP loop does with each thing its track yields: pack, never encode.
    frame = ForwardedFrame([b"a", b"b"], 3000, True, 2)
    sender.replaceTrack(OneFrame(frame))
    codec = RTCRtpSender.getCapabilities("video").codecs[0]
    encoded = await sender._next_encoded_frame(codec)  # type: ignore[arg-type]  # aiortc reads mimeType only
    assert encoded is not None
    assert (encoded.payloads, encoded.timestamp) == ([b"a", b"b"], 3000)
    assert isinstance(sender._RTCRtpSender__encoder, ForwardingPacker)  # type: ignore[attr-defined]
    await pc.close()


class OneFrame(MediaStreamTrack):
    kind = "video"

    def __init__(self, frame: ForwardedFrame) -> None:
        super().__init__()
        self.frame = frame

    async def recv(self) -> ForwardedFrame:  # type: ignore[override,unused-ignore]
        return self.frame


class Silent(MediaStreamTrack):
    """A track aiortc's own RTP loop waits on forever: only the fast path sends."""

    kind = "video"

    async def recv(self) -> ForwardedFrame:  # type: ignore[override,unused-ignore]
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def connected_pair() -> tuple[RTCPeerConnection, RTCPeerConnection]:
    sender_pc, receiver_pc = RTCPeerConnection(), RTCPeerConnection()
    sender_pc.addTransceiver(Silent(), "sendonly").setCodecPreferences(
        [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
    )
    await sender_pc.setLocalDescription(await sender_pc.createOffer())
    await receiver_pc.setRemoteDescription(sender_pc.localDescription)
    await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
    await sender_pc.setRemoteDescription(receiver_pc.localDescription)
    return sender_pc, receiver_pc


async def test_the_fast_path_sends_what_aiortcs_receiver_reassembles() -> None:
    sender_pc, receiver_pc = await connected_pair()
    got: list[tuple[bytes, int]] = []
    receiver = receiver_pc.getTransceivers()[0].receiver
    tap_receiver(receiver, lambda codec, data, ts: got.append((data, ts)))
    try:
        both = (sender_pc, receiver_pc)
        await wait_until(lambda: all(pc.connectionState == "connected" for pc in both), 10, "connected")
        transceiver = sender_pc.getTransceivers()[0]
        fast = FastSender(transceiver.sender, transceiver._codecs[0].payloadType)
        key = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + bytes(range(256)) * 12
        frames = [key, bytes([0x31]) + b"delta-1" * 50, bytes([0x31]) + b"delta-2" * 50]
        for n, data in enumerate(frames):
            fast.send_frame(ForwardedFrame(packetize("video/VP8", data, n), n * 3000, n == 0, len(data)))
        await wait_until(lambda: len(got) >= 2, 5, "two frames")  # one is held until the next starts
        assert [data for data, _ in got[:2]] == frames[:2]
        assert got[1][1] - got[0][1] == 3000
        assert fast.packets == sum(len(packetize("video/VP8", f, 0)) for f in frames)
        await fast.retransmit(fast.sequence - 1)  # a NACK for the last packet is answered
        sent = transceiver.sender._RTCRtpSender__packet_count  # type: ignore[attr-defined]
        assert sent == fast.packets  # sender reports
    finally:
        await sender_pc.close()
        await receiver_pc.close()
