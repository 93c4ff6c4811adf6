"""Debian's ffmpeg as a real RTMP encoder (and receiver) for the RTMP tests.

The picture is the frame counter `media_support.read_counter` reads back: 16 vertical
bars, white for a 1 bit of the frame number, drawn by ffmpeg's `geq` filter; the sound a
440 Hz sine, encoded to AAC. H.264 baseline (no B-frames), a keyframe every `gop` frames.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

FFMPEG = shutil.which("ffmpeg")


def bars(start: int = 0) -> str:
    """The geq filter drawing the frame number (plus `start`) as 16 bars."""
    return f"geq=lum='if(mod(floor((N+{start})/pow(2\\,15-floor(X/20)))\\,2)\\,235\\,16)':cb=128:cr=128"


def counter_source(size: str = "320x240", fps: int = 30, start: int = 0) -> list[str]:
    """ffmpeg input arguments: the counter picture (from `start`) and a sine, in real time."""
    video = (
        f"color=black:s={size}:r={fps},{bars(start)}" if size == "320x240" else f"testsrc2=s={size}:r={fps}"
    )
    return ["-re", "-f", "lavfi", "-i", video, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]


def publish(
    url: str, seconds: float, size: str = "320x240", gop: int = 30, log: Path | None = None, start: int = 0
) -> subprocess.Popen[bytes]:
    """An ffmpeg process publishing `seconds` of the counter to `url` (rtmp://...)."""
    assert FFMPEG is not None
    command = [
        FFMPEG, "-hide_banner", "-loglevel", "warning", "-nostdin",
        *counter_source(size, start=start), "-t", str(seconds),
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline",
        "-g", str(gop), "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k",
        "-f", "flv", url,
    ]  # fmt: skip
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    return subprocess.Popen(command, stdout=out, stderr=out if log is not None else subprocess.PIPE)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(10)
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()
