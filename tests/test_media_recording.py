"""Recording the host program on request: an aiortc host (H.264) -> a real server process (a
media worker writes the file, the node keeps the durable record) -> the host's API starts
a recording, ffprobe reads the fragmented MP4 (H.264, and the host's Opus as AAC) while it
grows, the host stops it, and the list shows it with its final size. Skipped when ffprobe
is not installed."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from media_support import publish, wait_until
from support import ServerProcess, module_server, token

pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe is not installed")


server = module_server(
    "server", {"LIVEROOM_MEDIA_WORKERS": "2", "LIVEROOM_MEDIA_RECORDING_FRAGMENT_S": "0.5"}
)


async def call(method: str, url: str, bearer: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {bearer}"}
    async with aiohttp.ClientSession() as http, http.request(method, url, headers=headers) as response:
        return response.status, await response.json()


def probe(path: Path) -> tuple[float, int, str]:
    """(duration, video frames, codecs) as ffprobe reads the file now."""
    command = ["ffprobe", "-v", "error", "-count_frames", "-of", "json"]
    command += ["-show_entries", "format=duration:stream=codec_name,nb_read_frames", str(path)]
    info = json.loads(subprocess.run(command, capture_output=True, timeout=20, check=False).stdout or b"{}")
    streams = info.get("streams") or [{}]
    duration = float(info.get("format", {}).get("duration") or 0)
    codecs = "+".join(sorted(str(s.get("codec_name")) for s in streams))
    video: dict[str, Any] = next((s for s in streams if s.get("codec_name") == "h264"), {})
    return duration, int(video.get("nb_read_frames") or 0), codecs


async def test_the_host_records_the_program_to_fragmented_mp4(server: ServerProcess) -> None:
    room = f"rec-{uuid.uuid4().hex[:8]}"
    host, api = token("host-rec", "host"), f"{server.url}/api/rooms/{room}/recordings"
    assert (await call("POST", api, host))[0] == 404  # nobody publishes yet
    publisher = await publish(server.url, room, host, "video/H264")
    try:
        assert (await call("POST", api, token("viewer-rec")))[0] == 403
        status, body = await call("POST", api, host)
        assert status == 201, body
        recording = body["recording"]
        assert recording["by"]["id"] == "host-rec" and recording["recording"]
        assert (await call("POST", api, host))[1]["error"]["code"] == "already_recording"
        path = Path(server.data_dir) / "recordings" / recording["file"]
        await wait_until(lambda: probe(path)[0] >= 1.0, 10, "a second in the file")
        first, frames, codec = probe(path)
        assert codec == "aac+h264" and frames >= 20, (first, frames, codec)  # the host's Opus as AAC
        await asyncio.sleep(1.5)
        later, more, _ = probe(path)
        assert later > first and more > frames  # it grows while recording
        status, body = await call("POST", f"{api}/{recording['id']}/stop", host)
        assert status == 200 and not body["recording"]["recording"] and body["recording"]["bytes"] > 0
        assert (await call("POST", f"{api}/{recording['id']}/stop", host))[0] == 404
    finally:
        await publisher.end()
    status, body = await call("GET", api, host)
    assert status == 200 and [r["id"] for r in body["recordings"]] == [recording["id"]]
    listed = body["recordings"][0]
    assert listed["duration_s"] >= later - 0.5 and not listed["recording"] and listed["stopped_by"]["id"]
    assert probe(path)[0] >= later  # complete on disk after the stop
