"""One WHEP viewer that decodes and reports, for rendition-switch measurements (run inside a
shaped network namespace by tests/test_media_abr_link.py and `media_bench abr`).

    python -m liveroom.loadtest.abr_viewer BASE ROOM TOKEN SECONDS

Prints one JSON line per decoded video frame whose size differs from the previous one
(`{"t": wall clock, "size": [w, h]}`), a `{"frames": n, "max_gap_s": longest wait between
two pictures in that second}` line every second, and at the
end the session's status (`GET {Location}`: its rung and the server's switch decisions)
as `{"status": {...}}`. Wall clocks are comparable with the server's on the same machine.

It stands in for a browser where aiortc's receiver differs in ways that matter on a
congested link: aiortc asks for a missing packet once (when it notices the gap), and its
jitter buffer holds every later frame until that packet comes, so a retransmission lost
too stalls the picture for seconds. libwebrtc asks again every round trip and decodes a
complete keyframe without waiting for older holes; so does this viewer (`ViewerNacks`,
`KeyframeSkippingBuffer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from liveroom.media.nacks import ReaskingNacks  # type: ignore[import-not-found,unused-ignore]

__all__ = ["main"]


REASK_S = 0.4  # a missing packet is asked for again after this long (about a congested round trip)
KEPT_BY_SERVER = 512  # liveroom.media.fastpath.HISTORY: older packets cannot come back


class ViewerNacks(ReaskingNacks):  # type: ignore[misc,unused-ignore]
    """Stands in for aiortc's NackGenerator (same duck type): asks for each missing packet
    when the gap shows and again every REASK_S until it comes, for as far back as the
    server keeps packets (aiortc asks once and forgets after 128)."""

    def __init__(self) -> None:
        super().__init__(time.monotonic, REASK_S, KEPT_BY_SERVER)
        KeyframeSkippingBuffer.nacks = self  # one video receiver per viewer process


class KeyframeSkippingBuffer(JitterBuffer):
    """aiortc's jitter buffer holds every frame behind a missing packet until the packet
    comes; a browser's decodes a complete keyframe as soon as it has one, dropping the
    incomplete frames before it. This one does too (H.264), so a switch onto a new rung's
    keyframe is not held up by the holes the congestion left in the old rung."""

    nacks: ViewerNacks | None = None

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        pli, frame = super().add(packet)
        if frame is not None or not self._is_video or self._origin is None:
            return pli, frame
        start = self._complete_keyframe()
        if not start:  # none, or at the front (where aiortc's own rule is waiting for it)
            return pli, frame
        self.remove(start)
        if self.nacks is not None and self._origin is not None:
            self.nacks.forget_before(self._origin)
        return pli, self._remove_frame(packet.sequence_number)

    def _complete_keyframe(self) -> int | None:
        """Where the first complete keyframe behind a hole starts (complete: all of it is here
        and the next frame's first packet too, which is how aiortc knows a frame ended)."""
        assert self._origin is not None
        slots = [self._packets[(self._origin + i) % self._capacity] for i in range(self._capacity)]
        first_hole = next((index for index, packet in enumerate(slots) if packet is None), None)
        if first_hole is None:
            return None
        for index, packet in enumerate(slots[first_hole:], first_hole):
            if packet is not None and _starts_keyframe(packet.payload) and _complete(slots[index:]):
                return index
        return None


def _complete(slots: list[Any]) -> bool:
    """The frame at slots[0] has all its packets, and the next frame has begun."""
    for packet in slots:
        if packet is None:
            return False
        if packet.timestamp != slots[0].timestamp:
            return True
    return False


def _starts_keyframe(payload: bytes) -> bool:
    """An H.264 RTP payload that begins an IDR access unit (SPS first, as liveroom sends them)."""
    if len(payload) < 2:
        return False
    kind = payload[0] & 0x1F
    if kind == 24:  # STAP-A: the first aggregated NAL unit
        return len(payload) > 3 and payload[3] & 0x1F in (5, 7)
    if kind == 28:  # FU-A: a start fragment
        return bool(payload[1] & 0x80) and payload[1] & 0x1F in (5, 7)
    return kind in (5, 7)


def say(item: dict[str, Any]) -> None:
    print(json.dumps(item), flush=True)


async def consume(track: MediaStreamTrack, counts: list[int], gaps: list[float]) -> None:
    size, last = None, None
    with contextlib.suppress(MediaStreamError):
        while True:
            frame: Any = await track.recv()
            counts[0] += 1
            now = time.monotonic()
            if last is not None:
                gaps[0] = max(gaps[0], now - last)
            last = now
            if (frame.width, frame.height) != size:
                size = (frame.width, frame.height)
                say({"t": time.time(), "size": list(size)})


async def run(base: str, room: str, token: str, seconds: float) -> None:
    rtcrtpreceiver.NackGenerator = ViewerNacks  # type: ignore[misc,assignment,unused-ignore]
    setattr(rtcrtpreceiver, "JitterBuffer", KeyframeSkippingBuffer)  # noqa: B010 (not exported)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", "recvonly")
    counts, gaps, tasks = [0], [0.0], []
    pc.on("track", lambda track: tasks.append(asyncio.ensure_future(consume(track, counts, gaps))))
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        sdp_type, offer = {"Content-Type": "application/sdp"}, pc.localDescription.sdp
        async with http.post(f"{base}/whep/{room}", data=offer, headers=sdp_type) as response:
            answer, location = await response.text(), response.headers.get("Location")
            if response.status != 201:
                raise SystemExit(f"WHEP: {response.status} {answer}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            say({"frames": counts[0], "t": time.time(), "max_gap_s": round(gaps[0], 3)})
            gaps[0] = 0.0
        async with http.get(f"{base}{location}") as response:
            say({"status": await response.json()})
        async with http.delete(f"{base}{location}"):
            pass
    for task in tasks:
        task.cancel()
    await pc.close()


def main() -> None:
    base, room, token, seconds = sys.argv[1:5]
    asyncio.run(run(base, room, token, float(seconds)))


if __name__ == "__main__":
    main()
