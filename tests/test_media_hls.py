"""HLS for the crowd: an aiortc host publishing two H.264 renditions and Opus audio -> a real
server process -> HLS files (one variant per rendition, one AAC audio rendition made once),
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
from pathlib import Path
from typing import Any

import pytest
from aiortc import AudioStreamTrack, RTCConfiguration, RTCPeerConnection
from media_support import CounterTrack, Peer, _exchange, codec_preferences, wait_until
from support import ServerProcess, module_server, token

pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe is not installed")


server = module_server("server", {"LIVEROOM_MEDIA_HLS_SEGMENT_S": "1.0", "LIVEROOM_MEDIA_WORKERS": "2"})


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


def ffprobe(url: str, *args: str) -> tuple[dict[str, Any], str]:
    command = ["ffprobe", "-v", "error", "-of", "json", *args, url]
    done = subprocess.run(command, capture_output=True, timeout=30, check=False)
    return json.loads(done.stdout or b"{}"), done.stderr.decode()


async def publish_renditions(base: str, room: str) -> Peer:
    """Two H.264 renditions (the ladder's 720p and 480p rungs, small pictures here) and audio."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for track in (CounterTrack(), CounterTrack()):
        pc.addTransceiver(track, "sendonly").setCodecPreferences(codec_preferences("video", "video/H264"))
    pc.addTransceiver(AudioStreamTrack(), "sendonly")
    location = await _exchange(pc, f"{base}/whip/{room}", token("host-hls", "host"))
    return Peer(pc, location, base, token("host-hls", "host"))


async def test_the_host_program_is_served_as_live_hls(server: ServerProcess) -> None:
    room = f"hls-{uuid.uuid4().hex[:8]}"
    base = f"{server.url}/hls/{room}"
    publisher = await publish_renditions(server.url, room)
    try:
        await wait_until(lambda: get(f"{base}/master.m3u8")[0] == 200, 15, "the master playlist")
        status, headers, master = get(f"{base}/master.m3u8")
        assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
        assert headers["Cache-Control"] == "public, max-age=1"
        await wait_until(lambda: b"480p.m3u8" in get(f"{base}/master.m3u8")[2], 10, "both variants listed")
        master = get(f"{base}/master.m3u8")[2]
        assert master.index(b"BANDWIDTH=2500000,RESOLUTION=320x240") < master.index(b"720p.m3u8")
        assert master.index(b"BANDWIDTH=1200000,RESOLUTION=320x240") < master.index(b"480p.m3u8")
        await wait_until(lambda: len(segments(get(f"{base}/720p.m3u8")[2])) >= 2, 20, "two segments")
        listed = segments(get(f"{base}/720p.m3u8")[2])
        assert all(0.5 <= duration <= 2.5 for _, duration in listed), listed

        info, errors = ffprobe(f"{base}/master.m3u8", "-show_streams")
        streams = info["streams"]
        assert isinstance(streams, list), info
        assert sorted(s["codec_name"] for s in streams) == ["aac", "h264", "h264"], info  # Opus -> AAC once
        assert segments(get(f"{base}/480p.m3u8")[2]), "the 480p variant has segments too"
        master = get(f"{base}/master.m3u8")[2]
        assert b'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac"' in master and b'URI="audio.m3u8"' in master
        assert master.count(b'mp4a.40.2",AUDIO="aac"') == 2  # both variants play the one audio rendition
        sound = segments(get(f"{base}/audio.m3u8")[2])
        assert sound and all(0.5 <= duration <= 2.5 for _, duration in sound), sound
        heard, errors = ffprobe(
            f"{base}/{sound[-1][0]}", "-count_frames", "-show_entries", "stream=codec_name,nb_read_frames"
        )
        assert (
            heard["streams"][0]["codec_name"] == "aac" and int(heard["streams"][0]["nb_read_frames"]) >= 20
        ), heard
        assert errors == "", errors
        first = listed[-1][0]
        status, headers, _ = get(f"{base}/{first}")
        assert status == 200 and headers["Cache-Control"] == "public, max-age=86400, immutable"
        count = ("-count_frames", "-show_entries", "stream=nb_read_frames")
        decoded, errors = ffprobe(f"{base}/{first}", *count)
        frames = decoded["streams"][0]["nb_read_frames"]
        assert int(frames) >= 10 and errors == "", (decoded, errors)

        await asyncio.sleep(2.5)  # the live stream goes on: newer segments, older ones gone
        later = segments(get(f"{base}/720p.m3u8")[2])
        assert later[-1][0] != first and int(later[-1][0].split("-")[2][:-3]) > int(first.split("-")[2][:-3])
        assert len(later) <= 6
    finally:
        await publisher.end()
    # rmtree takes the playlist before the directory: with a CPU hog on one core the
    # directory was still there when the playlist answered 404.
    directory = Path(server.data_dir) / "hls" / room
    await wait_until(
        lambda: get(f"{base}/master.m3u8")[0] == 404 and not directory.exists(), 30, "the files removed"
    )


async def test_hls_names_outside_the_room_directory_are_refused(server: ServerProcess) -> None:
    for path in ("/hls/../config.toml", "/hls/x/..%2Fsecret.ts", "/hls/../stream.m3u8", "/hls/r/a.txt"):
        assert get(server.url + path)[0] == 404, path
