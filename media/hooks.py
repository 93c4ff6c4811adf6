"""The only place liveroom reaches into aiortc internals (aiortc is pinned to 1.16.* for it).

aiortc's receiver depayloads RTP and reassembles encoded frames in its jitter buffer,
then puts `(codec, frame)` on a queue read by a decoder thread. `tap_receiver` puts a
`FrameTap` in place of that queue: encoded frames go straight to the relay, on the event
loop, and the thread (still started by aiortc) only waits for the end of the stream.

aiortc's sender gets `Frame`s to encode or `Packet`-like objects to `pack`. `attach_sender`
gives it a `ForwardingPacker` as its "encoder": `pack` returns the payloads the relay cut
once, so no encoder is ever made. PLI/FIR from the viewer set a force-keyframe flag meant
for the encoder; we route them to the relay instead, which asks the publisher (rate-limited).

tests/test_media_hooks.py checks each of these assumptions against the installed aiortc.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import aiortc
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc import rtcrtpreceiver as aiortc_receiver
from aiortc import rtcrtpsender as aiortc_sender

from .relay import ForwardedFrame

__all__ = [
    "CODEC_INSTANCES",
    "SUPPORTED_AIORTC",
    "ForwardingPacker",
    "FrameTap",
    "attach_sender",
    "count_codec_instances",
    "tap_receiver",
]

SUPPORTED_AIORTC = "1.16."
_RECEIVER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_SENDER_ENCODER = "_RTCRtpSender__encoder"

# Encoders and decoders aiortc made in this process; /metrics shows them. A forwarding
# server keeps both at zero: that is how the tests prove there is no transcoding.
CODEC_INSTANCES = {"encoder": 0, "decoder": 0}

OnFrame = Callable[[Any, bytes, int], object]  # (codec, encoded bytes, RTP timestamp)


class FrameTap:
    """Stands in for the receiver's decoder queue (`queue.Queue` duck type)."""

    def __init__(self, on_frame: OnFrame) -> None:
        self._on_frame = on_frame
        self._closed = threading.Event()

    def put(self, task: tuple[Any, Any] | None) -> None:
        """Called by aiortc on the event loop with each reassembled frame, or None at the end."""
        if task is None:
            self._closed.set()
            return
        codec, frame = task
        self._on_frame(codec, frame.data, frame.timestamp)

    def get(self) -> None:
        """Called by aiortc's decoder thread: nothing to decode, so wait for the end."""
        self._closed.wait()


def tap_receiver(receiver: RTCRtpReceiver, on_frame: OnFrame) -> FrameTap:
    """Route the receiver's encoded frames to `on_frame`; call before `receive()` runs."""
    if not hasattr(receiver, _RECEIVER_QUEUE):
        raise RuntimeError(f"aiortc {aiortc.__version__}: RTCRtpReceiver has no decoder queue to tap")
    tap = FrameTap(on_frame)
    setattr(receiver, _RECEIVER_QUEUE, tap)
    return tap


class ForwardingPacker:
    """Stands in for the sender's encoder: the frame is already encoded and packetized.

    aiortc sets `target_bitrate` on its sender's encoder from the viewer's REMB: here it
    is the viewer's bandwidth estimate, read by the ABR controller (abr.py), which is also
    told of each new estimate as it comes (`on_estimate`): a receiver sends one at once when
    it sees queues building, and waiting for the next stats round would let them fill.
    """

    def __init__(self, on_estimate: Callable[[int], None] = lambda bps: None) -> None:
        self._target_bitrate: int | None = None
        self.on_estimate = on_estimate

    @property
    def target_bitrate(self) -> int | None:
        return self._target_bitrate

    @target_bitrate.setter
    def target_bitrate(self, bps: int) -> None:
        self._target_bitrate = bps
        self.on_estimate(bps)

    def pack(self, frame: ForwardedFrame) -> tuple[list[bytes], int]:
        return frame.payloads, frame.timestamp

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        raise RuntimeError("liveroom forwards encoded media and never encodes")


def attach_sender(
    sender: RTCRtpSender,
    on_keyframe_request: Callable[[], None],
    on_estimate: Callable[[int], None] = lambda bps: None,
) -> None:
    """Make the sender forward without an encoder, pass PLI/FIR to `on_keyframe_request`
    and each REMB estimate (bits per second) to `on_estimate`."""
    if not hasattr(sender, _SENDER_ENCODER):
        raise RuntimeError(f"aiortc {aiortc.__version__}: RTCRtpSender has no encoder slot")
    setattr(sender, _SENDER_ENCODER, ForwardingPacker(on_estimate))
    # aiortc calls self._send_keyframe() on PLI and FIR; an instance attribute wins.
    sender._send_keyframe = on_keyframe_request  # type: ignore[method-assign]


def count_codec_instances() -> None:
    """Count every encoder/decoder aiortc makes in this process (idempotent)."""
    factories = (
        (vars(aiortc_sender), "get_encoder", "encoder"),
        (vars(aiortc_receiver), "get_decoder", "decoder"),
    )
    for namespace, name, role in factories:
        if not getattr(namespace[name], "_liveroom_counted", False):
            namespace[name] = _counted(namespace[name], role)


def _counted(factory: Callable[[Any], Any], role: str) -> Callable[[Any], Any]:
    def make(codec: Any) -> Any:
        CODEC_INSTANCES[role] += 1
        return factory(codec)

    make._liveroom_counted = True  # type: ignore[attr-defined]
    return make
