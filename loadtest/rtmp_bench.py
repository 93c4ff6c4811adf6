"""RTMP ingest figures, as phases of media_bench (docs/media.md, *RTMP ingest*):

    python -m liveroom.loadtest.media_bench rtmp-ttff --samples 10
    python -m liveroom.loadtest.media_bench rtmp-cost --seconds 20 [--workers 2]
    python -m liveroom.loadtest.media_bench rtmp-failover --runs 10

Both publish the same 720p30 H.264 clip as media_bench's WHIP publisher (libx264
baseline, 1.5 Mbps, a keyframe every 2 s, encoded once up front) with a 44.1 kHz AAC
sine: over RTMP by Debian's ffmpeg copying an FLV file of them in real time (`-re
-stream_loop -1 -c copy`, so it encodes nothing), and over WHIP by media_bench's aiortc
publisher. The server runs pinned to --server-cpus, ffmpeg and this driver to --load-cpus.

`rtmp-ttff`: one WHIP room and one RTMP room on the same server; WHEP viewers join them
in turn, one after another: from the start of the WHEP exchange to the first decoded
picture (as media_bench ttff). Target: RTMP's median <= WHIP's + 100 ms.

`rtmp-cost`: the server's CPU (every process) with nothing published, then with the RTMP
publisher, HLS on (the room's video remuxed, its AAC remuxed into the audio rendition)
and one WHEP viewer (its Opus transcoded from the AAC): the difference is what a room
fed over RTMP costs. Target: <= 0.1 core at 720p30. Also, without a server, the AAC ->
Opus transcode alone (rtmp_audio.AacToOpus) over the clip's sound.

`rtmp-failover`: per run, a new room, two ffmpeg encoders copying the clip as its primary
and its backup (`?path=backup`), one decoding WHEP viewer; once it plays, the primary's
ffmpeg is SIGKILLed: the viewer's largest gap between pictures from 0.5 s before to 1.5 s
after the kill (the WHIP target: p95 <= 200 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import math
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack
from liveroom.media.rtmp_audio import AacToOpus  # type: ignore[import-not-found,unused-ignore]
from liveroom.media.rtmp_flv import AacConfig  # type: ignore[import-not-found,unused-ignore]

from . import media_bench as bench

__all__ = ["rtmp_cost", "rtmp_failover", "rtmp_ttff"]

SAMPLE_RATE = 44100


def write_flv(packets: list[Any], path: Path) -> bytes:
    """The clip's H.264 and an AAC sine of the same length as an FLV file; its AAC config."""
    out = av.open(str(path), "w", format="flv")
    probe = av.open(io.BytesIO(bytes(packets[0])), format="h264")
    video = out.add_stream_from_template(probe.streams.video[0])
    audio = out.add_stream("aac", rate=SAMPLE_RATE)
    audio.layout = "stereo"
    for i, source in enumerate(packets):
        packet = av.Packet(bytes(source))
        packet.pts = packet.dts = i * 90000 // bench.FPS
        packet.time_base, packet.stream, packet.is_keyframe = Fraction(1, 90000), video, source.is_keyframe
        out.mux(packet)
    samples = len(packets) * SAMPLE_RATE // bench.FPS
    for start in range(0, samples, 1024):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=1024)
        frame.planes[0].update(_sine(start, 1024))
        frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
        out.mux(audio.encode(frame))
    out.mux(audio.encode(None))
    config = bytes(audio.codec_context.extradata or b"")
    out.close()
    probe.close()
    return config


def _sine(start: int, count: int) -> bytes:
    """`count` stereo s16 samples of a 440 Hz sine from sample `start`."""
    values = (round(8000 * math.sin(2 * math.pi * 440 * (start + k) / SAMPLE_RATE)) for k in range(count))
    return b"".join(v.to_bytes(2, "little", signed=True) * 2 for v in values)


