"""The aiortc internals liveroom.media.hooks relies on, checked against the installed aiortc."""

from __future__ import annotations

import asyncio
import threading

import aiortc
from aiortc import RTCPeerConnection, RTCRtpSender, rtcrtpreceiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket
from liveroom.media.hooks import SUPPORTED_AIORTC, ForwardingPacker, attach_sender, tap_receiver
from liveroom.media.relay import ForwardedFrame


def test_the_pinned_aiortc_is_installed() -> None:
    assert aiortc.__version__.startswith(SUPPORTED_AIORTC)


async def test_the_tap_takes_frames_and_ends_aiortcs_decoder_thread() -> None:
    pc = RTCPeerConnection()
    receiver = pc.addTransceiver("video", "recvonly").receiver
    got: list[tuple[bytes, int]] = []
    tap = tap_receiver(receiver, lambda codec, data, ts: got.append((data, ts)))
    assert receiver._RTCRtpReceiver__decoder_queue is tap
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
    assert isinstance(sender._RTCRtpSender__encoder, ForwardingPacker)
    for fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
        await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=fmt, ssrc=1, media_ssrc=sender._ssrc))
    assert requests == ["keyframe", "keyframe"]
    # What aiortc's RTP loop does with each thing its track yields: pack, never encode.
    frame = ForwardedFrame([b"a", b"b"], 3000, True, 2)
    sender.replaceTrack(OneFrame(frame))
    codec = RTCRtpSender.getCapabilities("video").codecs[0]
    encoded = await sender._next_encoded_frame(codec)
    assert (encoded.payloads, encoded.timestamp) == ([b"a", b"b"], 3000)
    assert isinstance(sender._RTCRtpSender__encoder, ForwardingPacker)
    await pc.close()


class OneFrame(MediaStreamTrack):
    kind = "video"

    def __init__(self, frame: ForwardedFrame) -> None:
        super().__init__()
        self.frame = frame

    async def recv(self) -> ForwardedFrame:  # type: ignore[override]
        return self.frame
