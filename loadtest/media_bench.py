"""Media benchmark: one 720p30 H.264 (~1.5 Mbps) publisher, N aiortc viewers over several processes.

    python -m liveroom.loadtest.media_bench steady --viewers 20,40 --seconds 8
    python -m liveroom.loadtest.media_bench ttff --samples 10
    python -m liveroom.loadtest.media_bench storm --viewers 100 [--gop-cache 0]
    python -m liveroom.loadtest.media_bench failover --runs 20
    python -m liveroom.loadtest.media_bench ladder --seconds 10
    python -m liveroom.loadtest.media_bench abr --cycles 10         # as root: a shaped link
    python -m liveroom.loadtest.media_bench hls-latency --seconds 30
    python -m liveroom.loadtest.media_bench ladder-live --seconds 20
    python -m liveroom.loadtest.media_bench composite-live --seconds 20
    python -m liveroom.loadtest.media_bench rtmp-ttff --samples 10     # RTMP vs WHIP (rtmp_bench.py)
    python -m liveroom.loadtest.media_bench rtmp-cost --seconds 20
    python -m liveroom.loadtest.media_bench rtmp-failover --runs 10
    python -m liveroom.loadtest.media_bench failover-soak --minutes 10   # 2% loss, 30 ms jitter
    python -m liveroom.loadtest.media_bench camera-cut --runs 10       # camera_bench.py

The server (`liveroom serve`, memory store) runs pinned to --server-cpus; this driver,
its publisher and its viewer processes run pinned to --load-cpus. The publisher sends a
clip encoded once up front (libx264, baseline, keyframe every 2 s), paced at 30 fps,
so the load side spends no CPU encoding; a keyframe request makes it jump to the next
GOP, as a live encoder would. `steady` viewers are cheap (`media_viewer.py`: frames and
keyframes counted from RTP headers, nothing decoded, so one load core holds hundreds),
except `--decoders` sample viewers on aiortc's full receive path that decode every frame
and check its size, to prove what is forwarded decodes. `storm` and `failover` viewers
count the encoded frames aiortc reassembles (liveroom.media.hooks.FrameTap), except
`--decoders` failover viewers that decode them (`DecodeCheck`); `ttff` viewers decode,
since the target is the first *decoded* frame.

`failover`: per run, a primary publisher in its own process and a backup (`?path=backup`)
in this one send the same clip; viewers watch; the primary's process is SIGKILLed and
the viewers' largest gap between frames is measured (target: p95 <= 200 ms, none lost).
Then the host restarts its encoder: a new primary process publishes (`POST /whip/{room}`);
once it has been healthy for `failover_return_after_s` the server returns the viewers to
it at a keyframe; the largest gap from its start to 1 s after the return (target <= 100
ms), and the decoding viewers' errors across both (target 0).

`ladder`: no server; the CPU cost of a server-side ABR ladder for one 720p30 source:
decode once, then per rung scale (one reformatter each) and encode (x264 ultrafast,
zerolatency) at the rung's bitrate (`media.abr_ladder`), in this process, single-threaded.
The rung with the source's own size is the source, forwarded: `cores` leaves it out.

`abr` (root): rendition switches under a real bandwidth limit. A host sends 640x360 noise
(~0.9 Mbps H.264); the server (ladder `360p:1000000,180p:300000`, `transcode_ladder`)
makes the 180p rung; one decoding viewer (`abr_viewer`) sits in a network namespace
behind a veth whose downlink `tc` limits to --limit-kbit for --limited-seconds, then
frees for --clean-seconds, --cycles times (the last free phase --settle-seconds). Per
switch: the server's decision (session status) to the viewer's first decoded picture of
the new size, split at the moment the new rung's keyframe left the server; per phase: the
rung the viewer ended it on (it should settle on the highest its link sustains), how long
it took to show that rung, and the longest the picture stood still.

`ladder-live`: the server-side ladder as wired in: the server's CPU (all its processes)
while the 720p30 clip is published and nobody watches, with `transcode_ladder` off, then on
(HLS off both times, so only the ladder differs).

`composite-live`: the co-stream composite's cost inside the server: a host and one stage
guest publish the 720p30 clip, HLS on; the server's CPU with `composite_layout` off, then
"side_by_side" (640x360, 15 fps: two 720p decodes and one 360p encode).

`hls-latency`: a host whose pictures show the wall clock (centiseconds, as 16 bars);
this driver polls the live playlist every 20 ms, fetches each new segment as soon as it
is listed, decodes it and reads the clock back: how old the segment's first and last
pictures are when it becomes available. A player adds its own buffer on top (hls.js
starts `liveSyncDurationCount` = 3 segments behind the live edge).

`hls-player`: the same host, played by FFmpeg's HLS demuxer in real time (`-re`, joining
3 segments behind the live edge like hls.js): each decoded picture's clock against the
wall clock when it comes out of the player, i.e. glass to glass minus the screen.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import jwt
from aiortc import AudioStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from av.packet import Packet as AvPacket
from liveroom.media.hooks import tap_receiver  # type: ignore[import-not-found,unused-ignore]

from .media_viewer import FrameCounter, count_frames
from .profile import start_profile, summarize_profile

if TYPE_CHECKING:
    Packet = AvPacket[Any]
else:
    Packet = AvPacket

SECRET = "media-bench-secret-0123456789-0123456789-0123456789"
WIDTH, HEIGHT, FPS, BITRATE, GOP = 1280, 720, 30, 1_500_000, 60
VIDEO_TIME_BASE = Fraction(1, 90000)


def token(user: str, role: str) -> str:
    claims = {"sub": user, "name": user, "role": role, "exp": int(time.time()) + 3600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


# -- the clip and the publisher -------------------------------------------------------------


def encode_clip(seconds: int = 4) -> list[Packet]:
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.bit_rate, codec.framerate, codec.time_base = BITRATE, Fraction(FPS), Fraction(1, FPS)
    params = f"keyint={GOP}:min-keyint={GOP}:scenecut=0:repeat-headers=1:vbv-maxrate=1500:vbv-bufsize=1500"
    codec.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "profile": "baseline",
        "x264-params": params,
    }
    ramp = bytes(range(256)) * (WIDTH // 256)
    packets: list[Packet] = []
    for i in range(seconds * FPS):
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        shift = (i * 8) % WIDTH
        frame.planes[0].update((ramp[shift:] + ramp[:shift]) * HEIGHT)
        frame.planes[1].update(bytes([128]) * frame.planes[1].buffer_size)
        frame.planes[2].update(bytes([(i * 3) & 0xFF]) * frame.planes[2].buffer_size)
        frame.pts, frame.time_base = i, codec.time_base
        packets += codec.encode(frame)
    return packets + list(codec.encode(None))


def noise_clip(width: int = 640, height: int = 360, kbps: int = 900) -> list[Packet]:
    """Two seconds (one GOP) of noise at about `kbps`: a rate that stays near its cap, so a
    bandwidth limit bites (a clip that compresses well would fit under any limit)."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.bit_rate, codec.framerate, codec.time_base = kbps * 1000, Fraction(FPS), Fraction(1, FPS)
    params = (
        f"keyint={GOP}:min-keyint={GOP}:scenecut=0:repeat-headers=1:vbv-maxrate={kbps}:vbv-bufsize={kbps}"
    )
    codec.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "profile": "baseline",
        "x264-params": params,
    }
    packets: list[Packet] = []
    for i in range(GOP):
        frame = av.VideoFrame(width, height, "yuv420p")
        for plane in frame.planes:
            plane.update(os.urandom(plane.buffer_size))
        frame.pts, frame.time_base = i, codec.time_base
        packets += codec.encode(frame)
    return packets + list(codec.encode(None))