def ffmpeg_publisher(flv: Path, url: str, cpus: str) -> subprocess.Popen[bytes]:
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None, "rtmp phases need Debian's ffmpeg"
    command = ["taskset", "-c", cpus, ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-re"]
    command += ["-stream_loop", "-1", "-i", str(flv), "-c", "copy", "-f", "flv", url]
    return subprocess.Popen(command)


def rtmp_server(args: argparse.Namespace, extra: dict[str, str] | None = None) -> tuple[bench.Server, int]:
    port = bench._free_port()
    env = {"LIVEROOM_MEDIA_RTMP_PORT": str(port), **(extra or {})}
    return bench.Server(args.server_cpus, args.workers, None, extra_env=env), port


async def first_frame_ms(base: str, room: str, user: str) -> float:
    """One WHEP viewer: from the start of the exchange to its first decoded picture."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", "recvonly")
    first: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    tasks = []

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        async def decode_one() -> None:
            await track.recv()
            if not first.done():
                first.set_result(time.monotonic())

        tasks.append(asyncio.ensure_future(decode_one()))

    started = time.monotonic()
    try:
        await bench.negotiate(pc, f"{base}/whep/{room}", bench.token(user, "viewer"))
        return (await asyncio.wait_for(first, 10) - started) * 1000
    finally:
        for task in tasks:
            task.cancel()
        await pc.close()


async def rtmp_ttff(args: argparse.Namespace) -> dict[str, Any]:
    os.sched_setaffinity(0, {int(c) for c in args.load_cpus.split(",")})
    clip = bench.encode_clip()
    with tempfile.TemporaryDirectory() as directory:
        flv = Path(directory) / "clip.flv"
        write_flv(clip, flv)
        server, port = rtmp_server(args)
        whip = await bench.start_publisher(server.base, "bench-whip", bench.ClipTrack(clip))
        host = bench.token("bench-host", "host")
        rtmp = ffmpeg_publisher(flv, f"rtmp://127.0.0.1:{port}/live/bench-rtmp?token={host}", args.load_cpus)
        samples: dict[str, list[float]] = {"whip": [], "rtmp": []}
        try:
            await asyncio.sleep(4)  # both rooms past their first keyframes
            for i in range(args.samples):
                for kind in ("whip", "rtmp"):
                    samples[kind].append(
                        await first_frame_ms(server.base, f"bench-{kind}", f"ttff-{kind}-{i}")
                    )
                    await asyncio.sleep(0.3)
        finally:
            rtmp.kill()
            rtmp.wait()
            await whip.close()
            server.stop()
    figures = {kind: _summary(values) for kind, values in samples.items()}
    delta = figures["rtmp"]["median_ms"] - figures["whip"]["median_ms"]
    return {
        "phase": "rtmp-ttff",
        "workers": args.workers,
        **figures,
        "rtmp_minus_whip_median_ms": round(delta, 1),
        "target_met": delta <= 100,
        "load_average": os.getloadavg(),
    }


async def rtmp_cost(args: argparse.Namespace) -> dict[str, Any]:
    os.sched_setaffinity(0, {int(c) for c in args.load_cpus.split(",")})
    clip = bench.encode_clip()
    with tempfile.TemporaryDirectory() as directory:
        flv = Path(directory) / "clip.flv"
        aac_config = write_flv(clip, flv)
        transcode = _aac_to_opus_cost(flv, aac_config)
        server, port = rtmp_server(args)
        rtmp = None
        viewer: RTCPeerConnection | None = None
        try:
            await asyncio.sleep(2)
            idle = await _cores(server, args.seconds / 2)
            host = bench.token("bench-host", "host")
            rtmp = ffmpeg_publisher(flv, f"rtmp://127.0.0.1:{port}/live/bench?token={host}", args.load_cpus)
            await asyncio.sleep(3)
            viewer = await _viewer(server.base)
            await asyncio.sleep(3)
            busy = await _cores(server, args.seconds)
            metrics = server.metrics()
        finally:
            if viewer is not None:
                await viewer.close()
            if rtmp is not None:
                rtmp.kill()
                rtmp.wait()
            server.stop()
    room_cores = {name: round(busy[name] - idle.get(name, 0.0), 3) for name in busy}
    return {
        "phase": "rtmp-cost",
        "workers": args.workers,
        "source": f"{bench.WIDTH}x{bench.HEIGHT} H.264 {bench.FPS} fps {bench.BITRATE // 1000} kbps, AAC",
        "idle_cores": idle,
        "busy_cores": busy,
        "room_cores": room_cores,
        "room_cores_total": round(sum(room_cores.values()), 3),
        "target_met": sum(room_cores.values()) <= 0.1,
        "aac_to_opus": transcode,
        "server_encoders": metrics.get('liveroom_media_codec_instances_total{role="encoder"}'),
        "load_average": os.getloadavg(),
    }


async def _cores(server: bench.Server, seconds: float) -> dict[str, float]:
    """CPU cores used over `seconds`, by process: "node" and "worker N"."""
    started, before = time.monotonic(), server.cpu_by_process()
    await asyncio.sleep(seconds)
    after = server.cpu_by_process()
    elapsed = time.monotonic() - started
    names = {pid: "node" if pid == server.process.pid else f"worker {pid}" for pid in after}
    return {names[pid]: round((after[pid] - before.get(pid, 0.0)) / elapsed, 3) for pid in after}


async def _viewer(base: str) -> RTCPeerConnection:
    """One WHEP viewer of video and audio that reads what it gets (the server sends both)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", "recvonly")
    pc.addTransceiver("audio", "recvonly")
    tasks: list[asyncio.Future[None]] = []  # end with the connection
    pc.tasks = tasks  # type: ignore[attr-defined]

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        async def drain() -> None:
            with contextlib.suppress(Exception):
                while True:
                    await track.recv()

        tasks.append(asyncio.ensure_future(drain()))

    await bench.negotiate(pc, f"{base}/whep/bench", bench.token("cost-viewer", "viewer"))
    return pc


def _aac_to_opus_cost(flv: Path, config: bytes) -> dict[str, Any]:
    """The AAC -> Opus transcode alone, over the clip's sound, in this process."""
    container = av.open(str(flv))
    stream = container.streams.audio[0]
    frames = [(bytes(p), int(p.pts or 0)) for p in container.demux(stream) if p.size]
    container.close()
    transcoder = AacToOpus(AacConfig(config, SAMPLE_RATE, 2))
    started = time.process_time()
    made = sum(len(transcoder.transcode(data, pts)) for data, pts in frames)
    spent = time.process_time() - started
    audio_s = len(frames) * 1024 / SAMPLE_RATE
    return {
        "aac_frames": len(frames),
        "opus_frames": made,
        "us_per_opus_frame": round(spent / max(made, 1) * 1e6, 1),
        "cores": round(spent / audio_s, 4),
    }


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "samples": len(ordered),
        "median_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))], 1),
        "min_ms": round(ordered[0], 1),
        "max_ms": round(ordered[-1], 1),
    }


