"""Real WebRTC peers for media tests: an aiortc publisher drawing a frame counter, viewers
that decode what they get and read the counter back, and WHIP/WHEP over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import urllib.request
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import aiohttp
import av
from aiortc import (
    AudioStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

WIDTH, HEIGHT, BITS = 320, 240, 16
BLOCK = WIDTH // BITS
BLACK, WHITE = 16, 235


def counter_frame(number: int) -> av.VideoFrame:
    """A frame whose picture is `number` in binary: 16 vertical bars, white for 1."""
    row = b"".join(bytes([WHITE if number >> (BITS - 1 - i) & 1 else BLACK]) * BLOCK for i in range(BITS))
    frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
    frame.planes[0].update(row * HEIGHT)
    frame.planes[1].update(bytes([128]) * frame.planes[1].buffer_size)
    frame.planes[2].update(bytes([128]) * frame.planes[2].buffer_size)
    return frame


def read_counter(frame: av.VideoFrame) -> int:
    """The number drawn by `counter_frame`, read back from a decoded picture."""
    plane = frame.planes[0]
    data = bytes(plane)
    y = frame.height // 2
    scale = frame.width / WIDTH
    number = 0
    for i in range(BITS):
        x = int((i * BLOCK + BLOCK // 2) * scale)
        number = number << 1 | (data[y * plane.line_size + x] > 128)
    return number


class CounterTrack(VideoStreamTrack):
    """30 fps of counter pictures; aiortc encodes them on the publisher side."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = counter_frame(self.count)
        frame.pts, frame.time_base = pts, time_base
        self.count += 1
        return frame


class ToneTrack(AudioStreamTrack):
    """A sine of `hz` at about -12 dBFS, paced as aiortc's silent track (20 ms frames);
    aiortc encodes it to Opus on the publisher side."""

    def __init__(self, hz: float) -> None:
        super().__init__()
        self.hz = hz

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()  # silence, timed and stamped
        assert isinstance(frame, av.AudioFrame) and frame.pts is not None
        step = 2 * math.pi * self.hz / frame.sample_rate
        tone = array("h", (int(8000 * math.sin(step * (frame.pts + i))) for i in range(frame.samples)))
        frame.planes[0].update(tone.tobytes())
        return frame


def codec_preferences(kind: str, mime_type: str) -> list[Any]:
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    return [c for c in codecs if c.mimeType.lower() == mime_type.lower()]


async def post_sdp(url: str, token: str | None, sdp: str, content_type: str = "application/sdp") -> Any:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http, http.post(url, data=sdp, headers=headers) as response:
        body = await response.text()
        return response.status, response.headers.get("Location"), body