async def noise_publisher(base: str, room: str, bearer: str) -> RTCPeerConnection:
    """A host sending `noise_clip()` as its one video stream (H.264), paced at 30 fps."""
    clip = ClipTrack(noise_clip())
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver(clip, "sendonly")
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    transceiver.setCodecPreferences(h264)
    transceiver.sender._send_keyframe = clip.request_keyframe  # type: ignore[method-assign]  # PLI/FIR
    await negotiate(pc, f"{base}/whip/{room}", bearer)
    return pc


class ClipTrack(MediaStreamTrack):
    """Pre-encoded packets at 30 fps, looping; a keyframe request jumps to the next GOP."""

    kind = "video"

    def __init__(self, packets: list[Packet]) -> None:
        super().__init__()
        self.packets = packets
        self.index = 0
        self.sent = 0
        self.keyframes_at: list[float] = []
        self.sent_at: list[float] = []  # wall clock, to compare with what viewers got
        self.started: float | None = None

    def request_keyframe(self) -> None:
        if self.index % GOP:
            self.index = (self.index // GOP + 1) * GOP % len(self.packets)

    async def recv(self) -> Packet:
        now = time.monotonic()
        self.started = self.started or now
        wait = self.started + self.sent / FPS - now
        if wait > 0:
            await asyncio.sleep(wait)
        source = self.packets[self.index]
        packet = av.Packet(bytes(source))
        packet.pts, packet.time_base = self.sent * 90000 // FPS, VIDEO_TIME_BASE
        if source.is_keyframe:
            self.keyframes_at.append(time.monotonic())
        self.index = (self.index + 1) % len(self.packets)
        self.sent += 1
        self.sent_at.append(time.time())
        return packet


async def post(url: str, bearer: str, sdp: str) -> tuple[str, str]:
    import aiohttp

    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {bearer}"}
    async with aiohttp.ClientSession() as http, http.post(url, data=sdp, headers=headers) as response:
        body = await response.text()
        if response.status != 201:
            raise RuntimeError(f"{url}: {response.status} {body}")
        return response.headers["Location"], body


async def negotiate(pc: RTCPeerConnection, url: str, bearer: str, lean: bool = False) -> str:
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    if lean:
        # Load-side economy: without abs-send-time, aiortc's viewer skips its per-packet
        # bandwidth estimator (REMB), which would cost the load generator more than the server.
        offer = "".join(line for line in offer.splitlines(True) if "abs-send-time" not in line)
    location, answer = await post(url, bearer, offer)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return location


async def start_publisher(
    base: str, room: str, clip: ClipTrack, query: str = "", audio: bool = False
) -> RTCPeerConnection:
    """A host sending the clip (and with `audio`, silence as Opus, encoded by aiortc here)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver(clip, "sendonly")
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    transceiver.setCodecPreferences(h264)
    if audio:
        pc.addTransceiver(AudioStreamTrack(), "sendonly")
    transceiver.sender._send_keyframe = clip.request_keyframe  # type: ignore[method-assign]  # PLI/FIR
    await negotiate(pc, f"{base}/whip/{room}{query}", token("bench-host", "host"))
    return pc


# -- viewers (in their own processes) ---------------------------------------------------------


class DecodeCheck:
    """Decodes the encoded frames a viewer's FrameTap hands over (PyAV's H.264 decoder, as
    aiortc's receiver would) and counts what goes wrong: FFmpeg errors, pictures FFmpeg
    flags corrupt, pictures of another size. `arrivals`: when each good picture came out."""

    def __init__(self, arrivals: list[float]) -> None:
        self.arrivals = arrivals
        self.errors = 0
        self._codec = av.CodecContext.create("h264", "r")
        self._codec.thread_count = 1

    def frame(self, codec: Any, data: bytes, timestamp: int) -> None:
        try:
            pictures = self._codec.decode(av.Packet(data))
        except av.FFmpegError:
            self.errors += 1
            return
        for picture in pictures:
            if picture.is_corrupt or (picture.width, picture.height) != (WIDTH, HEIGHT):
                self.errors += 1
            else:
                self.arrivals.append(time.time())


async def counting_viewer(
    base: str,
    room: str,
    user: str,
    arrivals: list[float],
    decoder: DecodeCheck | None = None,
    sound: list[tuple[float, int]] | None = None,
) -> RTCPeerConnection:
    """A viewer that counts reassembled encoded frames; with `decoder`, that decodes them;
    with `sound`, that notes each Opus frame's arrival and RTP timestamp too."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = pc.addTransceiver("video", "recvonly").receiver
    count = decoder.frame if decoder is not None else lambda codec, data, ts: arrivals.append(time.time())
    tap_receiver(receiver, count)
    if sound is not None:
        log = sound
        tap_receiver(
            pc.addTransceiver("audio", "recvonly").receiver,
            lambda codec, data, ts: log.append((time.time(), ts)),
        )
    await negotiate(pc, f"{base}/whep/{room}", token(user, "viewer"), lean=True)
    return pc


async def cheap_viewer(base: str, room: str, user: str, counter: FrameCounter) -> RTCPeerConnection:
    """A viewer that counts frames from RTP headers (`media_viewer.py`)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = pc.addTransceiver("video", "recvonly").receiver
    await pc.setLocalDescription(await pc.createOffer())
    count_frames(receiver, counter)
    await negotiate(pc, f"{base}/whep/{room}", token(user, "viewer"), lean=True)
    return pc


async def decoding_viewer(base: str, room: str, user: str, counter: FrameCounter) -> RTCPeerConnection:
    """A sample viewer on aiortc's full path: every frame decoded, its size checked."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", "recvonly")
    decoders: list[asyncio.Task[None]] = []

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        async def decode() -> None:
            while True:
                try:
                    frame = await track.recv()
                except Exception:  # the track ended
                    return
                if (frame.width, frame.height) == (WIDTH, HEIGHT):  # type: ignore[union-attr]
                    counter.arrivals.append(time.time())
                    counter.keyframes += bool(frame.key_frame)  # type: ignore[union-attr]
                else:
                    counter.undecryptable += 1  # a wrong picture counts as a failure

        decoders.append(asyncio.ensure_future(decode()))

    await negotiate(pc, f"{base}/whep/{room}", token(user, "viewer"))
    return pc


async def run_viewers(
    base: str, room: str, names: list[str], start_at: float, end_at: float, decoders: int = 0
) -> list[Any]:
    """`steady` viewers of one process: the first `decoders` of them decode."""
    await asyncio.sleep(max(0.0, start_at - time.time()))
    counters = [FrameCounter() for _ in names]
    joined_at, cpu_at_join = time.time(), time.process_time()
    pcs = await asyncio.gather(
        *(
            (decoding_viewer if n < decoders else cheap_viewer)(base, room, name, counter)
            for n, (name, counter) in enumerate(zip(names, counters, strict=True))
        ),
        return_exceptions=True,
    )
    await asyncio.sleep(max(0.0, end_at - time.time()))
    busy = (time.process_time() - cpu_at_join) / (time.time() - joined_at)  # this process's load
    for pc in pcs:
        if isinstance(pc, RTCPeerConnection):
            await pc.close()
    return [
        {
            "ok": isinstance(pc, RTCPeerConnection),
            "decodes": n < decoders,
            "arrivals": c.arrivals,
            "keyframes": c.keyframes,
            "losses": c.losses,
            "failures": c.undecryptable,
            "busy": busy,
            "process": os.getpid(),
        }
        for n, (pc, c) in enumerate(zip(pcs, counters, strict=True))
    ]


async def run_tapping_viewers(
    base: str, room: str, names: list[str], start_at: float, end_at: float, decoders: int = 0
) -> list[Any]:
    """`storm` viewers: aiortc reassembles frames, the FrameTap counts them."""
    await asyncio.sleep(max(0.0, start_at - time.time()))
    arrivals: list[list[float]] = [[] for _ in names]
    pcs = await asyncio.gather(
        *(counting_viewer(base, room, name, log) for name, log in zip(names, arrivals, strict=True)),
        return_exceptions=True,
    )
    await asyncio.sleep(max(0.0, end_at - time.time()))
    for pc in pcs:
        if isinstance(pc, RTCPeerConnection):
            await pc.close()
    return [
        {"ok": isinstance(pc, RTCPeerConnection), "arrivals": log}
        for pc, log in zip(pcs, arrivals, strict=True)
    ]


def viewer_process(args: tuple[Any, ...], results: Any, tapping: bool) -> None:
    import uvloop

    runner = run_tapping_viewers if tapping else run_viewers
    results.put(uvloop.run(runner(*args)))


def spawn_viewers(
    base: str,
    room: str,
    count: int,
    processes: int,
    start_at: float,
    end_at: float,
    decoders: int = 0,
    tapping: bool = False,
) -> list[Any]:
    """Viewers in `processes` processes; the first process holds the `decoders` samples."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    names = [f"viewer-{i}" for i in range(count)]
    procs = [
        context.Process(
            target=viewer_process,
            args=(
                (base, room, names[p::processes], start_at, end_at, decoders if p == 0 else 0),
                results,
                tapping,
            ),
        )
        for p in range(processes)
    ]
    for proc in procs:
        proc.start()
    collected: list[Any] = []
    for _ in procs:
        collected += results.get(timeout=end_at - time.time() + 60)
    for proc in procs:
        proc.join(10)
    return collected


# -- the server ---------------------------------------------------------------------------------


class Server:
    def __init__(
        self,
        cpus: str,
        workers: int,
        gop_cache: int | None,
        fast_send: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.directory = tempfile.TemporaryDirectory(prefix="media-bench-")
        self.cpus = {int(c) for c in cpus.split(",")}
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "LIVEROOM_JWT_SECRET": SECRET,
            "LIVEROOM_STORE_KIND": "memory",
            "LIVEROOM_MEDIA_WORKERS": str(workers),
            "LIVEROOM_SERVER_WORKERS": "1",  # one liveroom process (the default: one per core)
            "LIVEROOM_MEDIA_MAX_VIEWERS_PER_ROOM": "100000",
            # INFO shows each failover's reason: MEDIA_BENCH_LOG_LEVEL=INFO
            "LIVEROOM_LOG_LEVEL": os.environ.get("MEDIA_BENCH_LOG_LEVEL", "WARNING"),
            "LIVEROOM_MEDIA_FAST_SEND": str(fast_send).lower(),
        }
        if gop_cache is not None:
            env["LIVEROOM_MEDIA_GOP_CACHE_FRAMES"] = str(gop_cache)
        env.update(extra_env or {})
        command = ["taskset", "-c", cpus, sys.executable, "-m", "liveroom", "serve", "--port", str(self.port)]
        self.process = subprocess.Popen(command, env=env, cwd=self.directory.name)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def cpu_seconds(self) -> float:
        """CPU time of the server and its media workers so far."""
        return sum(self.cpu_by_process().values())

    def cpu_by_process(self) -> dict[int, float]:
        """CPU seconds so far of the node process and of each of its children (media workers)."""
        ticks = os.sysconf("SC_CLK_TCK")
        found = {}
        for pid in [self.process.pid, *_children(self.process.pid)]:
            try:
                fields = _stat(pid)
            except OSError:
                continue
            found[pid] = (int(fields[11]) + int(fields[12])) / ticks
        return found

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.base + "/metrics", timeout=5) as response:
            lines = response.read().decode().splitlines()
        pairs = (line.rsplit(" ", 1) for line in lines if line and not line.startswith("#"))
        return {name: float(value) for name, value in pairs}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)
        self.directory.cleanup()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = _stat(int(entry))
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the phases ---------------------------------------------------------------------------------


async def steady(args: argparse.Namespace, server: Server, clip: ClipTrack) -> list[dict[str, Any]]:
    rows = []
    for count in (int(n) for n in args.viewers.split(",")):
        start_at = time.time() + 0.5
        end_at = start_at + args.connect_seconds + args.seconds
        loop = asyncio.get_running_loop()
        sampler = loop.run_in_executor(None, _cpu_series, server, start_at, end_at)
        profile = Path(server.directory.name) / f"profile-{count}.txt"
        profiler = (
            loop.run_in_executor(
                None, _profile, server, start_at + args.connect_seconds, args.seconds - 1, profile
            )
            if args.profile
            else None
        )
        results = await loop.run_in_executor(
            None, spawn_viewers, server.base, "bench", count, args.processes, start_at, end_at, args.decoders
        )
        rows.append(_steady_row(count, results, await sampler, end_at, clip.sent_at))
        if profiler is not None:
            await profiler
            rows[-1]["server_profile"] = summarize_profile(profile, top=20)
        print(json.dumps(rows[-1]), flush=True)
        await asyncio.sleep(1.5)  # let the closed viewers go before the next level
    return rows


CpuSeries = list[tuple[float, dict[int, float]]]


def _profile(server: Server, at: float, seconds: float, output: Path) -> None:
    """py-spy on the server and its media workers during the steady part."""
    time.sleep(max(0.0, at - time.time()))
    process = start_profile(server.process.pid, seconds, output, subprocesses=True)
    if process is not None:
        process.wait(seconds + 30)


def _steady_row(
    count: int, results: list[Any], cpu: CpuSeries, end_at: float, sent_at: list[float]
) -> dict[str, Any]:
    """Figures over the steady part: from 4 s after the last viewer's first frame (its GOP
    replay done) to just before the viewers leave."""
    got = [r for r in results if r["arrivals"]]
    start = max(r["arrivals"][0] for r in got) + 4.0 if got else end_at
    end = end_at - 0.5
    seconds = end - start
    if seconds < 2 or len(got) < count:
        return {"viewers": count, "receiving": len(got), "error": "viewers did not all settle in time"}
    inside = [(t, c) for t, c in cpu if start <= t <= end]
    (first_at, first), (last_at, last) = inside[0], inside[-1]
    by_process = {pid: (last[pid] - first.get(pid, 0.0)) / (last_at - first_at) for pid in last}
    cores_busy = by_process.pop(-1)
    server_cpu = sum(by_process.values())
    fps = [sum(start <= t < end for t in r["arrivals"]) / seconds for r in results]
    source_fps = sum(start <= t < end for t in sent_at) / seconds
    decoding = [f for f, r in zip(fps, results, strict=True) if r.get("decodes")]
    cheap = [r for r in results if not r.get("decodes")]
    return {
        "viewers": count,
        "measured_s": round(seconds, 1),
        "server_cpu_percent": round(server_cpu * 100, 1),
        "server_cpu_ms_per_viewer_s": round(server_cpu / count * 1000, 2),
        # The node first, then its media workers (none with media.workers = 1).
        "cpu_percent_by_process": [round(100 * share, 1) for share in by_process.values()],
        "server_cores_busy_percent": round(100 * cores_busy, 1),  # by anyone: above the server's = others
        "publisher_fps": round(source_fps, 2),
        "fps_mean": round(statistics.mean(fps), 2),
        "fps_min": round(min(fps), 2),
        "viewers_at_29fps": sum(f >= 29 for f in fps),
        "decoding_viewers_fps": [round(f, 2) for f in decoding],
        "decode_failures": sum(r.get("failures", 0) for r in results),
        "keyframes_per_viewer_min": min((r.get("keyframes", 0) for r in cheap), default=None),
        "rtp_packets_lost_steady": sum(
            n for r in results for t, n in r.get("losses", ()) if start <= t < end
        ),
        "rtp_packets_lost_joining": sum(n for r in results for t, n in r.get("losses", ()) if t < start),
        "viewer_processes_cpu_percent": round(100 * sum({r["process"]: r["busy"] for r in results}.values())),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_series(server: Server, start: float, end: float) -> CpuSeries:
    """(wall time, CPU seconds by server process) every 0.25 s; key -1 is the busy time of
    the server's cores, whoever used them (other load on a shared machine shows there)."""
    time.sleep(max(0.0, start - time.time()))
    series = []
    while time.time() < end:
        series.append((time.time(), {**server.cpu_by_process(), -1: _cores_busy_seconds(server.cpus)}))
        time.sleep(0.25)
    return series


