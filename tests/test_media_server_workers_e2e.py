"""`liveroom serve --workers 2` with the media plane on: worker 0 holds it, worker 1 forwards
the media routes to it (media/forward.py), so a client never notices which worker it hit.

A real supervisor and two workers. Each HTTP client is pinned to one worker: a keep-alive
connection (one per client) whose Engine.IO handshake was answered by that worker (its
session id starts with `w<index>.`), checked again at every request by the connection's
local port. An aiortc host publishes H.264 through worker 1 (forwarded), aiortc viewers play
through worker 0 (where the media is) and worker 1 (forwarded) and decode the host's frame
counter; Socket.IO members on both workers get the media plane's room items; HLS is read
through worker 1; while worker 0 is being restarted, a media request
answers 503 `unavailable` with Retry-After at once, and once it is back the host publishes
again through worker 1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import AudioStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from media_support import CounterTrack, codec_preferences, read_counter, wait_until
from support import ServerProcess, token
from test_workers_e2e import placed, ready, started, until, worker_alive, worker_pid

MEDIA_ENV = {"LIVEROOM_MEDIA_ENABLED": "true", "LIVEROOM_MEDIA_HLS_SEGMENT_S": "1.0"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = started(tmp_path / "workers", MEDIA_ENV)
    yield process
    process.stop()


class Pinned:
    """An HTTP client whose every request goes over one connection to one worker."""

    def __init__(self, base: str, worker: int) -> None:
        self.base, self.worker = base, worker
        self.connections = 0  # opened so far: more than one, and a request may have gone elsewhere
        tracing = aiohttp.TraceConfig()
        tracing.on_connection_create_end.append(self._opened)
        connector = aiohttp.TCPConnector(limit=1, keepalive_timeout=300)
        self.http = aiohttp.ClientSession(connector=connector, trace_configs=[tracing])

    async def _opened(self, *_: Any) -> None:
        self.connections += 1

    async def open(self) -> Pinned | None:
        """Self if the kernel gave this client's connection to `worker`; closed otherwise."""
        async with self.http.get(f"{self.base}/socket.io/?EIO=4&transport=polling") as response:
            sid = json.loads((await response.text())[1:])["sid"]
        if sid.startswith(f"w{self.worker}."):
            return self
        await self.http.close()
        return None

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
        async with self.http.request(method, self.base + path, **kwargs) as response:
            body = await response.read()
        assert self.connections == 1, "a new connection: maybe to another worker"
        return response.status, dict(response.headers), body

    async def close(self) -> None:
        await self.http.close()


async def pinned(base: str, worker: int) -> Pinned:
    for _ in range(200):
        client = await Pinned(base, worker).open()
        if client is not None:
            return client
    raise AssertionError(f"no connection landed on worker {worker}")


async def exchange(client: Pinned, pc: RTCPeerConnection, path: str, bearer: str) -> str:
    """WHIP or WHEP through `client`: the SDP offer out, the answer in; the session's URL."""
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {bearer}"}
    status, answer_headers, body = await client.request(
        "POST", path, data=pc.localDescription.sdp, headers=headers
    )
    assert status == 201, (status, body)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body.decode(), type="answer"))
    return answer_headers["Location"]


async def publish(client: Pinned, room: str) -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(CounterTrack(), "sendonly").setCodecPreferences(
        codec_preferences("video", "video/H264")
    )
    pc.addTransceiver(AudioStreamTrack(), "sendonly")
    return pc, await exchange(client, pc, f"/whip/{room}", token("ws-host", "host", room=room))


async def play(client: Pinned, room: str, user: str) -> tuple[RTCPeerConnection, list[int]]:
    """A viewer through `client`: the frame counters it decodes."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", "recvonly")
    counters: list[int] = []

    async def consume(track: MediaStreamTrack) -> None:
        try:
            while True:
                counters.append(read_counter(await track.recv()))  # type: ignore[arg-type]
        except MediaStreamError:
            return

    tasks: list[asyncio.Task[None]] = []
    pc.on("track", lambda track: tasks.append(asyncio.ensure_future(consume(track))))
    await exchange(client, pc, f"/whep/{room}", token(user, room=room))
    return pc, counters


async def test_whip_on_one_worker_whep_and_hls_on_either(server: ServerProcess) -> None:
    room = f"ws-{uuid.uuid4().hex[:8]}"
    media_side, other = await pinned(server.url, 0), await pinned(server.url, 1)
    members = await placed(server, 1, "ws-m")  # a Socket.IO member of the room on each worker
    peers: list[RTCPeerConnection] = []
    try:
        for member in members[0] + members[1]:
            await member.join(room)
        host, location = await publish(other, room)  # forwarded to worker 0
        peers.append(host)
        assert location.startswith(f"/whip/{room}/")
        for member in members[0] + members[1]:  # worker 0's room items, through the supervisor's bus
            await member.wait_for(
                lambda i: i["type"] == "media.publisher" and i["data"]["state"] == "connected", timeout=30
            )
        direct, direct_counters = await play(media_side, room, "ws-v0")
        forwarded, forwarded_counters = await play(other, room, "ws-v1")
        peers += [direct, forwarded]
        for counters in (direct_counters, forwarded_counters):
            await wait_until(lambda c=counters: len(c) >= 15, 30, "decoded frames")
            assert counters[-1] > counters[0], counters  # the host's counter, advancing

        async def master() -> tuple[int, dict[str, str], bytes]:
            return await other.request("GET", f"/hls/{room}/master.m3u8")

        for _ in range(300):
            status, headers, body = await master()
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200, body
        assert body.startswith(b"#EXTM3U") and headers["Content-Type"] == "application/vnd.apple.mpegurl"
        assert headers["Cache-Control"] == "public, max-age=1"

        bearer = token("ws-host", "host", room=room)
        status, _, body = await other.request(
            "DELETE", location, headers={"Authorization": f"Bearer {bearer}"}
        )
        assert status == 200, body
    finally:
        for pc in peers:
            await pc.close()
        for member in members[0] + members[1]:
            await member.close()
        await media_side.close()
        await other.close()


async def test_media_is_503_while_worker_0_restarts_then_publishes_again(server: ServerProcess) -> None:
    room = f"wr-{uuid.uuid4().hex[:8]}"
    old = worker_pid(server, 0)
    os.kill(old, signal.SIGKILL)
    await until(lambda: _dead(old), 30)
    # Worker 0's listening socket went with it: every new connection lands on worker 1, which
    # cannot reach the media plane until the supervisor has started worker 0 again.
    async with aiohttp.ClientSession() as http:
        started_at = asyncio.get_running_loop().time()
        async with http.get(f"{server.url}/hls/{room}/master.m3u8") as response:
            assert response.status == 503, await response.text()
            assert response.headers["Retry-After"] == "1"
            error = (await response.json())["error"]
        assert asyncio.get_running_loop().time() - started_at < 5  # at once, not a hung request
    assert error["code"] == "unavailable" and error["retry"] == "later", error
    await until(lambda: worker_alive(server, old) and ready(server), 120)
    other = await pinned(server.url, 1)
    try:
        host, _ = await publish(other, room)  # as a host re-publishes after a restart
        await host.close()
    finally:
        await other.close()


def _dead(pid: int) -> bool:
    """Gone or a zombie: its sockets are closed either way."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
