"""A constrained link for media tests and benchmarks: a network namespace joined to this one by a
veth pair, its downlink shaped by `tc` (token bucket filter). Needs root (CAP_NET_ADMIN).

    with ShapedLink("abr1") as link:        # namespace lr-abr1, 10.203.<n>.1 here, .2 inside
        viewer = link.spawn([python, "-m", "..."])
        link.limit(600)                     # kbit/s from this side to the namespace
        link.lift()

Only traffic *to* the namespace is shaped (a viewer's downlink); its RTCP goes back freely.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zlib
from types import TracebackType

__all__ = ["ShapedLink", "can_shape"]


def can_shape() -> str | None:
    """None if this process can make namespaces and shape links, else why not."""
    if os.geteuid() != 0:
        return "needs root (ip netns, tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (iproute2)"
    return None


class ShapedLink:
    def __init__(self, name: str) -> None:
        number = zlib.crc32(f"{name}-{os.getpid()}".encode()) % 250 + 1
        self.namespace = f"lr-{name}-{os.getpid()}"
        self.outside = f"lrh{number}"  # interface names are at most 15 characters
        self.inside = f"lrn{number}"
        self.host_ip = f"10.203.{number}.1"
        self.viewer_ip = f"10.203.{number}.2"

    def __enter__(self) -> ShapedLink:
        self.up()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.down()

    def up(self) -> None:
        self.down()  # leftovers of a killed run
        _ip("netns", "add", self.namespace)
        _ip("link", "add", self.outside, "type", "veth", "peer", "name", self.inside)
        _ip("link", "set", self.inside, "netns", self.namespace)
        _ip("addr", "add", f"{self.host_ip}/24", "dev", self.outside)
        _ip("link", "set", self.outside, "up")
        inside = ("netns", "exec", self.namespace, "ip")
        _ip(*inside, "addr", "add", f"{self.viewer_ip}/24", "dev", self.inside)
        _ip(*inside, "link", "set", self.inside, "up")
        _ip(*inside, "link", "set", "lo", "up")

    def limit(self, kbit_s: int, latency_ms: int = 100) -> None:
        """Shape the downlink: `kbit_s`, a queue of about `latency_ms`, drops past it."""
        burst = max(4000, kbit_s * 1000 // 8 // 50)  # bytes: about 20 ms at the rate
        command = ("tc", "qdisc", "replace", "dev", self.outside, "root", "tbf", "rate", f"{kbit_s}kbit")
        _run(*command, "burst", str(burst), "latency", f"{latency_ms}ms")

    def lift(self) -> None:
        subprocess.run(("tc", "qdisc", "del", "dev", self.outside, "root"), capture_output=True, check=False)

    def spawn(self, command: list[str]) -> subprocess.Popen[bytes]:
        """A process inside the namespace (it reaches this side at `host_ip`); stdout piped."""
        return subprocess.Popen(["ip", "netns", "exec", self.namespace, *command], stdout=subprocess.PIPE)

    def down(self) -> None:
        subprocess.run(("ip", "link", "del", self.outside), capture_output=True, check=False)
        subprocess.run(("ip", "netns", "del", self.namespace), capture_output=True, check=False)


def _ip(*args: str) -> None:
    _run("ip", *args)


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.decode().strip()}")
