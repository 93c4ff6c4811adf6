"""`liveroom serve --workers N`: one supervisor, N worker processes on one port.

The supervisor holds what must be one per node (`ipc_server.IpcServer` on a Unix socket): the
rooms' bus (`seq`, history, `once` keys), the store (SQLite, this process its one writer),
the rooms' owner leases and the workers' inboxes. Each worker (`worker_process.py`) is a
whole node listening on the same port with SO_REUSEPORT (the kernel spreads new connections
over the workers) and holds its own connections. With Redis configured, the workers are
cluster nodes and the supervisor holds nothing but their readiness and metrics.

A worker that dies is started again (at once, then backing off up to 5 s while it keeps
dying young); its viewers reconnect, land on any worker and resume with `since`. A worker
that exits before the node has ever been up is a start-up failure: everything stops.
SIGTERM or SIGINT: each worker is told to stop and waited for, then the store is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from liveroom.clock import SystemClock
from liveroom.config import Config
from liveroom.ipc_server import IpcServer
from liveroom.memory_broker import MemoryBroker
from liveroom.store import Store

__all__ = ["Supervisor", "check_port"]

log = logging.getLogger("liveroom.supervisor")
YOUNG_S = 5.0  # a worker that dies younger than this is restarted after a growing pause
MAX_PAUSE_S = 5.0


def check_port(host: str, port: int) -> None:
    """Raise the OSError the workers would meet (the port taken by a server without
    SO_REUSEPORT, an address not of this machine) before starting any."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((host, port))


class Supervisor:
    def __init__(self, config: Config, count: int, config_path: str | None) -> None:
        self.config = config
        self.count = count
        self._config_path = config_path or ""
        self._stopping = asyncio.Event()
        self._up = False  # every worker has been ready once
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self.failed: str | None = None

    async def run(self, listening: Callable[[], None]) -> int:
        directory = Path(tempfile.mkdtemp(prefix="lr-workers-"))
        store, broker = _backends(self.config)
        if store is not None:
            await store.start()
        server = IpcServer(broker, store, self.count)
        try:
            await server.start(directory / "ipc.sock")
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stopping.set)
            keepers = [
                asyncio.create_task(self._keep(index, directory / "ipc.sock")) for index in range(self.count)
            ]
            await self._until_up(server)
            if self.failed is None:
                self._up = True
                listening()
                await self._stopping.wait()
            self._stopping.set()
            await self._stop_workers()
            await asyncio.gather(*keepers, return_exceptions=True)
        finally:
            await server.close()
            if store is not None:
                await store.close()
            shutil.rmtree(directory, ignore_errors=True)
        return 1 if self.failed is not None else 0

    async def _until_up(self, server: IpcServer) -> None:
        """Until every worker is ready (or start-up failed, or we are told to stop)."""
        up = asyncio.Event()
        server.on_ready = lambda: up.set() if server.ready >= self.count else None
        waiters = [asyncio.ensure_future(up.wait()), asyncio.ensure_future(self._stopping.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()

    async def _keep(self, index: int, ipc: Path) -> None:
        """Run worker `index`, and start it again whenever it dies, until stopping."""
        loop = asyncio.get_running_loop()
        pause = 0.1
        while not self._stopping.is_set():
            started = loop.time()
            server = self.config.server
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "liveroom.worker_process",
                str(ipc),
                str(index),
                self._config_path,
                server.host,
                str(server.port),
            )
            self._processes[index] = process
            code = await process.wait()
            if self._stopping.is_set():
                return
            if not self._up:
                self.failed = f"worker {index} exited with {code} while starting"
                self._stopping.set()
                return
            lived = loop.time() - started
            pause = 0.1 if lived > YOUNG_S else min(MAX_PAUSE_S, pause * 2)
            log.warning("worker %d exited with %s after %.1f s: starting it again", index, code, lived)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)

    async def _stop_workers(self) -> None:
        running = [p for p in self._processes.values() if p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        grace = self.config.server.shutdown_grace_s + 10.0
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), grace)
        except TimeoutError:
            for process in running:
                if process.returncode is None:
                    log.warning("worker pid %d did not stop in %.0f s: killed", process.pid, grace)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            await asyncio.gather(*(p.wait() for p in running))


def _backends(config: Config) -> tuple[Store | None, MemoryBroker | None]:
    """The supervisor's store and bus: none of its own when the workers are a Redis cluster."""
    if config.broker.kind == "redis":
        return None, None
    from liveroom.node import build_store

    room = config.room
    return build_store(config), MemoryBroker(SystemClock(), room.history_count, room.history_age_s)
