"""False-switch soak: a healthy primary on an impaired link must never lose the program.

    python -m liveroom.loadtest.media_bench failover-soak --minutes 10

The primary publisher (the 720p30 H.264 clip and Opus, in a process of its own) sends
through an impaired link: each datagram it sends (RTP, RTCP, DTLS, STUN) is dropped with
--loss-pct (2 %) or else held for --delay-ms ± --jitter-ms (30 ± 30 ms, uniform, so they
reorder as under netem); the backup (`?path=backup`) publishes from this process.
Nothing fails on purpose, so every switch to the backup is a false one.

The impairment is made in the publisher's process (its ICE pair's `send_data`), not with
`tc netem` in a network namespace as intended: this machine's kernel has no `sch_netem`
("Specified qdisc kind is unknown"). It impairs the primary's uplink only (what the
server judges the path by), not the server's RTCP back to it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from typing import Any

__all__ = ["failover_soak"]


async def failover_soak(args: argparse.Namespace) -> dict[str, Any]:
    from .media_bench import ClipTrack, Server, encode_clip, start_publisher, token

    os.sched_setaffinity(0, {int(c) for c in args.load_cpus.split(",")})
    server = Server(args.server_cpus, 1, None)
    impairment = (args.loss_pct, args.delay_ms, args.jitter_ms)
    bearer = token("soak-host", "host")
    command = [sys.executable, "-m", __name__, server.base, "soak", bearer, *map(str, impairment)]
    primary = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    try:
        assert primary.stdout is not None
        ready = await asyncio.wait_for(primary.stdout.readline(), 60)
        if ready.strip() != b"sending":
            raise RuntimeError(f"the impaired primary failed: {ready!r}")
        backup = await start_publisher(server.base, "soak", ClipTrack(encode_clip()), "?path=backup", True)
        started = time.monotonic()
        await asyncio.sleep(args.minutes * 60)
        metrics = server.metrics()
        seconds = time.monotonic() - started
        await backup.close()
    finally:
        if primary.returncode is None:
            primary.kill()
            await primary.wait()
        server.stop()
    switches = {
        to: int(metrics.get(f'liveroom_media_failovers_total{{room="soak",to="{to}"}}', 0))
        for to in ("backup", "primary")
    }
    return {
        "phase": "failover-soak",
        "seconds": round(seconds),
        "impairment": f"loss {args.loss_pct} %, delay {args.delay_ms} ± {args.jitter_ms} ms (primary uplink)",
        "false_switches_to_backup": switches["backup"],
        "returns_to_primary": switches["primary"],
    }


def impair(pc: Any, loss_pct: float, delay_ms: float, jitter_ms: float) -> None:
    """Drop or delay every datagram the connection's nominated ICE pair sends."""
    pair = pc.getTransceivers()[0].sender.transport.transport._connection._nominated[1]
    send_data = pair.protocol.send_data
    loop = asyncio.get_running_loop()

    async def impaired(data: bytes, addr: Any) -> None:
        if random.random() * 100 < loss_pct:
            return
        delay = max(0.0, delay_ms + random.uniform(-jitter_ms, jitter_ms)) / 1000
        loop.call_later(delay, lambda: asyncio.ensure_future(send_data(data, addr)))

    pair.protocol.send_data = impaired


async def _publish(base: str, room: str, bearer: str, loss: str, delay: str, jitter: str) -> None:
    """The primary: the clip and Opus through the impaired link, until killed."""
    from .media_bench import ClipTrack, encode_clip, start_publisher

    pc = await start_publisher(base, room, ClipTrack(encode_clip()), "", True)
    for _ in range(100):
        if pc.connectionState == "connected":
            break
        await asyncio.sleep(0.05)
    impair(pc, float(loss), float(delay), float(jitter))
    await asyncio.sleep(1.0)
    print("sending", flush=True)
    await asyncio.sleep(24 * 3600)


if __name__ == "__main__":
    asyncio.run(_publish(*sys.argv[1:7]))
