"""The servers under test: started pinned to given CPUs, and watched through /proc.

`liveroom` is this repository's server; `node-socketio` and `python-socketio` are the
baselines in `baselines/`, speaking the same commands and sending the same `batch` items,
one message per emit. Each is started with the command rate limits lifted so one
publisher connection can drive the room.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SERVER_KINDS", "ProcessWatch", "SpawnedServer", "liveroom_metrics", "spawn_server"]

SERVER_KINDS = ("liveroom", "node-socketio", "python-socketio")
BASELINES = Path(__file__).parent / "baselines"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class SpawnedServer:
    kind: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn_server(
    kind: str, port: int, secret: str, cpus: Sequence[int], env: dict[str, str], workdir: Path | None = None
) -> SpawnedServer:
    """Start a server; `workdir` (its data, e.g. liveroom's SQLite) to start one again on the same data."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix=f"loadtest-{kind}-"))
    full_env = {**os.environ, "LIVEROOM_JWT_SECRET": secret, "LIVEROOM_LOG_LEVEL": "WARNING", **env}
    if kind == "liveroom":
        command = [sys.executable, "-m", "liveroom", "serve", "--port", str(port)]
        full_env.update(
            {
                "LIVEROOM_STORE_KIND": "memory",
                # One process unless the bench asks for workers (the default: one per core).
                "LIVEROOM_SERVER_WORKERS": "1",
                "LIVEROOM_PLUGINS_BENCH_ENABLED": "true",
                "LIVEROOM_PLUGINS_DANMAKU_RATE_PER_S": "1000000",
                "LIVEROOM_PLUGINS_DANMAKU_BURST": "1000000",
                "LIVEROOM_COMMANDS_PER_S": "1000000",
                "LIVEROOM_COMMANDS_BURST": "1000000",
                **env,
            }
        )
    elif kind == "python-socketio":
        command = [
            sys.executable,
            "-m",
            "liveroom.loadtest.baselines.python_socketio_server",
            "--port",
            str(port),
        ]
    elif kind == "node-socketio":
        ensure_node_modules()
        command = ["node", str(BASELINES / "node_socketio_server.js"), "--port", str(port)]
    else:
        raise ValueError(f"unknown server kind {kind!r}; one of {', '.join(SERVER_KINDS)}")
    log_path = workdir / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, cwd=workdir, env=full_env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_pinned(cpus)
        )
    server = SpawnedServer(kind, f"http://127.0.0.1:{port}", process, log_path)
    _wait_ready(server)
    return server


def ensure_node_modules() -> None:
    """`npm ci` the pinned socket.io v4 into baselines/ once."""
    if (BASELINES / "node_modules" / "socket.io").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed for the node-socketio baseline")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=BASELINES, check=True)


def _pinned(cpus: Sequence[int]) -> Callable[[], None]:
    def prepare() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    return prepare


def _wait_ready(server: SpawnedServer) -> None:
    path = "/readyz" if server.kind == "liveroom" else "/healthz"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.kind} exited: {server.log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(server.url + path, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{server.kind} did not become ready: {server.log_path.read_text(errors='replace')}")


class ProcessWatch:
    """CPU seconds and RSS of a server, read from /proc (Linux); of several processes summed
    (the nodes of a scale-out run), the first one named by `pid`, with their child processes
    (`liveroom serve --workers N`: the supervisor and its workers, looked up at each sample,
    so a restarted worker is counted from its start)."""

    def __init__(self, pid: int, *more: int) -> None:
        self.pid = pid
        self.roots = (pid, *more)

    @property
    def pids(self) -> tuple[int, ...]:
        return (*self.roots, *_children(self.roots))

    def cpu_s(self) -> float:
        return sum((user + system) for user, system in map(_times, self.pids)) / CLOCK_TICKS

    def by_process(self) -> dict[str, float]:
        """CPU seconds of each process, by a label: `pid` or `worker <index>`."""
        return {_label(pid): sum(_times(pid)) / CLOCK_TICKS for pid in self.pids}

    def system_s(self) -> float:
        """The kernel's share of `cpu_s`: for a fan-out server, mostly the writes."""
        return sum(system for _, system in map(_times, self.pids)) / CLOCK_TICKS

    def rss_bytes(self) -> int:
        return sum(map(_rss, self.pids))


def _children(parents: Sequence[int]) -> list[int]:
    found: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid in parents:
            found.append(int(stat.parent.name))
    return found


def _label(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return str(pid)
    if b"liveroom.worker_process" in argv:
        return f"worker {argv[argv.index(b'liveroom.worker_process') + 2].decode()}"
    return str(pid)


def _times(pid: int) -> tuple[int, int]:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0, 0
    return int(fields[11]), int(fields[12])


def _rss(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) * 1024 if match else 0


def liveroom_metrics(url: str) -> dict[str, float]:
    """liveroom's /metrics as {"name{labels}": value}; empty if it is not a liveroom server."""
    try:
        with urllib.request.urlopen(url.replace("ws", "http", 1) + "/metrics", timeout=3) as response:
            text = response.read().decode()
    except (OSError, ValueError):
        return {}
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("liveroom_") and " " in line:
            name, _, value = line.rpartition(" ")
            # `liveroom serve --workers N` labels each worker's figures: summed here, the node's.
            name = _WORKER_LABEL.sub("", name).replace("{,", "{").replace("{}", "")
            values[name] = values.get(name, 0.0) + float(value)
    return values


_WORKER_LABEL = re.compile(r',?worker="\d+"')
