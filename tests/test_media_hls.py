"""HLS for the crowd: an aiortc H.264 publisher -> a real server process -> HLS files,
read over HTTP and played by ffprobe (skipped when ffprobe is not installed)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from media_support import publish, wait_until
from support import ServerProcess, token

pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe is not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"LIVEROOM_MEDIA_HLS_SEGMENT_S": "1.0", "LIVEROOM_MEDIA_WORKERS": "2"}
    process = ServerProcess(tmp_path_factory.mktemp("hls"), env=env).start()
    yield process
    process.stop()


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def segments(playlist: bytes) -> list[tuple[str, float]]:
    text = playlist.decode()
    durations = [float(d) for d in re.findall(r"#EXTINF:([0-9.]+)", text)]
    names = [line for line in text.splitlines() if line.endswith(".ts")]
    return list(zip(names, durations, strict=True))


def ffprobe(url: str, *args: str) -> tuple[dict[str, object], str]:
    command = ["ffprobe", "-v", "error", "-of", "json", *args, url]
    done = subprocess.run(command, capture_output=True, timeout=30, check=False)
    return json.loads(done.stdout or b"{}"), done.stderr.decode()


async def test_the_host_program_is_served_as_live_hls(server: ServerProcess) -> None:
    room = f"hls-{uuid.uuid4().hex[:8]}"
    base = f"{server.url}/hls/{room}"
    publisher = await publish(server.url, room, token("host-hls", "host"), "video/H264")
    try:
        await wait_until(lambda: get(f"{base}/master.m3u8")[0] == 200, 15, "the master playlist")
        status, headers, master = get(f"{base}/master.m3u8")
        assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
        assert headers["Cache-Control"] == "public, max-age=1"
        assert b"RESOLUTION=320x240" in master and b"stream.m3u8" in master
        await wait_until(lambda: len(segments(get(f"{base}/stream.m3u8")[2])) >= 2, 20, "two segments")
        listed = segments(get(f"{base}/stream.m3u8")[2])
        assert all(0.5 <= duration <= 2.5 for _, duration in listed), listed

        info, errors = ffprobe(f"{base}/master.m3u8", "-show_streams")
        streams = info["streams"]
        assert isinstance(streams, list) and streams[0]["codec_name"] == "h264", (info, errors)
        first = listed[-1][0]
        status, headers, _ = get(f"{base}/{first}")
        assert status == 200 and headers["Cache-Control"] == "public, max-age=86400, immutable"
        count = ("-count_frames", "-show_entries", "stream=nb_read_frames")
        decoded, errors = ffprobe(f"{base}/{first}", *count)
        frames = decoded["streams"][0]["nb_read_frames"]  # type: ignore[index]
        assert int(frames) >= 10 and errors == "", (decoded, errors)

        await asyncio.sleep(2.5)  # the live stream goes on: newer segments, older ones gone
        later = segments(get(f"{base}/stream.m3u8")[2])
        assert later[-1][0] != first and int(later[-1][0].split("-")[1][:-3]) > int(first.split("-")[1][:-3])
        assert len(later) <= 6
    finally:
        await publisher.end()
    await wait_until(lambda: get(f"{base}/master.m3u8")[0] == 404, 10, "the files removed at the end")
    assert not (Path(server.data_dir) / "hls" / room).exists()


async def test_hls_names_outside_the_room_directory_are_refused(server: ServerProcess) -> None:
    for path in ("/hls/../config.toml", "/hls/x/..%2Fsecret.ts", "/hls/../stream.m3u8", "/hls/r/a.txt"):
        assert get(server.url + path)[0] == 404, path
