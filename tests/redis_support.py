"""A real redis-server per test (or module), on a free port, in a temp directory."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from liveroom.loadtest.redis_process import REDIS_SERVER, RedisServer

__all__ = ["RedisCluster", "RedisServer", "redis_for"]


class RedisCluster:
    """Masters (and `replicas` replicas of each) made with `redis-cli --cluster create`, each
    on a free port. `node_timeout_ms` is how long a silent master takes to be failed over."""

    def __init__(
        self, directory: Path, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 15000
    ) -> None:
        self.directory = directory
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.ports = [_cluster_port() for _ in range(masters * (1 + replicas))]
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> RedisCluster:
        assert REDIS_SERVER is not None and shutil.which("redis-cli") is not None
        for port in self.ports:
            node_dir = self.directory / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            self.processes.append(
                subprocess.Popen(
                    [
                        REDIS_SERVER,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        str(self.node_timeout_ms),
                        "--dir",
                        str(node_dir),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.ports:
            self._wait(port, b"PING\r\n", b"+PONG")
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        for port in self.ports:
            self._wait(port, b"CLUSTER INFO\r\n", b"cluster_state:ok", contains=True)
        return self

    @staticmethod
    def _wait(port: int, command: bytes, expect: bytes, contains: bool = False) -> None:
        import socket

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(command)
                    reply = sock.recv(4096)
                    if (expect in reply) if contains else reply.startswith(expect):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"redis cluster node {port} not ready")

    def process_on(self, port: int) -> subprocess.Popen[bytes]:
        return self.processes[self.ports.index(port)]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                process.wait(10)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too.

    Both below the kernel's ephemeral range (32768-60999 here): a port picked inside it was
    once taken by some client socket between this check and redis-server's bind, and that
    node never started. Each xdist worker picks from a range of its own."""
    import os
    import random
    import socket

    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    share = 2700 // workers  # ports 20000-22699, bus ports 30000-32699
    low = 20000 + (worker % workers) * share
    while True:
        port = random.randint(low, low + share - 1)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


def redis_for(request: Any, tmp_path: Path) -> tuple[Any, str]:
    """A client for the `redis` / `redis-cluster` parameter of a conformance fixture, and a
    key prefix of the test's own (tests share one server)."""
    from liveroom.redis_client import connect_redis

    cluster = request.param == "redis-cluster"
    server = request.getfixturevalue("redis_cluster" if cluster else "redis_server")
    return connect_redis(server.url, cluster), "t" + tmp_path.name.replace("_", "")[-12:]
