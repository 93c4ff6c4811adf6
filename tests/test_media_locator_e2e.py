"""Media behind a load balancer: two real nodes on one real redis-server; the host publishes on
node A, and WHEP, HLS and session requests that reach node B are redirected (307) to A."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from media_support import WhipError, play, publish
from plugin_support import code, joined
from redis_support import RedisServer
from support import ServerProcess, Viewer, free_port, token


@pytest.fixture
def nodes(tmp_path: Path, redis_server: RedisServer) -> Iterator[list[ServerProcess]]:
    env = {
        "LIVEROOM_BROKER_KIND": "redis",
        "LIVEROOM_STORE_KIND": "redis",
        "LIVEROOM_REDIS_URL": redis_server.url,
        "LIVEROOM_REDIS_KEY_PREFIX": "m" + uuid.uuid4().hex[:8],
        "LIVEROOM_MEDIA_WORKERS": "1",
    }
    ports = [free_port(), free_port()]
    # Node A names itself; node B's public_url comes from --port (the derived default).
    own = [{"LIVEROOM_SERVER_PUBLIC_URL": f"http://127.0.0.1:{ports[0]}"}, {}]
    made = [
        ServerProcess(tmp_path / f"node{i}", env={**env, **own[i]}, port=port).launch()
        for i, port in enumerate(ports)
    ]
    try:
        yield [node.wait_ready() for node in made]
    finally:
        for node in made:
            node.stop()


async def fetch(method: str, url: str, **options: Any) -> tuple[int, str | None]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, allow_redirects=False, **options) as response,
    ):
        return response.status, response.headers.get("Location")


async def whep_status(url: str, viewer: str) -> tuple[int, str | None]:
    """A WHEP POST with a throwaway offer body (a redirect is decided before the offer is read)."""
    headers = {"Authorization": f"Bearer {viewer}", "Content-Type": "application/sdp"}
    return await fetch("POST", url, data="v=0\r\n", headers=headers)


async def until(check: Callable[[], Awaitable[bool]], within: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_media_requests_on_b_are_redirected_to_the_holder_a(nodes: list[ServerProcess]) -> None:
    a, b = nodes
    room = f"lb-{uuid.uuid4().hex[:8]}"
    viewer = token("lb-viewer", "viewer", room)
    query = f"/whep/{room}?slot=host&quality=480p"
    assert (await whep_status(b.url + query, viewer))[0] != 307  # nobody holds the room: served here
    host = await publish(a.url, room, token("lb-host", "host", room))
    try:

        async def redirected() -> bool:
            return (await whep_status(b.url + query, viewer))[0] == 307

        await until(redirected)
        assert await whep_status(b.url + query, viewer) == (307, a.url + query)
        hls = f"/hls/{room}/master.m3u8"
        assert await fetch("GET", b.url + hls) == (307, a.url + hls)
        assert (await whep_status(a.url + query, viewer))[0] != 307  # the holder serves it

        # A client that follows the redirect with its token (aiohttp, curl and browsers drop
        # Authorization on a redirect to another origin: docs/scaleout.md) plays from A, and
        # its session URL asked of B leads to A too.
        peer = await play(a.url, room, viewer)

        async def playing() -> bool:
            return len(peer.counters) >= 5

        await until(playing)
        auth = {"Authorization": f"Bearer {viewer}"}
        assert await fetch("DELETE", b.url + peer.location, headers=auth) == (307, a.url + peer.location)
        assert await peer.end() == 200
    finally:
        await host.end()

    async def released() -> bool:
        return (await whep_status(b.url + query, viewer))[0] != 307

    await until(released)  # the program ended: its key is gone, B serves the room again


async def test_a_guest_removed_through_a_cannot_publish_again_through_b(nodes: list[ServerProcess]) -> None:
    """The revocation is in the store both nodes share: node B, which never saw the stage,
    refuses the removed guest's token (before, only the node that revoked it did)."""
    a, b = nodes
    room = f"lb-{uuid.uuid4().hex[:8]}"
    viewers: list[Viewer] = []
    try:  # every Socket.IO client through A: the room's owner, where the stage changes, is A
        host = await joined(a, viewers, "stage-host", room, "host")
        fan = await joined(a, viewers, "stage-guest", room)
        assert code(await fan.call("costream.request", {"room": room})) == "ok"
        assert (await host.call("costream.accept", {"room": room, "user": fan.user}))["slot"] == 1
        [grant] = await fan.wait_for(lambda i: i["type"] == "costream.accepted")
        stale = str(grant["data"]["token"])
        guest = await publish(a.url, room, stale)
        await guest.close()
        assert code(await host.call("costream.remove", {"room": room, "user": fan.user})) == "ok"
        with pytest.raises(WhipError) as again:  # nobody holds the room's media: B serves it
            await publish(b.url, room, stale)
        assert again.value.status == 401, again.value.body
        assert "revoked" in json.loads(again.value.body)["error"]["message"]
    finally:
        for viewer in viewers:
            await viewer.close()


async def test_a_guest_removed_through_b_goes_off_the_air_on_the_holder_a(nodes: list[ServerProcess]) -> None:
    """The stage changes on B (every Socket.IO client there); the guest publishes on A, which
    holds the room's media (its host publishes there): B asks A to end the guest's session."""
    a, b = nodes
    room = f"lb-{uuid.uuid4().hex[:8]}"
    host_media = await publish(a.url, room, token("stage-host", "host", room))
    viewers: list[Viewer] = []
    peers = [host_media]
    try:

        async def held_by_a() -> bool:
            return (await whep_status(b.url + f"/whep/{room}", token("probe", "viewer", room)))[0] == 307

        await until(held_by_a)
        host = await joined(b, viewers, "stage-host", room, "host")
        fan = await joined(b, viewers, "stage-guest", room)
        assert code(await fan.call("costream.request", {"room": room})) == "ok"
        assert (await host.call("costream.accept", {"room": room, "user": fan.user}))["slot"] == 1
        [grant] = await fan.wait_for(lambda i: i["type"] == "costream.accepted")
        peers.append(await publish(a.url, room, str(grant["data"]["token"])))  # where B's 307 leads
        watcher = await play(a.url, room, token("stage-watcher", "viewer", room), slot="1")
        peers.append(watcher)

        async def playing() -> bool:
            return len(watcher.counters) >= 3

        await until(playing)
        assert code(await host.call("costream.remove", {"room": room, "user": fan.user})) == "ok"

        async def off_the_air() -> bool:
            return watcher.ended.get("video") is True

        await until(off_the_air)
    finally:
        for viewer in viewers:
            await viewer.close()
        for peer in peers:
            await peer.close()
