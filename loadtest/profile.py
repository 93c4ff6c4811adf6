"""Sampling the server with py-spy during the measured part, and summing up where time goes.

py-spy (if installed) records raw stacks of the server process without pausing it; the
summary lists functions by the share of samples they were on the stack (inclusive) and
at the top of it (self), which is what docs/benchmarks.md quotes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["start_profile", "summarize_profile"]


def start_profile(
    pid: int, seconds: float, output: Path, subprocesses: bool = False
) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        sys.stderr.write("\nprofile: py-spy is not installed (pip install py-spy)\n")
        return None
    command = [py_spy, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "200"]
    command += ["--nonblocking", "--format", "raw", "-o", str(output)]
    if subprocesses:  # e.g. the media workers: each stack then starts with its process
        command.append("--subprocesses")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """{"samples", "self": [[share, function], ...], "inclusive": [...]} from py-spy raw output."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_short(frame) for frame in stack.split(";")]
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    if not total:
        return {}
    return {
        "samples": total,
        "self": [[round(n / total, 4), name] for name, n in own.most_common(top)],
        "inclusive": [[round(n / total, 4), name] for name, n in inclusive.most_common(top)],
    }


def _short(frame: str) -> str:
    """`deliver (liveroom/connection.py:91)` -> `deliver (connection.py)`."""
    name, _, where = frame.partition(" (")
    source = where.split(":")[0].rsplit("/", 1)[-1].rstrip(")")
    return f"{name} ({source})" if source else name