def _cores_busy_seconds(cpus: set[int]) -> float:
    """Non-idle time of these cores since boot (/proc/stat; idle and iowait left out)."""
    ticks = os.sysconf("SC_CLK_TCK")
    busy = 0
    with open("/proc/stat") as stat:
        for line in stat:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                values = [int(v) for v in fields]
                busy += sum(values[:8]) - values[3] - values[4]
    return busy / ticks


async def ttff(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    samples = []
    decoders: set[asyncio.Future[None]] = set()
    for i in range(args.samples):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", "recvonly")
        first = asyncio.get_running_loop().create_future()

        @pc.on("track")
        def on_track(track: MediaStreamTrack, first: asyncio.Future[float] = first) -> None:
            async def decode_one() -> None:
                await track.recv()  # the first *decoded* frame
                first.set_result(time.monotonic())

            decoders.add(asyncio.ensure_future(decode_one()))

        started = time.monotonic()
        await negotiate(pc, f"{server.base}/whep/bench", token(f"ttff-{i}", "viewer"))
        samples.append((await asyncio.wait_for(first, 10) - started) * 1000)
        await pc.close()
        await asyncio.sleep(0.3)
    samples.sort()
    return {
        "samples": len(samples),
        "ttff_ms_median": round(statistics.median(samples), 1),
        "ttff_ms_max": round(samples[-1], 1),
        "ttff_ms_min": round(samples[0], 1),
    }


async def storm(args: argparse.Namespace, server: Server, clip: ClipTrack) -> dict[str, Any]:
    await asyncio.sleep(3)  # a steady stream first: two natural keyframes (GOP = 2 s)
    requests_before = _keyframe_requests(server)
    start_at = time.time() + 0.5
    mono_start = time.monotonic() + 0.5
    loop = asyncio.get_running_loop()
    results = await loop.run_in_executor(
        None,
        spawn_viewers,
        server.base,
        "bench",
        args.viewers_storm,
        args.processes,
        start_at,
        start_at + 20,
        0,
        True,
    )
    joined = [r for r in results if r["ok"] and r["arrivals"]]
    last_first_frame = max(r["arrivals"][0] for r in joined) - start_at
    window_end = mono_start + last_first_frame + 1.0
    storm_keyframes = [t for t in clip.keyframes_at if mono_start <= t <= window_end]
    return {
        "viewers": len(results),
        "got_video": len(joined),
        "storm_seconds": round(last_first_frame + 1.0, 2),
        "publisher_keyframes_in_storm": len(storm_keyframes),
        "max_keyframes_in_any_1s": _max_in_window(storm_keyframes, 1.0),
        "keyframe_requests_to_publisher": _keyframe_requests(server) - requests_before,
        "first_frame_s_median": round(statistics.median(r["arrivals"][0] - start_at for r in joined), 2),
    }


# -- failover: SIGKILL of the primary publisher's process ---------------------------------------


def primary_process(base: str, room: str, clip: list[tuple[bytes, bool]], ready: Any, audio: bool) -> None:
    async def main() -> None:
        packets = []
        for data, keyframe in clip:
            packet = av.Packet(data)
            packet.is_keyframe = keyframe
            packets.append(packet)
        try:
            await start_publisher(base, room, ClipTrack(packets), audio=audio)
        except Exception as exc:  # e.g. 409: the server would not take this primary
            ready.put(repr(exc))
            return
        await asyncio.sleep(1.0)  # connected and sending
        ready.put("sending")
        await asyncio.sleep(3600)  # until SIGKILLed

    asyncio.run(main())


async def start_primary(base: str, room: str, raw: list[tuple[bytes, bool]], audio: bool = False) -> Any:
    """A primary publisher in a process of its own (`primary_process`), once it sends."""
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    primary = context.Process(target=primary_process, args=(base, room, raw, ready, audio))
    primary.start()
    # Its start-up (imports, ICE, DTLS) shares the load core with the backup publisher and
    # the viewers: niced meanwhile, so a restarting encoder does not stall the backup (on
    # separate machines in life; before, this made the backup miss 100 ms and switch).
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, primary.pid or 0, 15)
    state = await asyncio.get_running_loop().run_in_executor(None, ready.get, True, 60)
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, primary.pid or 0, 0)
    if state != "sending":
        raise RuntimeError(f"the primary publisher of {room} failed: {state}")
    return primary


