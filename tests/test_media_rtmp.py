"""RTMP ingest end to end: Debian's ffmpeg publishes H.264 + AAC over RTMP to a real server
(two media workers), an aiortc viewer plays it over WHEP and reads the drawn frame counter
back in order, with Opus audio; ffprobe and PyAV read the HLS the same program makes; and
connections that must be refused (wrong key, bad room, a second primary, malformed chunks)
are closed with a log line while the publisher and its viewer carry on."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from media_support import LOW, Peer, WhipError, _exchange, play, read_counter, scrape, wait_until
from rtmp_support import FFMPEG, publish, stop
from support import SECRET, ServerProcess, Viewer, free_port, module_server, token

from liveroom.auth import TokenAuthority

pytestmark = pytest.mark.skipif(
    FFMPEG is None or shutil.which("ffprobe") is None, reason="ffmpeg/ffprobe are not installed"
)

RTMP_PORT = free_port()
ROOM = f"rtmp-{uuid.uuid4().hex[:8]}"
server = module_server(
    "server",
    {
        "LIVEROOM_MEDIA_WORKERS": "2",
        "LIVEROOM_MEDIA_RTMP_PORT": str(RTMP_PORT),
        "LIVEROOM_MEDIA_HLS_SEGMENT_S": "1.0",
        "LIVEROOM_MEDIA_GOP_CACHE_FRAMES": "300",  # an RTMP backup keeps a 5 s GOP (failover test)
    },
)


def rtmp_url(room: str, key: str, query: str = "") -> str:
    return f"rtmp://127.0.0.1:{RTMP_PORT}/live/{room}?token={key}{query}"


@pytest.fixture(scope="module")
def publisher(server: ServerProcess) -> Iterator[subprocess.Popen[bytes]]:
    process = publish(rtmp_url(ROOM, token("host-rtmp", "host", ROOM)), seconds=60)
    yield process
    stop(process)


async def watch(base: str, room: str) -> Peer:
    """A WHEP viewer, once the RTMP publisher is on (404 until then)."""
    viewer_token = token("viewer-rtmp", "viewer")
    for _ in range(200):
        try:
            return await play(base, room, viewer_token)
        except WhipError as error:
            if error.status != 404:
                raise
            await asyncio.sleep(0.1)
    raise AssertionError("the RTMP publisher never came on")


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bytes(response.read())


def in_order(counters: list[int]) -> bool:
    return all(b > a for a, b in itertools.pairwise(counters))


async def test_an_rtmp_publisher_plays_over_whep_and_hls(
    server: ServerProcess, publisher: subprocess.Popen[bytes]
) -> None:
    viewer = await watch(server.url, ROOM)
    try:
        await wait_until(lambda: len(viewer.counters) >= 60, 30, "60 frames over WHEP")
        await wait_until(lambda: len(viewer.frames["audio"]) >= 25, 10, "Opus audio over WHEP")
        counters = list(viewer.counters)
        assert in_order(counters), counters
        assert counters[-1] - counters[0] + 1 <= len(counters) / 0.9, counters  # >= 90 % of the frames
        assert viewer.sizes[-1] == (320, 240)

        hls = f"{server.url}/hls/{ROOM}"
        await wait_until(lambda: b"audio.m3u8" in _or_empty(f"{hls}/master.m3u8"), 20, "HLS with audio")
        done = await asyncio.to_thread(
            subprocess.run,
            ["ffprobe", "-v", "error", "-of", "json", "-show_streams", f"{hls}/master.m3u8"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        codecs = sorted(s["codec_name"] for s in json.loads(done.stdout or b"{}").get("streams", []))
        assert codecs == ["aac", "h264"], done.stderr
        playlist = get(f"{hls}/720p.m3u8").decode()
        segment = [line for line in playlist.splitlines() if line.endswith(".ts")][-1]
        with av.open(io.BytesIO(get(f"{hls}/{segment}")), mode="r", format="mpegts") as container:
            pictures = [read_counter(frame) for frame in container.decode(video=0)]
        assert len(pictures) >= 15 and in_order(pictures), pictures

        metrics = scrape(server.url)
        assert metrics.get('liveroom_media_codec_instances_total{role="encoder"}', 0) == 0
        assert metrics.get('liveroom_media_codec_instances_total{role="decoder"}', 0) == 0
    finally:
        await viewer.close()


def _or_empty(url: str) -> bytes:
    try:
        return get(url)
    except OSError:
        return b""


def refused(url: str) -> subprocess.CompletedProcess[bytes]:
    """ffmpeg publishing to `url` for a moment: the server must refuse it."""
    assert FFMPEG is not None
    command = [
        FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-f", "lavfi",
        "-i", "testsrc2=s=160x120:r=15", "-t", "3", "-c:v", "libx264", "-preset", "ultrafast",
        "-profile:v", "baseline", "-f", "flv", url,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, timeout=60, check=False)


def malformed() -> bytes:
    """A handshake, then a chunk that continues a chunk stream never started: closed."""
    with socket.create_connection(("127.0.0.1", RTMP_PORT), timeout=10) as sock:
        sock.sendall(b"\x03" + bytes(1536))
        received = b""
        while len(received) < 1 + 2 * 1536:
            part = sock.recv(65536)
            assert part, "closed during the handshake"
            received += part
        sock.sendall(bytes(1536) + b"\x43" + bytes(20))  # C2, then a type-1 chunk on csid 3
        rest = b""
        while part := sock.recv(65536):
            rest += part
        return rest


async def test_refused_connections_are_closed_and_disturb_nobody(
    server: ServerProcess, publisher: subprocess.Popen[bytes]
) -> None:
    viewer = await watch(server.url, ROOM)
    try:
        await wait_until(lambda: len(viewer.counters) >= 10, 20, "the viewer playing")
        forged = TokenAuthority("another-secret-that-is-long-enough-for-hs256-00").mint(
            "host-rtmp", "Host", "host", ROOM, 600, None
        )
        assert SECRET not in forged
        attempts = {
            "unauthorized": rtmp_url(ROOM, forged),
            "bad_request": rtmp_url("r" * 65, token("host-rtmp", "host")),  # not a room name
            "wrong_room": rtmp_url(ROOM, token("host-rtmp", "host", "another-room")),
            "forbidden": rtmp_url(ROOM, token("viewer-1", "viewer", ROOM)),
            "already_publishing": rtmp_url(ROOM, token("host-rtmp", "host", ROOM)),
        }
        for code, url in attempts.items():
            done = await asyncio.to_thread(refused, url)
            assert done.returncode != 0, (code, done.stderr)
        assert await asyncio.to_thread(malformed) == b""  # closed, nothing said
        before = len(viewer.counters)
        await wait_until(lambda: len(viewer.counters) >= before + 30, 20, "the viewer still playing")
        assert in_order(list(viewer.counters))
        assert publisher.poll() is None, "the publisher was disturbed"
        log = server.log()
        for code in attempts:
            assert f"publish refused ({code})" in log, (code, log[-3000:])
        assert "malformed RTMP" in log
    finally:
        await viewer.close()


async def play_timed(base: str, room: str) -> tuple[RTCPeerConnection, list[tuple[float, int]]]:
    """A WHEP viewer noting when each decoded picture arrives: [(arrival, counter)]."""
    pc, arrivals = RTCPeerConnection(RTCConfiguration(iceServers=[])), []
    pc.addTransceiver("video", "recvonly")

    async def consume(track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame: Any = await track.recv()
                arrivals.append((time.monotonic(), read_counter(frame)))

    tasks = []
    pc.on("track", lambda track: tasks.append(asyncio.ensure_future(consume(track))))
    pc.tasks = tasks  # type: ignore[attr-defined]  # cancelled with the connection
    await _exchange(pc, f"{base}/whep/{room}", token("viewer-rtmp-fo"))
    return pc, arrivals


async def close_timed(pc: RTCPeerConnection | None) -> None:
    """Stop a `play_timed` viewer: its track readers, then its connection."""
    if pc is None:
        return
    for task in pc.tasks:  # type: ignore[attr-defined]
        task.cancel()
    await pc.close()


async def test_an_rtmp_backup_takes_over_when_the_primary_encoder_is_killed(server: ServerProcess) -> None:
    await backup_takeover(server)


@pytest.mark.bench
async def test_an_rtmp_backups_takeover_leaves_no_gap(server: ServerProcess) -> None:
    """How fast: a timing, so a benchmark's (docs/testing.md); the default test above checks
    the takeover itself. 2.0 s at load 7 with two xdist workers, against 1.5 s here."""
    gap = await backup_takeover(server)
    # The target is 200 ms (docs/media.md, measured on a quiet machine); the bound here only
    # tells a replayed group of pictures (tens of ms) from waiting for a keyframe (0-5 s).
    assert gap <= 1.5, f"video gap {gap * 1000:.0f} ms"


async def backup_takeover(server: ServerProcess) -> float:
    """A viewer of an RTMP primary, the primary's encoder SIGKILLed: it plays the backup, in
    order, from where it took over. Returns the largest gap between pictures around the kill."""
    room = f"rtmp-fo-{uuid.uuid4().hex[:8]}"
    key = token("host-rtmp-fo", "host", room)
    # A keyframe every 5 s: without the backup's kept group of pictures (gop_cache_frames,
    # 300 here) the viewers would wait for its next one (none can be asked of an RTMP encoder).
    primary = publish(rtmp_url(room, key), seconds=60, gop=150)
    backup = publish(rtmp_url(room, key, "&path=backup"), seconds=60, gop=150)
    pc = None
    try:
        await (await watch(server.url, room)).close()  # the primary is on
        pc, arrivals = await play_timed(server.url, room)
        await wait_until(lambda: len(arrivals) >= 60, 60, "the viewer playing the primary")
        await asyncio.sleep(0.5)  # the backup's encoder is past its first keyframe too
        killed_at = time.monotonic()
        primary.send_signal(signal.SIGKILL)
        await wait_until(lambda: arrivals[-1][0] > killed_at + 2.5, 20, "pictures after the kill")
        window = [at for at, _ in arrivals if killed_at - 0.5 <= at <= killed_at + 2.5]
        gap = max(b - a for a, b in itertools.pairwise(window))
        print(f"RTMP failover gap: {gap * 1000:.0f} ms")

        # The backup's own counter, in order, from where it took over. The primary's last
        # pictures may still arrive after the kill on a loaded machine (one came 0.3 s late
        # at load 11): they are the ones before the counter steps back.
        def after() -> list[int]:
            return [counter for at, counter in arrivals if at > killed_at]

        def steps_back() -> list[int]:
            return [i + 1 for i, (a, b) in enumerate(itertools.pairwise(after())) if b <= a]

        def from_backup() -> list[int]:
            return after()[steps_back()[0] if steps_back() else 0 :]

        # Thirty of the backup's pictures, however slowly a loaded machine decodes them.
        await wait_until(lambda: len(from_backup()) >= 30, 30, "the backup's pictures", after)
        assert len(steps_back()) <= 1, after()  # one switch, from the primary to the backup
        metrics = scrape(server.url)
        assert metrics.get(f'liveroom_media_failovers_total{{room="{room}",to="backup"}}', 0) >= 1
        return gap
    finally:
        await close_timed(pc)
        stop(primary)
        stop(backup)


def in_turn(wanted: list[str], seen: list[str]) -> bool:
    """`wanted` appears in `seen` in this order (other items between them)."""
    rest = iter(seen)
    return all(any(state == want for state in rest) for want in wanted)


def receiver(port: int, out: Path) -> subprocess.Popen[bytes]:
    """ffmpeg as the other platform: takes one RTMP publish and writes it to `out`."""
    assert FFMPEG is not None
    command = [
        FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-analyzeduration", "1000000",
        "-listen", "1", "-i", f"rtmp://127.0.0.1:{port}/live/platform-key", "-c", "copy",
        "-flush_packets", "1", "-f", "mpegts", str(out),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def streams(path: Path) -> tuple[list[str], float]:
    command = ["ffprobe", "-v", "error", "-of", "json", "-show_entries", "stream=codec_name:format=duration"]
    info = json.loads(subprocess.run([*command, str(path)], capture_output=True, timeout=30).stdout or b"{}")
    codecs = sorted(s["codec_name"] for s in info.get("streams", []))
    return codecs, float(info.get("format", {}).get("duration") or 0)


async def api(method: str, url: str, bearer: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {bearer}"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, headers=headers, json=body) as response,
    ):
        return response.status, await response.json()


async def test_the_program_is_restreamed_and_the_push_resumes_after_the_receiver_restarts(
    server: ServerProcess, publisher: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    host, api_url = token("host-rtmp", "host", ROOM), f"{server.url}/api/rooms/{ROOM}/restreams"
    port = free_port()
    await (await watch(server.url, ROOM)).close()  # the publisher is on
    watcher = await Viewer(server.url, "restream-watcher").connect()
    await watcher.join(ROOM)
    first = receiver(port, tmp_path / "first.ts")
    second = None
    try:
        assert (await api("POST", api_url, token("viewer-2"), {"url": "rtmp://x/live/k"}))[0] == 403
        assert (await api("POST", api_url, host, {"url": "http://x/live/k"}))[0] == 400
        status, body = await api("POST", api_url, host, {"url": f"rtmp://127.0.0.1:{port}/live/platform-key"})
        assert status == 201 and body["restream"]["state"] == "connecting", body
        restream = body["restream"]["id"]

        def state() -> str:
            return str(next(r["state"] for r in _listed(server.url, host) if r["id"] == restream))

        await wait_until(lambda: state() == "live", 20, "the push live")
        live = f'liveroom_media_restream_state{{restream="{restream}",room="{ROOM}",state="live"}}'
        await wait_until(
            lambda: scrape(server.url).get(live) == 1, 10, "the state in /metrics"
        )  # 0.5 s snapshots
        await asyncio.sleep(3)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        await wait_until(lambda: state() in ("retrying", "connecting"), 20, "the push retrying")
        second = receiver(port, tmp_path / "second.ts")
        await wait_until(lambda: state() == "live", 30, "the push live again")
        await asyncio.sleep(2)
        status, body = await api("DELETE", f"{api_url}/{restream}", host)
        assert status == 200 and body["restream"]["attempts"] >= 2, body
        await asyncio.to_thread(second.wait, 20)  # our side closed: the receiver finishes its file

        # Each file holds what was pushed while its receiver ran: at least the seconds we
        # waited with the push live. (No upper bound from the wall clock: on a loaded machine
        # a push starts with what the program had buffered, and first.ts held 8.2 s of media
        # for 3.4 s of wall time; how fast a push catches up is a benchmark's to say.)
        for name, at_least in (("first.ts", 3), ("second.ts", 2)):
            codecs, duration = await asyncio.to_thread(streams, tmp_path / name)
            assert codecs == ["aac", "h264"], (name, codecs)
            assert at_least - 1 <= duration, (name, duration)
        states = [item["data"]["state"] for item in watcher.of_type("media.restream")]
        # Live, retrying once its receiver is gone, live again, removed; a loaded machine may
        # start ffmpeg's listener after the first attempt (one retry more before "live").
        assert in_turn(["connecting", "live", "retrying", "live", "removed"], states), states
        assert states[0] == "connecting" and states[-1] == "removed", states
        assert all("platform-key" not in json.dumps(item) for item in watcher.of_type("media.restream"))
    finally:
        stop(first)
        if second is not None:
            stop(second)
        await watcher.close()


def _listed(base: str, bearer: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        f"{base}/api/rooms/{ROOM}/restreams", headers={"Authorization": f"Bearer {bearer}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return list(json.loads(response.read())["restreams"])


async def test_an_rtmp_camera_is_cut_to_on_the_host_program(server: ServerProcess) -> None:
    """Two RTMP cameras of one host (`&camera=wide`, `&camera=close` drawing counters from
    LOW): the host's cut puts the close camera on the program a WHEP viewer decodes."""
    room = f"rtmp-cam-{uuid.uuid4().hex[:8]}"
    key = token("host-rtmp-cam", "host", room)
    wide = publish(rtmp_url(room, key, "&camera=wide"), seconds=60)
    close = None
    pc = None
    try:
        await (await watch(server.url, room)).close()  # the wide camera is on
        close = publish(rtmp_url(room, key, "&camera=close"), seconds=60, start=LOW)
        pc, arrivals = await play_timed(server.url, room)
        await wait_until(lambda: len(arrivals) >= 30, 60, "the wide camera")
        url = f"{server.url}/api/rooms/{room}/program"
        status, body = 0, None
        for _ in range(300):  # 404 until the close camera's publish is in, 409 until it sends
            status, body = await api("POST", url, key, {"camera": "close"})
            if status == 200:
                break
            assert (status, body["error"]["code"]) in ((404, "no_such_camera"), (409, "camera_not_sending"))
            await asyncio.sleep(0.1)
        cut_at = time.monotonic()
        assert status == 200, body
        await wait_until(
            lambda: sum(at > cut_at and c >= LOW for at, c in arrivals) >= 30,
            60,
            "the close camera's pictures",
        )
        window = [at for at, _ in arrivals if cut_at - 0.5 <= at <= cut_at + 1.5]
        gap = max(b - a for a, b in itertools.pairwise(window))
        print(f"\nRTMP camera cut gap: {gap * 1000:.0f} ms ({body})")
        assert gap <= 3.0 and pc.connectionState == "connected"
    finally:
        await close_timed(pc)
        stop(wide)
        if close is not None:
            stop(close)