async def delete(url: str, token: str | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.delete(url, headers=headers) as response:
        return response.status, await response.text()


class WhipError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


@dataclass
class Peer:
    """One side of a WHIP or WHEP session, made by `publish` or `play`."""

    pc: RTCPeerConnection
    location: str
    base: str
    token: str
    frames: dict[str, list[Any]] = field(default_factory=lambda: {"audio": [], "video": []})
    counters: list[int] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # decoded video pictures
    ended: dict[str, bool] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    counter_track: CounterTrack | None = None

    def describe(self) -> str:
        """What a failed wait on this peer saw: its connection and what it decoded."""
        got = {kind: len(pts) for kind, pts in self.frames.items()}
        state = f"{self.pc.connectionState}, ICE {self.pc.iceConnectionState}"
        sent = f", sent {self.counter_track.count} pictures" if self.counter_track else ""
        decoded = f", counters {self.counters[:3]}..{self.counters[-3:]}" if self.counters else ""
        return f"{state}, frames {got}, ended {self.ended}{sent}{decoded}"

    async def end(self) -> int:
        status, _ = await delete(self.base + self.location, self.token)
        await self.close()
        return status

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


async def _exchange(pc: RTCPeerConnection, url: str, token: str, trickle: bool = False) -> str:
    await pc.setLocalDescription(await pc.createOffer())
    offer, candidates = pc.localDescription.sdp, ""
    if trickle:  # send the offer bare, the candidates after it in a PATCH
        lines = offer.splitlines(keepends=True)
        candidates = "".join(line for line in lines if line.startswith(("a=candidate:", "a=end-of-cand")))
        offer = "".join(line for line in lines if not line.startswith(("a=candidate:", "a=end-of-cand")))
    status, location, body = await post_sdp(url, token, offer)
    if status != 201:
        await pc.close()
        raise WhipError(status, body)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    assert location is not None
    if trickle:
        base = url.split("/whip/")[0].split("/whep/")[0]
        fragment = "a=mid:0\r\n" + candidates + "a=end-of-candidates\r\n"
        got = await patch_fragment(base + location, token, fragment)
        assert got == 204, got
    return str(location)


async def patch_fragment(
    url: str, token: str | None, fragment: str, content_type: str = "application/trickle-ice-sdpfrag"
) -> int:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http, http.patch(url, data=fragment, headers=headers) as response:
        return response.status


async def publish(
    base: str,
    room: str,
    token: str,
    video_codec: str = "video/VP8",
    query: str = "",
    audio: bool = True,
    trickle: bool = False,
    tone_hz: float | None = None,
) -> Peer:
    """A host publishing the counter pictures and (`audio`) silence, or a tone of `tone_hz`."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = CounterTrack()
    pc.addTransceiver(track, "sendonly").setCodecPreferences(codec_preferences("video", video_codec))
    if audio:
        pc.addTransceiver(AudioStreamTrack() if tone_hz is None else ToneTrack(tone_hz), "sendonly")
    location = await _exchange(pc, f"{base}/whip/{room}{query}", token, trickle)
    return Peer(pc, location, base, token, counter_track=track)


LOW = 40_000  # the counters of publish_renditions' second rendition start here


class LowCounterTrack(CounterTrack):
    def __init__(self) -> None:
        super().__init__()
        self.count = LOW


async def publish_renditions(base: str, room: str, token: str, query: str = "") -> Peer:
    """A host publishing two VP8 renditions (ladder order; the second's counters from LOW) and silence."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for track in (CounterTrack(), LowCounterTrack()):
        pc.addTransceiver(track, "sendonly").setCodecPreferences(codec_preferences("video", "video/VP8"))
    pc.addTransceiver(AudioStreamTrack(), "sendonly")
    location = await _exchange(pc, f"{base}/whip/{room}{query}", token)
    return Peer(pc, location, base, token)


async def play(
    base: str,
    room: str,
    token: str,
    slot: str = "host",
    kinds: tuple[str, ...] = ("video", "audio"),
    video_codec: str | None = None,
) -> Peer:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for kind in kinds:
        transceiver = pc.addTransceiver(kind, "recvonly")
        if kind == "video" and video_codec is not None:
            transceiver.setCodecPreferences(codec_preferences("video", video_codec))
    peer = Peer(pc, "", base, token)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        peer.tasks.append(asyncio.ensure_future(_consume(peer, track)))

    peer.location = await _exchange(pc, f"{base}/whep/{room}?slot={slot}", token)
    return peer


async def _consume(peer: Peer, track: MediaStreamTrack) -> None:
    peer.ended[track.kind] = False
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            peer.frames[track.kind].append(frame.pts)
            if isinstance(frame, av.VideoFrame):
                peer.counters.append(read_counter(frame))
                peer.sizes.append((frame.width, frame.height))
    peer.ended[track.kind] = True


async def get_json(url: str, token: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status, await response.json()


async def wait_until(
    predicate: Any, within: float = 15, what: str = "condition", seen: Callable[[], object] | None = None
) -> None:
    """Poll `predicate` until true; past `within` s, fail naming `what` (and what `seen` says then)."""
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f": {seen()}" if seen else ""))
        await asyncio.sleep(0.05)


def scrape(base: str) -> dict[str, float]:
    """/metrics as {"name{labels}": value}."""
    with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
        text = response.read().decode()
    metrics: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][^ ]*) ([-0-9.e+naNIf]+)$", line)
        if match:
            metrics[match.group(1)] = float(match.group(2))
    return metrics


def video_time_base() -> Fraction:
    return Fraction(1, 90000)


PUBLISHER_SCRIPT = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
import media_support

async def main():
    base, room, bearer, query, codec = sys.argv[2:7]
    await media_support.publish(base, room, bearer, video_codec=codec, query=query)
    await asyncio.sleep(1.0)  # connected and sending
    print("sending", flush=True)
    await asyncio.sleep(3600)  # until killed

asyncio.run(main())
"""


async def publish_in_process(
    base: str, room: str, token: str, video_codec: str = "video/VP8", query: str = ""
) -> asyncio.subprocess.Process:
    """A publisher (`publish`) in a process of its own, returned once it sends: a test can
    SIGKILL it (no BYE, no DTLS close), as an encoder that crashes."""
    import sys
    from pathlib import Path

    here = str(Path(__file__).parent)
    args = (here, base, room, token, query, video_codec)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PUBLISHER_SCRIPT, *args, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    if line.strip() != b"sending":
        process.kill()
        await process.wait()
        raise WhipError(0, f"the publisher process of {room} failed")
    return process