def largest_gap_ms(arrivals: list[float], since: float, until: float) -> float:
    around = [t for t in arrivals if since <= t <= until]
    return max((b - a for a, b in itertools.pairwise(around)), default=9.9) * 1000


async def wait_for_return(server: Server, room: str, timeout_s: float) -> bool:
    """Until the room's viewers are back on the primary (its failover metric to it)."""
    key = f'liveroom_media_failovers_total{{room="{room}",to="primary"}}'
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (await loop.run_in_executor(None, server.metrics)).get(key, 0) >= 1:
            return True
        await asyncio.sleep(0.2)
    return False


async def failover_run(
    args: argparse.Namespace, server: Server, clip: ClipTrack, room: str, raw: list[tuple[bytes, bool]]
) -> dict[str, Any]:
    """One run: the primary is SIGKILLed, then a restarted primary comes up and is returned to."""
    primary = await start_primary(server.base, room, raw, args.audio)
    backup = await start_publisher(server.base, room, ClipTrack(clip.packets), "?path=backup", args.audio)
    arrivals: list[list[float]] = [[] for _ in range(args.failover_viewers)]
    sounds: list[list[tuple[float, int]]] = [[] for _ in arrivals]
    decoders = [DecodeCheck(log) for log in arrivals[: args.decoders]]
    viewers = [
        await counting_viewer(
            server.base,
            room,
            f"fo-{i}",
            log,
            decoders[i] if i < len(decoders) else None,
            sounds[i] if args.audio else None,
        )
        for i, log in enumerate(arrivals)
    ]
    for _ in range(150):  # up to 15 s for every viewer to play (joining is slow on a busy core)
        if all(len(log) >= 30 for log in arrivals):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    killed_at = time.time()
    os.kill(primary.pid or 0, 9)  # SIGKILL: no BYE, no DTLS close; the link just goes dark
    await asyncio.sleep(1.5)
    restarted_at = time.time()  # the host restarts its encoder: a new primary, a new process
    restarted = await start_primary(server.base, room, raw, args.audio)
    returned = await wait_for_return(server, room, args.return_timeout_s)
    await asyncio.sleep(1.0)
    ended_at = time.time()
    window = (killed_at - 0.5, killed_at + 1.5)
    result = {
        "gaps": [largest_gap_ms(log, *window) for log in arrivals],
        "audio_gaps": [
            largest_gap_ms([at for at, _ in log], killed_at - 0.5, killed_at + 1.5) for log in sounds if log
        ],
        "audio_missing": [missing_sound_ms(log, killed_at - 0.5, killed_at + 1.5) for log in sounds if log],
        "return_gaps": [largest_gap_ms(log, restarted_at, ended_at) for log in arrivals] if returned else [],
        "returned": returned,
        "disconnected": sum(pc.connectionState != "connected" for pc in viewers),
        "decode_errors": sum(d.errors for d in decoders),
        "decoded": sum(len(d.arrivals) for d in decoders),
    }
    for pc in [*viewers, backup]:
        await pc.close()
    os.kill(restarted.pid or 0, 9)
    for process in (primary, restarted):
        process.join(5)
    return result


