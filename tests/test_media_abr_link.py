"""ABR under a real bandwidth limit: the viewer sits in its own network namespace behind a veth
whose downlink `tc` shapes (made here; skipped unless root). A publisher sends one H.264
640x360 stream of noise (~0.9 Mbps, pre-encoded: no encoder on the test's side); the
server makes the 180p rung (`transcode_ladder`). The viewer (a decoding aiortc process in
the namespace) starts on 360p; the link is limited to 500 kbit/s: its controller steps
it down to 180p; the limit is lifted: a trial takes it back up to 360p, and it stays.
Each switch is timed from the server's decision (the session status) to the viewer's
first decoded picture of the new size.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from liveroom.loadtest.shaped_link import ShapedLink, can_shape
from support import ServerProcess, token

pytestmark = pytest.mark.skipif(can_shape() is not None, reason=f"a shaped link {can_shape()}")

LADDER = "360p:1000000,180p:300000"


# What this test is about is the link: the host's sender, the server and the viewer run
# ahead of the rest of the machine (a CPU hog, other tests), or a starved viewer's own
# late packets read as congestion and its trial up fails, as it should on such a viewer,
# with the test's 12 s over before the backed-off retrial (seen in a hog run, 3 Dec 2026).
FIRST = -10  # nice; the test runs only as root


@pytest.fixture(scope="module")
def link() -> Iterator[ShapedLink]:
    with ShapedLink("abr") as shaped:
        yield shaped


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, link: ShapedLink) -> Iterator[ServerProcess]:
    env = {
        "LIVEROOM_SERVER_HOST": "0.0.0.0",
        "LIVEROOM_MEDIA_WORKERS": "1",
        "LIVEROOM_MEDIA_STATS_INTERVAL_S": "0.5",
        "LIVEROOM_MEDIA_TRANSCODE_LADDER": "true",
        "LIVEROOM_MEDIA_ABR_LADDER": LADDER,
        "LIVEROOM_MEDIA_ABR_UP_HOLD_S": "3.0",
        "LIVEROOM_MEDIA_ABR_TRIAL_S": "1.5",
        "LIVEROOM_MEDIA_HLS_ENABLED": "false",
    }
    process = ServerProcess(tmp_path_factory.mktemp("abr-link"), env=env).start()
    assert process.process is not None
    os.setpriority(os.PRIO_PROCESS, process.process.pid, FIRST)
    yield process
    process.stop()


async def read_lines(viewer: Any, until: float) -> list[dict[str, Any]]:
    """The viewer's report lines until then (read off the event loop: the publisher runs on it)."""
    lines = []
    while time.time() < until:
        line = await asyncio.get_running_loop().run_in_executor(None, viewer.stdout.readline)
        if not line:
            break
        lines.append(json.loads(line))
    return lines


def switch_times(switches: list[dict[str, Any]], sizes: list[tuple[float, tuple[int, int]]]) -> list[float]:
    """Per completed switch: from the server's decision to the viewer's first picture of the
    new rung (its size), in seconds."""
    size_of = {"360p": (640, 360), "180p": (320, 180)}
    times = []
    for switch in switches:
        if "switched_at" in switch:
            seen = [t for t, size in sizes if t >= switch["decided_at"] and size == size_of[switch["to"]]]
            if seen:
                times.append(seen[0] - switch["decided_at"])
    return times


async def test_the_viewer_settles_on_what_its_link_sustains(server: ServerProcess, link: ShapedLink) -> None:
    from liveroom.loadtest.media_bench import noise_publisher

    room = f"link-{uuid.uuid4().hex[:8]}"
    publisher = await noise_publisher(server.url, room, token("host-link", "host"))
    base = f"http://{link.host_ip}:{server.port}"
    command = [sys.executable, "-m", "liveroom.loadtest.abr_viewer", base, room, token("link-viewer"), "12"]
    viewer = link.spawn(command)
    before = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, viewer.pid, FIRST)
    os.setpriority(os.PRIO_PROCESS, 0, FIRST)  # this process sends the host's video
    try:
        started = time.time()
        lines = await read_lines(viewer, started + 3.0)
        link.limit(500)
        lines += await read_lines(viewer, started + 6.0)
        link.lift()
        lines += await read_lines(viewer, started + 30)
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, before)
        link.lift()
        viewer.kill()
        viewer.wait()
        assert viewer.stdout is not None
        viewer.stdout.close()
        await publisher.close()
    status = next(line["status"] for line in lines if "status" in line)
    sizes = [(line["t"], (line["size"][0], line["size"][1])) for line in lines if "size" in line]
    switches = status["quality"]["switches"]
    times = switch_times(switches, sizes)
    print(f"switches {[(s['to'], s['trial']) for s in switches]}; decision to first picture: {times}")
    assert [s["to"] for s in switches if not s["trial"]][:1] == ["180p"], switches  # stepped down...
    assert status["quality"]["rung"] == "360p" and sizes[-1][1] == (640, 360), status  # ...and back up
    assert (320, 180) in [size for _, size in sizes]
    # Each switch shows (no stall); how fast is a timing, `media_bench abr`'s to report.
    assert times and max(times) < 5, times
    frames = [line["frames"] for line in lines if "frames" in line]
    assert frames[-1] - frames[-4] >= 60, f"not decoding at the end: {frames}"
