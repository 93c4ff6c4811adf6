"""Test helpers: a real liveroom server in a subprocess, and real Socket.IO viewers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from liveroom.auth import Role, TokenAuthority

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
AUTHORITY = TokenAuthority(SECRET)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def token(
    user: str,
    role: Role = "viewer",
    room: str | None = None,
    ttl: float = 600,
    name: str | None = None,
    tier: str | None = None,
) -> str:
    return AUTHORITY.mint(user, name or user.title(), role, room, ttl, tier)


class ServerProcess:
    """`liveroom serve` as a real process, on a free port, with its own data directory.

    With the media plane (WHIP/WHEP, RTMP, HLS) only when `media` is true (or `env` says
    `LIVEROOM_MEDIA_ENABLED`): tests/conftest.py sets it for the files that use it. A node
    without it imports no aiortc or av: its start-up takes 0.49 s of CPU rather than 0.65."""

    media = True

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "LIVEROOM_JWT_SECRET": SECRET,
            "LIVEROOM_SQLITE_PATH": str(data_dir / "liveroom.db"),
            "LIVEROOM_SHUTDOWN_GRACE_S": "3",
            "LIVEROOM_LOG_LEVEL": "WARNING",
            "LIVEROOM_CHECK_MEMBERS": "1",  # the debug invariant: every member live at every flush
            # RTMP ingest on a port of its own (not 1935): servers of a run side by side
            "LIVEROOM_MEDIA_RTMP_PORT": str(free_port()),
            "LIVEROOM_MEDIA_ENABLED": str(self.media).lower(),
            # One process, whatever the machine's cores (`[server] workers` defaults to their
            # count): a test that wants workers says so in `env`. LIVEROOM_TEST_SERVER_WORKERS
            # runs every test server with that many workers (docs/testing.md).
            "LIVEROOM_SERVER_WORKERS": os.environ.get("LIVEROOM_TEST_SERVER_WORKERS", "1"),
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"server-{self.port}.log"

    def start(self) -> ServerProcess:
        return self.launch().wait_ready()

    def launch(self) -> ServerProcess:
        """Start the process without waiting (several nodes boot side by side)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "liveroom", "serve", "--port", str(self.port)],
                env=self.env,
                cwd=self.data_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self) -> ServerProcess:
        assert self.process is not None
        # About 1 s on a quiet machine; a loaded one (two xdist workers, a CPU hog, other jobs)
        # can take many times that. A bound only for a server that never comes up.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not become ready: {self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 45) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def module_server(name: str, env: dict[str, str] | None = None) -> Any:
    """A pytest fixture `name`: one `liveroom serve` per test module, with `env` on top of
    the defaults (the data directory is named after the fixture)."""

    @pytest.fixture(scope="module", name=name)
    def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
        process = ServerProcess(tmp_path_factory.mktemp(name), env=env).start()
        yield process
        process.stop()

    return server


class Viewer:
    """A python-socketio AsyncClient that keeps every batch item it receives."""

    def __init__(
        self,
        url: str,
        user: str,
        role: Role = "viewer",
        room: str | None = None,
        tier: str | None = None,
        **client: Any,
    ) -> None:
        self.url = url
        self.user = user
        self.token = token(user, role, room, tier=tier)
        self.client = socketio.AsyncClient(**client)
        self.items: list[dict[str, Any]] = []
        self.batches: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self.client.on("batch", self._on_batch)

    def _on_batch(self, batch: dict[str, Any]) -> None:
        self.batches.append(batch)
        self.items.extend(batch["items"])
        self._changed.set()

    async def connect(self, transports: list[str] | None = None) -> Viewer:
        await self.client.connect(
            self.url, auth={"token": self.token}, transports=transports or ["websocket"], wait_timeout=10
        )
        return self

    async def call(self, event: str, *args: Any, timeout: float = 10) -> Any:
        return (
            await self.client.call(event, *args, timeout=timeout)
            if args
            else await self.client.call(event, timeout=timeout)
        )

    async def join(self, room: str, since: int | None = None, **extra: Any) -> dict[str, Any]:
        """Join as a client does: a join answered `unavailable` with `retry: "later"` (on a
        cluster, the room's owner slow to answer on a loaded machine, or its lease moving) is
        tried again, for up to 30 s; any other failure fails the test at once."""
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            ack = await self.call("join", {"room": room, "since": since, **extra})
            error = ack.get("error") or {}
            later = error.get("code") == "unavailable" and error.get("retry") == "later"
            if ack["ok"] or not later or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        assert ack["ok"], ack
        return ack  # type: ignore[no-any-return]

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 10
    ) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = [item for item in self.items if predicate(item)]
            if len(found) >= count:
                return found
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.user}: wanted {count} matching items, have {found}; all: {self.items}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def of_type(self, item_type: str) -> list[dict[str, Any]]:
        return [item for item in self.items if item["type"] == item_type]

    async def close(self) -> None:
        # shutdown(), not disconnect(): a client whose server died is reconnecting, and its
        # attempts would go on after the test (each a new HTTP session, left to the garbage
        # collector: an unclosed-session warning, an error in whichever test then runs).
        await self.client.shutdown()
        # A client whose server went away is disconnected but keeps its HTTP session open.
        http = getattr(self.client.eio, "http", None)
        if http is not None and not http.closed:
            await http.close()