def missing_sound_ms(log: list[tuple[float, int]], since: float, until: float) -> float:
    """Sound missing from a viewer's timeline (ms): RTP timestamp steps beyond one 20 ms
    Opus frame (960 at 48 kHz), summed, between frames that arrived in the window. What a
    player would have to conceal (a click), whatever the arrival times."""
    stamps = [ts for at, ts in log if since <= at <= until]
    return sum(max(0, ((b - a) & 0xFFFFFFFF) - 960) for a, b in itertools.pairwise(stamps)) / 48


def gap_figures(name: str, every: str, gaps: list[float]) -> dict[str, Any]:
    """p50, p95 and max of some gaps (ms) as `name`_p50 ..., and every gap as `every`."""
    gaps = sorted(gaps)
    if not gaps:
        return {f"{name}_p50": None, f"{name}_p95": None, f"{name}_max": None, every: []}
    return {
        f"{name}_p50": round(statistics.median(gaps), 1),
        f"{name}_p95": round(gaps[max(0, round(0.95 * len(gaps)) - 1)], 1),
        f"{name}_max": round(gaps[-1], 1),
        every: [round(gap) for gap in gaps],
    }


async def failover(args: argparse.Namespace, server: Server, clip: ClipTrack) -> dict[str, Any]:
    raw = [(bytes(packet), bool(packet.is_keyframe)) for packet in clip.packets]
    runs = []
    for n in range(args.runs):
        runs.append(await failover_run(args, server, clip, f"failover-{n}", raw))
        shown = {key: [round(v) for v in runs[-1][key]] for key in ("gaps", "return_gaps", "audio_gaps")}
        print(f"failover-{n}: {shown}", file=sys.stderr)
    switches = int(sum(v for k, v in server.metrics().items() if k.startswith("liveroom_media_failovers")))
    return {
        "runs": args.runs,
        "viewers_per_run": args.failover_viewers,
        "decoding_viewers_per_run": min(args.decoders, args.failover_viewers),
        **gap_figures("gap_ms", "gaps_ms", [gap for run in runs for gap in run["gaps"]]),
        **gap_figures("return_gap_ms", "return_gaps_ms", [g for run in runs for g in run["return_gaps"]]),
        **gap_figures("audio_gap_ms", "audio_gaps_ms", [g for run in runs for g in run["audio_gaps"]]),
        **gap_figures("audio_missing_ms", "audio_missing", [g for run in runs for g in run["audio_missing"]]),
        "returns": sum(run["returned"] for run in runs),
        "viewers_disconnected": sum(run["disconnected"] for run in runs),
        "decode_errors": sum(run["decode_errors"] for run in runs),
        "pictures_decoded": sum(run["decoded"] for run in runs),
        "failovers_counted": switches,
    }


# -- ladder: decode once, encode each rung ----------------------------------------------------


def ladder(args: argparse.Namespace) -> dict[str, Any]:
    from liveroom.media.abr import parse_ladder  # type: ignore[import-not-found,unused-ignore]

    from liveroom.config import MediaConfig

    rungs = parse_ladder(MediaConfig().abr_ladder)
    clip = encode_clip()
    decoder = av.CodecContext.create("h264", "r")
    decoder.thread_count = 1
    encoders = [_rung_encoder(rung.height, rung.bitrate_bps) for rung in rungs]
    cpu = {
        "decode": 0.0,
        **{f"{r.name} scale": 0.0 for r in rungs},
        **{f"{r.name} encode": 0.0 for r in rungs},
    }
    frames = round(args.seconds * FPS)
    encoded_bytes = [0] * len(rungs)
    for index in range(frames):
        started = time.process_time()
        pictures = decoder.decode(clip[index % len(clip)])
        cpu["decode"] += time.process_time() - started
        for picture in pictures:
            picture.pts, picture.time_base = index, Fraction(1, FPS)
            for rung, (encoder, size), n in zip(rungs, encoders, range(len(rungs)), strict=True):
                started = time.process_time()
                scaled = picture.reformat(width=size[0], height=size[1], format="yuv420p")
                cpu[f"{rung.name} scale"] += time.process_time() - started
                started = time.process_time()
                encoded_bytes[n] += sum(packet.size for packet in encoder.encode(scaled))
                cpu[f"{rung.name} encode"] += time.process_time() - started
    seconds = frames / FPS
    top = [step for step in cpu if step.startswith(f"{HEIGHT}p ")]  # the source itself is that rung
    return {
        "source": f"{WIDTH}x{HEIGHT} H.264 {FPS} fps, {seconds:.0f} s",
        "cores": round(sum(value for step, value in cpu.items() if step not in top) / seconds, 3),
        "cores_if_the_top_rung_is_reencoded": round(sum(cpu.values()) / seconds, 3),
        "cores_by_step": {step: round(value / seconds, 3) for step, value in cpu.items()},
        "rung_bitrate_bps": {
            r.name: round(b * 8 / seconds) for r, b in zip(rungs, encoded_bytes, strict=True)
        },
    }


def _rung_encoder(height: int, bitrate: int) -> tuple[Any, tuple[int, int]]:
    width = (height * WIDTH // HEIGHT) // 2 * 2
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.bit_rate, codec.framerate, codec.time_base = bitrate, Fraction(FPS), Fraction(1, FPS)
    codec.thread_count = 1
    kbps = bitrate // 1000
    codec.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "profile": "baseline",
        "x264-params": f"keyint={GOP}:scenecut=0:repeat-headers=1:vbv-maxrate={kbps}:vbv-bufsize={kbps}",
    }
    return codec, (width, height)


