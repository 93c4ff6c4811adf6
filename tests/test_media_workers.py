"""Media worker processes: rooms hashed to workers, media served by each, nothing left behind.

This module's server also runs with `media.fast_send = false`, so aiortc's own sender
loop (the fallback) carries the video here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from media_support import WhipError, play, post_sdp, publish, scrape, wait_until
from support import ServerProcess, token


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path_factory.mktemp("media-workers"),
        {"LIVEROOM_MEDIA_WORKERS": "2", "LIVEROOM_MEDIA_FAST_SEND": "false"},
    )
    yield process.start()
    process.stop()


def rooms_on_each_worker() -> tuple[str, str]:
    """Two room names that the pool's stable hash puts on worker 0 and worker 1."""
    names = [f"room-{n}" for n in range(20)]
    return next(n for n in names if zlib.crc32(n.encode()) % 2 == 0), next(
        n for n in names if zlib.crc32(n.encode()) % 2 == 1
    )


def sessions(server: ServerProcess) -> dict[str, float]:
    metrics = scrape(server.url)
    return {k: v for k, v in metrics.items() if k.startswith("liveroom_media_sessions")}


async def test_each_worker_serves_its_rooms(server: ServerProcess) -> None:
    room_a, room_b = rooms_on_each_worker()
    publishers = [await publish(server.url, room, token(f"host-{room}", "host")) for room in (room_a, room_b)]
    viewers = [await play(server.url, room, token(f"fan-{room}")) for room in (room_a, room_b)]
    try:
        assert all(p.location.split("/")[-1].startswith(f"{i}.") for i, p in enumerate(publishers))
        await wait_until(lambda: all(len(v.counters) >= 20 for v in viewers), 20, "video in both rooms")
        whep = 'liveroom_media_sessions{{kind="whep",worker="{}"}}'
        await wait_until(lambda: sessions(server).get(whep.format(1)) == 1, 5, "worker 1's viewer")
        assert sessions(server)[whep.format(0)] == 1
        assert scrape(server.url)['liveroom_media_codec_instances_total{role="encoder"}'] == 0
    finally:
        for peer in viewers + publishers:
            assert await peer.end() == 200
    await wait_until(lambda: set(sessions(server).values()) == {0.0}, 10, "every session closed")


async def test_errors_cross_the_process_boundary(server: ServerProcess) -> None:
    room_a, _ = rooms_on_each_worker()
    host = await publish(server.url, room_a, token("host-x", "host"))
    try:
        with pytest.raises(WhipError) as second:
            await publish(server.url, room_a, token("host-x", "host"))
        assert second.value.status == 409
        status, _, _ = await post_sdp(f"{server.url}/whip/{room_a}x", token("h", "host"), "v=0 m=nonsense")
        assert status == 400
    finally:
        await host.end()


async def test_the_host_takes_a_guest_off_stage_by_slot(server: ServerProcess) -> None:
    import time

    import jwt
    from media_support import delete
    from support import SECRET

    room, _ = rooms_on_each_worker()
    claims = {"sub": "g", "role": "guest", "room": room, "slot": 2, "scope": "publish"}
    guest = await publish(server.url, room, jwt.encode({**claims, "exp": int(time.time()) + 60}, SECRET))
    viewer = await play(server.url, room, token("fan"), slot="2")
    try:
        await wait_until(lambda: len(viewer.counters) >= 5, 15, "the guest's video")
        status, _ = await delete(f"{server.url}/whip/{room}/slots/2", token("fan"))
        assert status == 403
        status, _ = await delete(f"{server.url}/whip/{room}/slots/2", token("host-y", "host"))
        assert status == 403  # a host token for no room in particular is not this room's host
        status, _ = await delete(f"{server.url}/whip/{room}/slots/2", token("host-y", "host", room=room))
        assert status == 200
        await wait_until(lambda: viewer.ended.get("video") is True, 10, "the guest's video to end")
        status, _ = await delete(f"{server.url}/whip/{room}/slots/2", token("host-y", "host", room=room))
        assert status == 404
    finally:
        await viewer.close()
        await guest.close()


async def test_trickle_reaches_the_rooms_worker(server: ServerProcess) -> None:
    _, room = rooms_on_each_worker()
    host = await publish(server.url, room, token("trickling-host", "host"), trickle=True)
    viewer = await play(server.url, room, token("fan-t"))
    try:
        assert host.location.split("/")[-1].startswith("1.")
        await wait_until(lambda: len(viewer.counters) >= 10, 15, "video")
    finally:
        await viewer.end()
        await host.end()


def media_worker_pid(server: ServerProcess, index: int) -> int:
    assert server.process is not None
    found = subprocess.run(
        ["pgrep", "-P", str(server.process.pid), "-f", f"liveroom.media.worker .*w{index}.sock"],
        capture_output=True,
        text=True,
        check=False,
    )
    [pid] = [int(pid) for pid in found.stdout.split()]
    return pid


@pytest.fixture
def impatient(tmp_path: Path) -> Iterator[ServerProcess]:
    """Two media workers, each given 2 s to answer."""
    env = {"LIVEROOM_MEDIA_WORKERS": "2", "LIVEROOM_MEDIA_WORKER_CALL_TIMEOUT_S": "2"}
    process = ServerProcess(tmp_path / "impatient", env)
    yield process.start()
    process.stop()


async def test_a_worker_too_busy_to_answer_is_an_unknown_outcome_not_a_bad_request(
    impatient: ServerProcess,
) -> None:
    """A media worker that does not answer in time (stopped here; on a loaded machine, busy)
    is answered 504 outcome_unknown, and the node goes on serving; the worker answers again
    once it runs."""
    room, _ = rooms_on_each_worker()
    host = await publish(impatient.url, room, token("host-busy", "host"))  # starts the workers
    worker = media_worker_pid(impatient, 0)
    os.kill(worker, signal.SIGSTOP)
    try:
        with pytest.raises(WhipError) as busy:
            await play(impatient.url, room, token("fan-busy"))
        assert busy.value.status == 504, busy.value.body
        assert json.loads(busy.value.body)["error"]["code"] == "outcome_unknown"
        async with aiohttp.ClientSession() as http, http.get(impatient.url + "/readyz") as response:
            assert response.status == 200, await response.text()  # the node itself goes on
    finally:
        os.kill(worker, signal.SIGCONT)
    viewer = await play(impatient.url, room, token("fan-busy"))
    try:
        await wait_until(lambda: len(viewer.counters) >= 10, 30, "video, the worker running", viewer.describe)
    finally:
        await viewer.end()
        await host.end()
