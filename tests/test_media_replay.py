"""Recordings people can watch: Debian's ffmpeg publishes H.264 + AAC over RTMP, the host
records the program while a viewer sends danmaku, then the recording is watched: ffprobe
finds both streams in the served file and in its VOD HLS, a range request gets 206 and
the asked bytes, the timeline export has the danmaku at the times they were sent, and
Debian's Chromium plays the replay page with each danmaku flying when the video reaches
its time (tests/browser/replay.mjs). Skipped without ffmpeg/ffprobe (and the browser part
without chromium, node and npm)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from media_support import WhipError, play
from rtmp_support import FFMPEG, publish, stop
from support import ServerProcess, Viewer, free_port, module_server, token

pytestmark = pytest.mark.skipif(
    FFMPEG is None or shutil.which("ffprobe") is None, reason="ffmpeg/ffprobe are not installed"
)

RTMP_PORT = free_port()
BROWSER_DIR = Path(__file__).parent / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
server = module_server(
    "server",
    {
        "LIVEROOM_MEDIA_WORKERS": "2",
        "LIVEROOM_MEDIA_RTMP_PORT": str(RTMP_PORT),
        "LIVEROOM_MEDIA_RECORDING_FRAGMENT_S": "1",
    },
)


async def call(method: str, url: str, bearer: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {bearer}"}
    async with aiohttp.ClientSession() as http, http.request(method, url, headers=headers) as response:
        return response.status, await response.json()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def probe(url: str) -> tuple[list[str], float]:
    command = [
        "ffprobe",
        "-v",
        "error",
        "-of",
        "json",
        "-show_entries",
        "stream=codec_name:format=duration",
        url,
    ]
    info = json.loads(subprocess.run(command, capture_output=True, timeout=60, check=False).stdout or b"{}")
    return sorted(s["codec_name"] for s in info.get("streams", [])), float(
        info.get("format", {}).get("duration") or 0
    )


async def on_air(base: str, room: str) -> None:
    for _ in range(300):
        try:
            await (await play(base, room, token("replay-probe"), kinds=("video",))).close()
            return
        except WhipError as error:
            if error.status != 404:
                raise
            await asyncio.sleep(0.1)
    raise AssertionError("the RTMP publisher never came on")


async def test_a_recording_is_served_with_its_timeline_and_replayed_with_danmaku(
    server: ServerProcess,
) -> None:
    room = f"replay-{uuid.uuid4().hex[:8]}"
    host = token("host-replay", "host", room)
    encoder = publish(f"rtmp://127.0.0.1:{RTMP_PORT}/live/{room}?token={host}", seconds=60)
    chatter = await Viewer(server.url, "chatter").connect()
    try:
        await chatter.join(room)
        await on_air(server.url, room)
        api = f"{server.url}/api/rooms/{room}/recordings"
        status, body = await call("POST", api, host)
        assert status == 201, body
        recording = body["recording"]["id"]
        began = time.monotonic()
        sent: dict[str, float] = {}
        for text, at in (("first!", 1.0), ("second!", 3.0)):
            await asyncio.sleep(max(0.0, began + at - time.monotonic()))
            sent[text] = time.time()
            ack = await chatter.call("danmaku.send", {"room": room, "text": text})
            assert ack["ok"], ack
        await asyncio.sleep(max(0.0, began + 4 - time.monotonic()))
        status, body = await call("POST", f"{api}/{recording}/stop", host)
        assert status == 200 and body["recording"]["audio"] and body["recording"]["timeline_items"] >= 2, body
        length, first_picture = body["recording"]["duration_s"], body["recording"]["media_started_at"]
    finally:
        stop(encoder)
        await chatter.close()

    files = f"{server.url}/recordings/{room}/{recording}"
    viewer = token("watcher", "viewer", room)
    assert fetch(f"{files}.mp4")[0] == 401
    assert fetch(f"{files}.mp4?token={token('other', 'viewer', 'another-room')}")[0] == 403
    assert fetch(f"{server.url}/recordings/{room}/..%2Fsecret.mp4?token={viewer}")[0] == 404
    status, headers, whole = fetch(f"{files}.mp4?token={viewer}")
    assert status == 200 and headers.get("Accept-Ranges") == "bytes"
    status, headers, part = fetch(
        f"{files}.mp4", {"Authorization": f"Bearer {viewer}", "Range": "bytes=100-199"}
    )
    assert status == 206 and part == whole[100:200], (status, headers)
    assert headers["Content-Range"] == f"bytes 100-199/{len(whole)}"

    for url in (f"{files}.mp4?token={viewer}", f"{files}.m3u8?token={viewer}"):
        codecs, duration = await asyncio.to_thread(probe, url)
        assert codecs == ["aac", "h264"], (url, codecs)
        assert abs(duration - length) <= 1.0, (url, duration, length)
    assert b"#EXT-X-ENDLIST" in fetch(f"{files}.m3u8?token={viewer}")[2]

    status, _, raw = fetch(f"{files}.timeline.json?token={viewer}")
    items = [item for item in json.loads(raw)["items"] if item["type"] == "danmaku.message"]
    assert status == 200 and [item["data"]["text"] for item in items] == ["first!", "second!"]
    for item in items:  # t: where it belongs in the video, from the file's first picture
        assert sent[item["data"]["text"]] - 0.05 <= item["ts"] / 1000 <= sent[item["data"]["text"]] + 10, item
        assert item["t"] == pytest.approx(item["ts"] / 1000 - first_picture, abs=0.002) and item["t"] > 0

    shown = await replay(server.url, room, recording, viewer, seconds=items[1]["t"] + 0.5)
    flown = {entry["text"]: entry for entry in shown["shown"] if entry["type"] == "danmaku.message"}
    assert set(flown) == {"first!", "second!"}, shown
    for text, entry in flown.items():  # shown when the video reached its time (slack: a busy page)
        assert entry["t"] <= entry["at"] <= entry["t"] + 1.0, (text, entry)
    assert shown["frames"] > 30 and shown["width"] == 320, shown


async def replay(base: str, room: str, recording: str, viewer: str, seconds: float) -> dict[str, Any]:
    if CHROMIUM is None or shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("needs Debian's chromium, node and npm")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        command = ["npm", "ci", "--silent", "--no-audit", "--no-fund", "--prefix", str(BROWSER_DIR)]
        if (await asyncio.to_thread(subprocess.run, command, timeout=300, check=False)).returncode != 0:
            pytest.skip("npm could not install playwright-core")
    args = [str(BROWSER_DIR / "replay.mjs"), base, room, recording, viewer, CHROMIUM, str(seconds)]
    child = await asyncio.create_subprocess_exec(
        "node", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=BROWSER_DIR
    )
    stdout, stderr = await asyncio.wait_for(child.communicate(), 120)
    lines = stdout.decode().strip().splitlines()
    assert child.returncode == 0 and lines, (stdout[-2000:], stderr[-2000:])
    result: dict[str, Any] = json.loads(lines[-1])
    assert result["errors"] == [], result
    return result