def _keyframe_requests(server: Server) -> float:
    return sum(
        v for k, v in server.metrics().items() if k.startswith("liveroom_media_keyframe_requests_total")
    )


def _max_in_window(times: list[float], width: float) -> int:
    return max((sum(t <= u < t + width for u in times) for t in times), default=0)


# -- abr: rendition switches behind a shaped link ------------------------------------------------

ABR_SIZES = {"360p": (640, 360), "180p": (320, 180)}


async def abr(args: argparse.Namespace) -> dict[str, Any]:
    from liveroom.loadtest.shaped_link import ShapedLink, can_shape  # type: ignore[import-not-found,unused-ignore]

    reason = can_shape()
    if reason is not None:
        raise SystemExit(f"abr {reason}")
    os.sched_setaffinity(0, {int(c) for c in args.load_cpus.split(",")})
    env = {
        "LIVEROOM_SERVER_HOST": "0.0.0.0",
        "LIVEROOM_MEDIA_STATS_INTERVAL_S": "0.5",
        "LIVEROOM_MEDIA_TRANSCODE_LADDER": "true",
        "LIVEROOM_MEDIA_ABR_LADDER": "360p:1000000,180p:300000",
        "LIVEROOM_MEDIA_HLS_ENABLED": "false",
    }
    server = Server(args.server_cpus, 1, None, extra_env=env)
    cycle = args.clean_seconds + args.limited_seconds
    try:
        with ShapedLink("bench") as link:
            publisher = await noise_publisher(server.base, "abr", token("bench-host", "host"))
            base = f"http://{link.host_ip}:{server.port}"
            seconds = str(args.cycles * cycle + args.settle_seconds)
            command = ["taskset", "-c", args.load_cpus, sys.executable, "-m", "liveroom.loadtest.abr_viewer"]
            viewer = link.spawn([*command, base, "abr", token("bench-viewer", "viewer"), seconds])
            lines, phases = await _abr_cycles(args, link, viewer)
            assert viewer.stdout is not None
            viewer.stdout.close()
            viewer.wait()
            await publisher.close()
    finally:
        server.stop()
    return _abr_report(args, lines, phases)


async def _abr_cycles(args: argparse.Namespace, link: Any, viewer: Any) -> tuple[list[Any], list[Any]]:
    """Clean, limited, clean, ...: the viewer's report lines and each phase's (name, start, end)."""
    lines: list[dict[str, Any]] = []
    phases: list[tuple[str, float, float]] = []

    async def read_until(until: float) -> None:
        while time.time() < until:
            line = await asyncio.get_running_loop().run_in_executor(None, viewer.stdout.readline)
            if not line:
                return
            lines.append(json.loads(line))

    start = time.time()
    await read_until(start + args.clean_seconds)
    phases.append(("clean", start, time.time()))
    for cycle in range(args.cycles):
        link.limit(args.limit_kbit)
        start = time.time()
        await read_until(start + args.limited_seconds)
        phases.append(("limited", start, time.time()))
        link.lift()
        start = time.time()
        # The last free phase is longer: failed trials back off (up to 32 s), and the
        # viewer must still be seen back on the rung its link sustains.
        last = cycle == args.cycles - 1
        await read_until(start + (args.settle_seconds if last else args.clean_seconds))
        phases.append(("clean", start, time.time()))
    await read_until(time.time() + 30)  # the status line
    return lines, phases


def _abr_report(args: argparse.Namespace, lines: list[Any], phases: list[Any]) -> dict[str, Any]:
    sizes = [(line["t"], tuple(line["size"])) for line in lines if "size" in line]
    status = next(line["status"] for line in lines if "status" in line)
    switches = status["quality"]["switches"]
    times: dict[str, list[int]] = {"down": [], "up": []}
    timeline, unseen = [], 0
    ends = [s["decided_at"] for s in switches[1:]] + [float("inf")]
    for switch, until in zip(switches, ends, strict=True):
        # The new rung's first picture, before the next decision (a trial that failed before
        # its keyframe got through shows none: counted apart, not matched to a later one).
        size = ABR_SIZES[switch["to"]]
        seen = [t for t, shown in sizes if switch["decided_at"] <= t < until and shown == size]
        way = "down" if switch["to"] == "180p" else "up"
        entry = {"way": way, "trial": switch["trial"], "at_s": round(switch["decided_at"] - phases[0][1], 2)}
        # How long into its phase the decision came (a step down: after the limit began).
        began = max((start for _, start, _ in phases if start <= switch["decided_at"]), default=phases[0][1])
        entry["into_phase_ms"] = round((switch["decided_at"] - began) * 1000)
        timeline.append(entry)
        if "switched_at" not in switch or not seen:
            unseen += 1
            continue
        times[way].append(round((seen[0] - switch["decided_at"]) * 1000))
        entry |= {
            "decided_to_sent_ms": round((switch["switched_at"] - switch["decided_at"]) * 1000),
            "sent_to_shown_ms": round((seen[0] - switch["switched_at"]) * 1000),
            "keyframe_bytes": switch.get("keyframe_bytes"),
        }
    ended_on, settled_after, stalls = [], [], []
    for name, start, end in phases:
        # The longest the picture stood still in the phase (a second's line covers the second before it).
        waits = [line["max_gap_s"] for line in lines if "max_gap_s" in line and start < line["t"] <= end + 1]
        stalls.append(round(max(waits, default=0.0) * 1000))
        shown = [size for t, size in sizes if t <= end]
        ended_on.append((name, "360p" if shown and shown[-1] == ABR_SIZES["360p"] else "180p"))
        # How long the phase took to show the rung its link sustains (None: not within it).
        sustained = ABR_SIZES["360p" if name == "clean" else "180p"]
        before = [size for t, size in sizes if t < start]
        came = [t for t, size in sizes if start <= t <= end and size == sustained]
        on_it = bool(before) and before[-1] == sustained
        settled_after.append(0.0 if on_it else round(came[0] - start, 2) if came else None)
    return {
        "phase": "abr",
        "link": f"{args.limit_kbit} kbit/s tbf (100 ms queue) for {args.limited_seconds} s, "
        f"then free for {args.clean_seconds} s, x{args.cycles} (the last free {args.settle_seconds} s)",
        "switch_ms": {
            way: {
                "n": len(v),
                "p50": _percentile(v, 50),
                "p95": _percentile(v, 95),
                "max": max(v, default=None),
            }
            for way, v in times.items()
        },
        "switch_ms_all": times,
        "switches": timeline,
        "switches_never_shown": unseen,
        "phases_ended_on": ended_on,
        "phase_starts_s": [round(start - phases[0][1], 2) for _, start, _ in phases],
        "settled_after_s": settled_after[1:],
        "longest_stall_ms": stalls[1:],
        "settled": sum((name == "clean") == (rung == "360p") for name, rung in ended_on[1:]),
        "phases": len(ended_on) - 1,
        "failed_trials": sum(1 for s in switches if s["trial"]) - len(times["up"]),
        "load_average": os.getloadavg(),
    }


# -- ladder-live: the ladder's cost inside the server ---------------------------------------------