async def rtmp_failover(args: argparse.Namespace) -> dict[str, Any]:
    os.sched_setaffinity(0, {int(c) for c in args.load_cpus.split(",")})
    clip = bench.encode_clip()
    gaps: list[float] = []
    with tempfile.TemporaryDirectory() as directory:
        flv = Path(directory) / "clip.flv"
        write_flv(clip, flv)
        server, port = rtmp_server(args)
        try:
            for run in range(args.runs):
                gaps.append(await _failover_run(server, port, flv, args.load_cpus, f"fo-{run}"))
            failovers = sum(
                v for k, v in server.metrics().items() if k.startswith("liveroom_media_failovers_total")
            )
        finally:
            server.stop()
    ordered = sorted(gaps)
    return {
        "phase": "rtmp-failover",
        "runs": len(gaps),
        "gap_ms_p50": round(statistics.median(ordered), 1),
        "gap_ms_p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 1),
        "gap_ms_max": round(ordered[-1], 1),
        "gaps_ms": [round(gap) for gap in gaps],
        "failovers_counted": failovers,  # one per run expected; more: silence switches (a busy load core)
        "load_average": os.getloadavg(),
    }


async def _failover_run(server: bench.Server, port: int, flv: Path, cpus: str, room: str) -> float:
    host = bench.token("bench-host", "host")
    url = f"rtmp://127.0.0.1:{port}/live/{room}?token={host}"
    primary = ffmpeg_publisher(flv, url, cpus)
    backup = ffmpeg_publisher(flv, url + "&path=backup", cpus)
    arrivals: list[float] = []
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", "recvonly")
    tasks = []

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        async def decode() -> None:
            with contextlib.suppress(Exception):
                while True:
                    await track.recv()
                    arrivals.append(time.monotonic())

        tasks.append(asyncio.ensure_future(decode()))

    try:
        for _ in range(100):  # 404 until the primary is on
            with contextlib.suppress(RuntimeError):
                await bench.negotiate(pc, f"{server.base}/whep/{room}", bench.token("fo-viewer", "viewer"))
                break
            await asyncio.sleep(0.1)
        await _until(lambda: len(arrivals) >= 90)  # 3 s of pictures: the backup is on and past a keyframe
        killed = time.monotonic()
        primary.kill()
        await _until(lambda: arrivals[-1] >= killed + 1.5)
        return bench.largest_gap_ms(arrivals, killed - 0.5, killed + 1.5)
    finally:
        for task in tasks:
            task.cancel()
        await pc.close()
        for process in (primary, backup):
            process.kill()
            process.wait()


async def _until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the RTMP room did not play")
        await asyncio.sleep(0.05)
