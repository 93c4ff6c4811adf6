"""An in-process supervisor end (`IpcServer`) and worker channels over a real Unix socket."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from liveroom.ipc_client import IpcChannel
from liveroom.ipc_server import IpcServer
from liveroom.memory_broker import MemoryBroker
from liveroom.store import Store

__all__ = ["ipc_pair"]


@contextlib.asynccontextmanager
async def ipc_pair(
    broker: MemoryBroker | None, store: Store | None, workers: int = 1
) -> AsyncIterator[tuple[IpcServer, list[IpcChannel]]]:
    """A server over `broker` and `store`, and `workers` connected channels. (A short socket
    path of its own: a Unix socket path has at most 107 bytes.)"""
    directory = Path(tempfile.mkdtemp(prefix="lr-ipc-"))
    server = IpcServer(broker, store, workers)
    await server.start(directory / "ipc.sock")
    channels = [IpcChannel(directory / "ipc.sock", index) for index in range(workers)]
    try:
        for channel in channels:
            await channel.connect()
        yield server, channels
    finally:
        for channel in channels:
            channel.close()
        await server.close()
        shutil.rmtree(directory, ignore_errors=True)
