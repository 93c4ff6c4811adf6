"""The liveroom node of a scenario bench (flash sale, auction, lucky bag) and its viewers.

A bench node runs on a durable store (`embedded`: SQLite in its own folder; `redis`: a
redis-server with AOF, also the broker) under a fresh signing secret; the bench holds the
authority that mints viewers' tokens and a host token for the HTTP API. The node can be
killed and started again on the same data and port, to check what a crash kept.
"""

from __future__ import annotations

import asyncio
import gc
import secrets
import signal
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from liveroom.auth import TokenAuthority

from .run import _free_port
from .scaleout_bench import redis_server
from .servers import SpawnedServer, spawn_server
from .sioclient import SocketIOClient, connect_client
from .stats import Snapshot

__all__ = ["BenchNode", "bench_node", "joined_viewers", "store_env"]

CONNECT_WAVE = 500  # viewers connecting at once


@contextmanager
def store_env(kind: str) -> Iterator[dict[str, str]]:
    """The node's environment for a durable store of `kind` (a redis-server for as long as it is open)."""
    base = {"LIVEROOM_STORE_KIND": "embedded", "LIVEROOM_LOG_LEVEL": "ERROR"}
    if kind != "redis":
        yield base
        return
    with redis_server(appendonly=True) as url:
        yield {
            **base,
            "LIVEROOM_STORE_KIND": "redis",
            "LIVEROOM_BROKER_KIND": "redis",
            "LIVEROOM_REDIS_URL": url,
        }


class BenchNode:
    """A liveroom node on `cpus` with its own secret, port and data folder."""

    def __init__(self, cpus: Sequence[int], env: Mapping[str, str]) -> None:
        self.secret = secrets.token_urlsafe(32)
        self.authority = TokenAuthority(self.secret)
        self.host = self.authority.mint("host", "Host", "host", ttl_s=3600)
        self._cpus, self._env, self._port = tuple(cpus), dict(env), _free_port()
        self._workdir = Path(tempfile.mkdtemp(prefix="loadtest-liveroom-"))
        self.server = self._spawn()

    @property
    def url(self) -> str:
        return self.server.url

    def kill_and_restart(self) -> None:
        """SIGKILL (no clean shutdown), then the node again on the same data and port."""
        self.server.process.send_signal(signal.SIGKILL)
        self.server.process.wait(10)
        self.server = self._spawn()

    def stop(self) -> None:
        self.server.stop()

    def _spawn(self) -> SpawnedServer:
        return spawn_server("liveroom", self._port, self.secret, self._cpus, self._env, workdir=self._workdir)


@contextmanager
def bench_node(store: str, env: Mapping[str, str], cpus: Sequence[int] = (0,)) -> Iterator[BenchNode]:
    """A node on a durable store of kind `store`, with `env` on top; stopped on leaving."""
    with store_env(store) as base:
        node = BenchNode(cpus, {**base, **env})
        try:
            yield node
        finally:
            node.stop()


async def joined_viewers(
    url: str, authority: TokenAuthority, room: str, count: int, ttl_s: int
) -> list[SocketIOClient]:
    """`count` viewers `b0`, `b1`, ... connected, `CONNECT_WAVE` at a time, then in `room`."""
    stats, clients = Snapshot(), list[SocketIOClient]()
    for start in range(0, count, CONNECT_WAVE):
        tokens = [
            authority.mint(f"b{n}", f"b{n}", "viewer", ttl_s=ttl_s)
            for n in range(start, min(count, start + CONNECT_WAVE))
        ]
        clients += await asyncio.gather(*(connect_client(url, stats, token) for token in tokens))
    await asyncio.gather(*(client.call("join", {"room": room}) for client in clients))
    settle_collector()
    return clients


def settle_collector() -> None:
    """The load generator is the measuring instrument: with its thousands of clients made,
    its collector's full passes took 13-93 ms each, longer as the clients' received items
    piled up (gc callbacks, auction bench, 5,000 bidders: seven passes in the 10 s window,
    none of which freed anything), and every ack in flight meanwhile was counted that much
    slower, as if the server had been. A bench process lives for one measurement: collect
    once, freeze what is there, and collect no more (reference counting still frees)."""
    gc.collect()
    gc.freeze()
    gc.disable()