async def ladder_live(args: argparse.Namespace) -> dict[str, Any]:
    os.sched_setaffinity(0, {int(c) for c in args.load_cpus.split(",")})
    clip = encode_clip()
    cores: dict[str, float] = {}
    for ladder_on in (False, True):
        env = {
            "LIVEROOM_MEDIA_TRANSCODE_LADDER": str(ladder_on).lower(),
            "LIVEROOM_MEDIA_HLS_ENABLED": "false",
        }
        server = Server(args.server_cpus, 1, None, extra_env=env)
        publisher = await start_publisher(server.base, "bench", ClipTrack(clip))
        try:
            await asyncio.sleep(3.0)
            started, cpu = time.monotonic(), server.cpu_seconds()
            await asyncio.sleep(args.seconds)
            cores["ladder_on" if ladder_on else "ladder_off"] = round(
                (server.cpu_seconds() - cpu) / (time.monotonic() - started), 3
            )
            encoders = server.metrics().get('liveroom_media_ladder_codec_instances_total{role="encoder"}')
        finally:
            await publisher.close()
            server.stop()
    return {
        "phase": "ladder-live",
        "source": f"{WIDTH}x{HEIGHT} H.264 {FPS} fps {BITRATE // 1000} kbps, no viewers, HLS off",
        "server_cores": cores,
        "ladder_cores": round(cores["ladder_on"] - cores["ladder_off"], 3),
        "ladder_encoders": encoders,
        "load_average": os.getloadavg(),
    }


# -- composite-live: the co-stream composite's cost inside the server ------------------------------


