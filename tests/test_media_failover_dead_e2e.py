"""Never back to a dead path, over real sockets: a primary publisher in a process of its
own (aiortc, H.264 and audio) is SIGKILLed, so its session lingers on the server; the
backup (`?path=backup`) goes on air; then the backup is deleted. The program must end
(`media.ended` to the room, the viewers' tracks end, the HLS playlist ends with
`#EXT-X-ENDLIST`), not go back to the dead primary (`backup_ended`, a frozen picture).
And a primary whose link comes back while the program is off air is taken up again.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
import uuid

import pytest
from media_support import publish, publish_in_process, wait_until
from support import ServerProcess, Viewer, token
from test_media_failover_e2e import cut_link, play_timed

# Each wait below is a condition given up to 60 s on a loaded machine: room for a few of them.
pytestmark = pytest.mark.timeout(240)

H264 = "video/H264"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def failovers(watcher: Viewer) -> list[tuple[str, str, str]]:
    items = [i["data"] for i in watcher.items if i["type"] == "media.failover"]
    return [(data["from"], data["to"], data["reason"]) for data in items]


async def test_a_backup_that_ends_while_the_primary_is_dead_ends_the_program(server: ServerProcess) -> None:
    loop = asyncio.get_running_loop()
    room = f"fd-{uuid.uuid4().hex[:8]}"
    watcher = await Viewer(server.url, "dead-watcher").connect()
    await watcher.join(room)
    host = token("host-fd", "host")
    primary = await publish_in_process(server.url, room, host, H264)
    backup = await publish(server.url, room, host, H264, query="?path=backup")
    viewer = await play_timed(server.url, room, "fd-viewer")
    hls = f"{server.url}/hls/{room}"
    try:
        await wait_until(lambda: len(viewer.video) >= 30, 60, "video from the primary")
        await wait_until(lambda: ".m3u8" in get(f"{hls}/master.m3u8")[1], 60, "the HLS master playlist")
        variant = next(line for line in get(f"{hls}/master.m3u8")[1].splitlines() if line.endswith(".m3u8"))
        # (A primary stalled by a loaded machine fails over and returns for real before the
        # kill: those are told first, and what follows is the kill's.)
        told = len(failovers(watcher))
        primary.kill()  # SIGKILL: no BYE, no DTLS close; its session stays on the server
        await primary.wait()
        killed_at = loop.time()

        def seen() -> list[tuple[str, str, str]]:
            return failovers(watcher)

        await wait_until(lambda: len(seen()) > told, 60, "the failover", seen)
        await wait_until(lambda: viewer.video[-1][0] > killed_at + 0.5, 60, "video from the backup")
        [first] = failovers(watcher)[told:]
        assert first[:2] == ("primary", "backup") and first[2] in ("primary_stopped", "primary_silence")
        await backup.end()
        [ended] = await watcher.wait_for(lambda i: i["type"] == "media.ended", timeout=60)
        assert ended["data"] == {"room": room, "slot": "host", "reason": "no_path_sending"}
        assert failovers(watcher)[told:] == [first]  # not backup -> primary (backup_ended)
        status, playlist = get(f"{hls}/{variant}")  # kept readable a while, and ended
        assert status == 200 and playlist.rstrip().endswith("#EXT-X-ENDLIST"), playlist
        await wait_until(lambda: sorted(viewer.ended) == ["audio", "video"], 60, "the viewer's tracks to end")
        await wait_until(lambda: get(f"{hls}/master.m3u8")[0] == 404, 60, "the HLS files removed")
        again = await publish(server.url, room, host, H264)  # the host starts over: 201
        await again.end()
    finally:
        if primary.returncode is None:
            primary.kill()
            await primary.wait()
        await viewer.close()
        await backup.close()
        await watcher.close()


async def test_a_primary_that_comes_back_while_off_air_is_taken_up_again(server: ServerProcess) -> None:
    loop = asyncio.get_running_loop()
    room = f"fd-{uuid.uuid4().hex[:8]}"
    watcher = await Viewer(server.url, "dead-watcher").connect()
    await watcher.join(room)
    host = token("host-fd", "host")
    primary = await publish(server.url, room, host)
    backup = await publish(server.url, room, host, query="?path=backup")
    viewer = await play_timed(server.url, room, "fd-back")
    try:
        await wait_until(lambda: len(viewer.video) >= 30, 60, "video from the primary")
        restore = cut_link(primary)  # the primary's link goes dark
        await watcher.wait_for(lambda i: i["type"] == "media.failover", timeout=60)
        await backup.end()  # off air: the program waits end_after_s (1 s) for a path
        restore()  # and the primary is back within it
        back_at = loop.time()
        back = lambda i: i["type"] == "media.failover" and i["data"]["to"] == "primary"  # noqa: E731
        [item] = await watcher.wait_for(back, timeout=60)
        assert item["data"]["reason"] == "primary_recovered"
        await wait_until(lambda: viewer.video[-1][0] > back_at + 1.5, 60, "video from the primary again")
        assert viewer.ended == [] and not [i for i in watcher.items if i["type"] == "media.ended"]
    finally:
        await viewer.close()
        await primary.end()
        await watcher.close()
