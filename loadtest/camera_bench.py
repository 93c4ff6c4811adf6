"""`media_bench camera-cut`: how long viewers' pictures stand still when the host cuts
between two cameras (docs/media.md, *Multi-camera*).

    python -m liveroom.loadtest.media_bench camera-cut --runs 10

Per run, in a room of its own: two cameras (`?camera=wide`, then `?camera=close`) publish
the 720p30 clip from this process; `--failover-viewers` viewers watch the program, the
first `--decoders` of them decoding every picture (`DecodeCheck`: a cut that did not land
on a keyframe shows as decode errors). Once every viewer plays, the host cuts to the close
camera (`POST /api/rooms/{room}/program`), and 3 s later back to the wide one. Measured
per cut and viewer: the largest gap between frames from 0.5 s before the cut to 1 s after
(the freeze a viewer sees: one frame interval, 33 ms, is no freeze at all); and per cut
whether the answer found a keyframe at hand (`camera` already the target) or had to wait
for one (`pending`), and how long the request took. For comparison, the same largest gap
over the 1.5 s before each window, with no cut in it (`quiet_gap_ms`): what the machine's
own stalls give. The server runs pinned to --server-cpus, this driver, its publishers and
viewers to --load-cpus.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection

from . import media_bench as bench

__all__ = ["camera_cut"]

CUT_WINDOW = (0.5, 1.0)  # seconds before and after a cut where gaps are measured
SETTLE_S = 3.0  # before each cut: the quiet window before it holds no earlier cut


async def cut(base: str, room: str, camera: str) -> tuple[int, dict[str, Any], float]:
    """POST the cut: (status, its JSON, seconds the request took)."""
    headers = {"Authorization": f"Bearer {bench.token('bench-host', 'host')}"}
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/api/rooms/{room}/program", json={"camera": camera}, headers=headers) as reply,
    ):
        return reply.status, await reply.json(), time.monotonic() - started


async def camera_cut_run(
    args: argparse.Namespace, server: bench.Server, clip: bench.ClipTrack, room: str
) -> dict[str, Any]:
    wide = await bench.start_publisher(
        server.base, room, bench.ClipTrack(clip.packets), "?camera=wide", args.audio
    )
    close = await bench.start_publisher(
        server.base, room, bench.ClipTrack(clip.packets), "?camera=close", args.audio
    )
    arrivals: list[list[float]] = [[] for _ in range(args.failover_viewers)]
    decoders = [bench.DecodeCheck(log) for log in arrivals[: args.decoders]]
    viewers: list[RTCPeerConnection] = [
        await bench.counting_viewer(
            server.base, room, f"cut-{i}", log, decoders[i] if i < len(decoders) else None
        )
        for i, log in enumerate(arrivals)
    ]
    for _ in range(150):  # up to 15 s for every viewer to play (joining is slow on a busy core)
        if all(len(log) >= 30 for log in arrivals):
            break
        await asyncio.sleep(0.1)
    cuts = []
    for camera in ("close", "wide"):
        await asyncio.sleep(SETTLE_S)
        at = time.time()
        status, body, took = await cut(server.base, room, camera)
        program = body.get("program", {})
        at_hand = status == 200 and program.get("camera") == camera
        cuts.append({"at": at, "to": camera, "status": status, "at_hand": at_hand, "request_ms": took * 1000})
    await asyncio.sleep(CUT_WINDOW[1])
    for entry in cuts:
        at = float(entry["at"])
        since, until, quiet = at - CUT_WINDOW[0], at + CUT_WINDOW[1], at - CUT_WINDOW[0] - sum(CUT_WINDOW)
        entry["gaps"] = [bench.largest_gap_ms(log, since, until) for log in arrivals]
        entry["quiet_gaps"] = [bench.largest_gap_ms(log, quiet, since) for log in arrivals]
    result = {
        "cuts": cuts,
        "disconnected": sum(pc.connectionState != "connected" for pc in viewers),
        "decode_errors": sum(d.errors for d in decoders),
        "decoded": sum(len(d.arrivals) for d in decoders),
    }
    for pc in [*viewers, close, wide]:
        await pc.close()
    return result


async def camera_cut(args: argparse.Namespace) -> dict[str, Any]:
    os.sched_setaffinity(0, {int(c) for c in args.load_cpus.split(",")})
    clip = bench.ClipTrack(bench.encode_clip())
    server = bench.Server(args.server_cpus, args.workers, None)
    load_before = os.getloadavg()[0]
    try:
        runs = []
        for n in range(args.runs):
            runs.append(await camera_cut_run(args, server, clip, f"cut-{n}"))
            shown = [
                (
                    c["to"],
                    [round(g) for g in c["gaps"]],
                    "quiet",
                    [round(g) for g in c["quiet_gaps"]],
                    c["at_hand"],
                )
                for c in runs[-1]["cuts"]
            ]
            print(f"cut-{n}: {shown} load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    finally:
        server.stop()
    cuts = [c for run in runs for c in run["cuts"]]
    return {
        "phase": "camera-cut",
        "runs": args.runs,
        "workers": args.workers,
        "viewers_per_run": args.failover_viewers,
        "decoding_viewers_per_run": min(args.decoders, args.failover_viewers),
        **bench.gap_figures("gap_ms", "gaps_ms", [g for c in cuts for g in c["gaps"]]),
        **bench.gap_figures("quiet_gap_ms", "quiet_gaps_ms", [g for c in cuts for g in c["quiet_gaps"]]),
        **bench.gap_figures("request_ms", "requests_ms", [c["request_ms"] for c in cuts]),
        "cuts": len(cuts),
        "cuts_ok": sum(c["status"] == 200 for c in cuts),
        "cuts_at_hand": sum(c["at_hand"] for c in cuts),
        "viewers_disconnected": sum(run["disconnected"] for run in runs),
        "decode_errors": sum(run["decode_errors"] for run in runs),
        "pictures_decoded": sum(run["decoded"] for run in runs),
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