def guest_token(room: str, slot: int) -> str:
    claims = {"sub": f"guest-{slot}", "role": "guest", "room": room, "slot": slot, "scope": "publish"}
    return jwt.encode({**claims, "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")


async def composite_live(args: argparse.Namespace) -> dict[str, Any]:
    os.sched_setaffinity(0, {int(c) for c in args.load_cpus.split(",")})
    clip = encode_clip()
    cores: dict[str, float] = {}
    for layout in ("off", "side_by_side"):
        server = Server(args.server_cpus, 1, None, extra_env={"LIVEROOM_MEDIA_COMPOSITE_LAYOUT": layout})
        host = await start_publisher(server.base, "bench", ClipTrack(clip))
        guest = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
        guest.addTransceiver(ClipTrack(clip), "sendonly").setCodecPreferences(h264)
        try:
            await negotiate(guest, f"{server.base}/whip/bench", guest_token("bench", 1))
            await asyncio.sleep(3.0)
            started, cpu = time.monotonic(), server.cpu_seconds()
            await asyncio.sleep(args.seconds)
            cores[layout] = round((server.cpu_seconds() - cpu) / (time.monotonic() - started), 3)
        finally:
            await guest.close()
            await host.close()
            server.stop()
    return {
        "phase": "composite-live",
        "sources": f"host + 1 guest, each {WIDTH}x{HEIGHT} H.264 {FPS} fps, HLS on, no viewers",
        "composite": "side_by_side 640x360 15 fps",
        "server_cores": cores,
        "composite_cores": round(cores["side_by_side"] - cores["off"], 3),
        "load_average": os.getloadavg(),
    }


# -- hls-latency: capture to segment availability ----------------------------------------------

CLOCK_BITS, CLOCK_WIDTH, CLOCK_HEIGHT = 16, 320, 240


def clock_picture(centiseconds: int) -> av.VideoFrame:
    """The wall clock (centiseconds, 16 bits) as 16 bars, white for 1."""
    block = CLOCK_WIDTH // CLOCK_BITS
    bits = (centiseconds >> (CLOCK_BITS - 1 - i) & 1 for i in range(CLOCK_BITS))
    row = b"".join(bytes([235 if bit else 16]) * block for bit in bits)
    frame = av.VideoFrame(CLOCK_WIDTH, CLOCK_HEIGHT, "yuv420p")
    frame.planes[0].update(row * CLOCK_HEIGHT)
    frame.planes[1].update(bytes([128]) * frame.planes[1].buffer_size)
    frame.planes[2].update(bytes([128]) * frame.planes[2].buffer_size)
    return frame


def read_clock(frame: Any) -> int:
    plane, block = frame.planes[0], CLOCK_WIDTH // CLOCK_BITS
    data, y, value = bytes(plane), frame.height // 2, 0
    for i in range(CLOCK_BITS):
        value = value << 1 | (data[y * plane.line_size + i * block + block // 2] > 128)
    return value


def _age_s(centiseconds: int, now: float) -> float:
    return ((round(now * 100) - centiseconds) % (1 << CLOCK_BITS)) / 100


@contextlib.asynccontextmanager
async def _clock_room(args: argparse.Namespace) -> AsyncIterator[str]:
    """A server (HLS on, `--segment-s`) whose room "bench" a host publishes to with H.264
    pictures showing the wall clock (see `clock_picture`); yields the room's HLS base URL."""
    from aiortc import VideoStreamTrack

    class ClockTrack(VideoStreamTrack):
        async def recv(self) -> av.VideoFrame:
            pts, time_base = await self.next_timestamp()
            frame = clock_picture(round(time.time() * 100) % (1 << CLOCK_BITS))
            frame.pts, frame.time_base = pts, time_base
            return frame

    os.sched_setaffinity(0, {int(c) for c in args.load_cpus.split(",")})
    server = Server(
        args.server_cpus, 1, None, extra_env={"LIVEROOM_MEDIA_HLS_SEGMENT_S": str(args.segment_s)}
    )
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    pc.addTransceiver(ClockTrack(), "sendonly").setCodecPreferences(h264)
    try:
        await negotiate(pc, f"{server.base}/whip/bench", token("bench-host", "host"))
        yield server.base + "/hls/bench"
    finally:
        await pc.close()
        server.stop()


async def hls_latency(args: argparse.Namespace) -> dict[str, Any]:
    first: list[float] = []
    last: list[float] = []
    durations: list[float] = []
    async with _clock_room(args) as hls:
        await _poll_segments(hls, args.seconds, first, last, durations)
    return {
        "phase": "hls-latency",
        "segment_s": args.segment_s,
        "segments": len(first),
        "segment_duration_s": {"p50": _percentile_f(durations, 50), "max": max(durations, default=None)},
        "first_picture_age_s": {"p50": _percentile_f(first, 50), "p95": _percentile_f(first, 95)},
        "last_picture_age_s": {"p50": _percentile_f(last, 50), "p95": _percentile_f(last, 95)},
        "player_estimate_s": _percentile_f([a + 3 * args.segment_s for a in last], 50),
        "load_average": os.getloadavg(),
    }


async def hls_player(args: argparse.Namespace) -> dict[str, Any]:
    """Glass to glass through a real HLS player: FFmpeg's HLS demuxer joins the live
    variant 3 segments behind its edge (its default, as hls.js's `liveSyncDurationCount`)
    and plays it at its own pace (`-re`); each picture's drawn clock is read as it comes
    out of the decoder, against the wall clock the publisher drew it from."""
    ages: list[float] = []
    async with _clock_room(args) as hls:
        await _wait_for_segments(f"{hls}/720p.m3u8", count=4, timeout_s=args.segment_s * 8 + 10)
        await _play(f"{hls}/720p.m3u8", args.seconds, ages)
    return {
        "phase": "hls-player",
        "segment_s": args.segment_s,
        "pictures": len(ages),
        "glass_to_glass_s": {p: _percentile_f(ages, n) for p, n in (("p5", 5), ("p50", 50), ("p95", 95))},
        "load_average": os.getloadavg(),
    }


async def _wait_for_segments(playlist: str, count: int, timeout_s: float) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.get(playlist) as response:
                if response.status == 200 and (await response.text()).count(".ts") >= count:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{playlist} did not list {count} segments")


async def _play(playlist: str, seconds: float, ages: list[float]) -> None:
    command = ["ffmpeg", "-loglevel", "error", "-re", "-i", playlist, "-an"]
    command += ["-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{CLOCK_WIDTH}x{CLOCK_HEIGHT}", "-"]
    player = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
    assert player.stdout is not None
    size, block, row = CLOCK_WIDTH * CLOCK_HEIGHT, CLOCK_WIDTH // CLOCK_BITS, CLOCK_HEIGHT // 2
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            picture = await asyncio.wait_for(player.stdout.readexactly(size), 10)
            now = time.time()
            value = 0
            for i in range(CLOCK_BITS):
                value = value << 1 | (picture[row * CLOCK_WIDTH + i * block + block // 2] > 128)
            ages.append(_age_s(value, now))
    finally:
        player.kill()
        await player.wait()


async def _poll_segments(
    base: str, seconds: float, first: list[float], last: list[float], durations: list[float]
) -> None:
    import aiohttp

    seen: set[str] = set()
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            async with http.get(f"{base}/720p.m3u8") as response:
                if response.status != 200:
                    continue
                names = [line for line in (await response.text()).splitlines() if line.endswith(".ts")]
            for name in names:
                if name in seen:
                    continue
                seen.add(name)
                async with http.get(f"{base}/{name}") as response:
                    body = await response.read()
                now = time.time()
                with av.open(io.BytesIO(body), "r") as segment:
                    clocks = [read_clock(frame) for frame in segment.decode(video=0)]
                if len(seen) > 1 and clocks:  # the first segment listed may be old
                    first.append(_age_s(clocks[0], now))
                    last.append(_age_s(clocks[-1], now))
                    durations.append(len(clocks) / 30)


def _percentile_f(values: list[float], share: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(share / 100 * (len(ordered) - 1)))], 3)


def _percentile(values: list[int], share: int) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share / 100 * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    os.sched_setaffinity(0, {int(c) for c in args.load_cpus.split(",")})
    clip = ClipTrack(encode_clip())
    gop_cache = args.gop_cache if args.phase == "storm" else None
    server = Server(args.server_cpus, args.workers, gop_cache, not args.aiortc_send)
    publisher = None
    try:
        if args.phase != "failover":  # failover starts its own publishers, one room per run
            publisher = await start_publisher(server.base, "bench", clip)
            await asyncio.sleep(1.0)
        report: dict[str, Any] = {
            "phase": args.phase,
            "workers": args.workers,
            "gop_cache": gop_cache,
            "fast_send": not args.aiortc_send,
        }
        if args.phase == "steady":
            report["levels"] = await steady(args, server, clip)
        elif args.phase == "failover":
            report.update(await failover(args, server, clip))
        elif args.phase == "ttff":
            report.update(await ttff(args, server))
        else:
            report.update(await storm(args, server, clip))
        report["server_encoders"] = server.metrics().get(
            'liveroom_media_codec_instances_total{role="encoder"}'
        )
        return report
    finally:
        if publisher is not None:
            await publisher.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "phase",
        choices=(
            "steady",
            "ttff",
            "storm",
            "failover",
            "ladder",
            "abr",
            "hls-latency",
            "hls-player",
            "ladder-live",
            "composite-live",
            "rtmp-ttff",
            "rtmp-cost",
            "rtmp-failover",
            "failover-soak",
            "camera-cut",
        ),
    )
    parser.add_argument("--segment-s", type=float, default=2.0, help="hls-*: media.hls_segment_s")
    parser.add_argument("--cycles", type=int, default=10, help="abr: limited/clean cycles")
    parser.add_argument("--limit-kbit", type=int, default=500, help="abr: the limited link's rate")
    # By default a limit is shorter than abr_up_hold_s, so that each cycle is one step down
    # and one trial up on a free link; `--limited-seconds 6 --clean-seconds 8 --settle-seconds
    # 40` puts trials inside limits too (what a failed trial costs, and the backoff).
    parser.add_argument("--limited-seconds", type=float, default=3.0, help="abr: each limited phase")
    parser.add_argument("--clean-seconds", type=float, default=9.0, help="abr: each free phase")
    parser.add_argument("--settle-seconds", type=float, default=12.0, help="abr: the last free phase")
    parser.add_argument("--viewers", default="20,40", help="steady: viewer counts, one level each")
    parser.add_argument("--viewers-storm", type=int, default=100, help="storm: viewers joining at once")
    parser.add_argument("--seconds", type=float, default=8.0, help="steady: seconds per level after joining")
    parser.add_argument("--connect-seconds", type=float, default=6.0, help="steady: time given to join")
    parser.add_argument("--samples", type=int, default=10, help="ttff: viewers, one after another")
    parser.add_argument("--runs", type=int, default=20, help="failover: primary publishers killed")
    parser.add_argument(
        "--failover-viewers", type=int, default=3, help="failover, camera-cut: viewers per run"
    )
    parser.add_argument("--audio", action="store_true", help="failover: Opus from both paths, measured")
    parser.add_argument("--minutes", type=float, default=10.0, help="failover-soak: how long")
    parser.add_argument("--loss-pct", type=float, default=2.0, help="failover-soak: netem loss")
    parser.add_argument("--delay-ms", type=int, default=30, help="failover-soak: netem delay")
    parser.add_argument("--jitter-ms", type=int, default=30, help="failover-soak: netem jitter")
    parser.add_argument("--return-timeout-s", type=float, default=10.0, help="failover: wait for the return")
    parser.add_argument("--processes", type=int, default=2, help="viewer processes")
    parser.add_argument("--decoders", type=int, default=1, help="steady, failover: viewers that decode")
    parser.add_argument("--profile", action="store_true", help="steady: py-spy the server in each level")
    parser.add_argument("--workers", type=int, default=1, help="the server's media.workers")
    parser.add_argument("--gop-cache", type=int, default=None, help="storm: media.gop_cache_frames")
    parser.add_argument("--aiortc-send", action="store_true", help="media.fast_send = false")
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--load-cpus", default="1")
    args = parser.parse_args()
    if args.phase == "ladder":
        os.sched_setaffinity(0, {int(c) for c in args.load_cpus.split(",")})
        print(json.dumps(ladder(args), indent=2))
        return
    from .camera_bench import camera_cut
    from .failover_soak import failover_soak
    from .rtmp_bench import rtmp_cost, rtmp_failover, rtmp_ttff

    phases = {
        "failover-soak": failover_soak,
        "camera-cut": camera_cut,
        "rtmp-failover": rtmp_failover,
        "rtmp-ttff": rtmp_ttff,
        "rtmp-cost": rtmp_cost,
        "abr": abr,
        "composite-live": composite_live,
        "ladder-live": ladder_live,
        "hls-latency": hls_latency,
        "hls-player": hls_player,
    }
    print(json.dumps(asyncio.run(phases.get(args.phase, run)(args)), indent=2))


if __name__ == "__main__":
    main()
