"""Engine.IO sessions across workers: a request for another worker's session goes to it.

With `SO_REUSEPORT` the kernel picks a worker for each new TCP connection, but an Engine.IO
session lives in the worker that opened it: a long-polling client's next request (or its
upgrade to a WebSocket) often comes on a new connection, which lands on another worker.
So each worker names its sessions `w<index>.<random>`; a worker that reads a request head
for `/socket.io*` with another worker's `sid` passes the connection itself (its file
descriptor, `SCM_RIGHTS`) with the bytes read so far to that worker's handoff socket (a Unix
datagram socket), and forgets it. The receiver adopts the connection and reads the head
again as if it had accepted it. If the handoff cannot be made (that worker is being
restarted, the bytes do not fit a datagram), the request is served where it landed, which
answers it as an unknown session, as it would on one process after a restart.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import cast
from urllib.parse import parse_qs

from liveroom.digits import is_digits
from liveroom.websocket import RequestHead

__all__ = ["Handoff", "new_session_id", "owner_of", "set_session_prefix"]

log = logging.getLogger(__name__)
MAX_DATAGRAM = 200_000  # what rides with the descriptor: a request head and what followed it
_prefix = [""]


def set_session_prefix(index: int | None) -> None:
    """This process is worker `index`: its Engine.IO sessions carry its index (None: plain ids)."""
    _prefix[0] = "" if index is None else f"w{index}."


def new_session_id() -> str:
    return _prefix[0] + secrets.token_urlsafe(15)


def owner_of(sid: str) -> int | None:
    """The worker a session id names, or None (not a worker's)."""
    if not sid.startswith("w"):
        return None
    index, dot, _ = sid[1:].partition(".")
    return int(index) if dot and is_digits(index) else None


def handoff_path(directory: Path | str, index: int) -> Path:
    return Path(directory) / f"handoff-{index}.sock"


class Handoff:
    """One worker's end: it passes connections to the others, and adopts theirs."""

    def __init__(self, directory: Path | str, index: int) -> None:
        self._directory = directory
        self.index = index
        self._out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._out.setblocking(False)
        self._in: socket.socket | None = None
        self.passed = 0
        self.adopted = 0

    def route(self, head: RequestHead, data: bytes, transport: asyncio.BaseTransport) -> bool:
        """Pass the connection on if `head` names another worker's session; True if passed."""
        sid = parse_qs(head.query).get("sid")
        owner = None if not sid else owner_of(sid[0])
        if owner is None or owner == self.index or len(data) > MAX_DATAGRAM:
            return False
        raw = transport.get_extra_info("socket")
        if raw is None:
            return False
        fd = os.dup(raw.fileno())
        try:
            fds = array.array("i", [fd])
            self._out.sendmsg(
                [data],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)],
                0,
                str(handoff_path(self._directory, owner)),
            )
        except OSError as exc:  # restarting, or its queue is full: served here (unknown session)
            log.debug("handoff to worker %d failed: %s", owner, exc)
            return False
        finally:
            os.close(fd)
        self.passed += 1
        cast(asyncio.Transport, transport).abort()  # forgotten here, no FIN: the other worker has it
        return True

    def listen(self, adopt: Callable[[socket.socket, bytes], None]) -> None:
        """Adopt connections other workers pass here: `adopt(socket, bytes already read)`."""
        path = handoff_path(self._directory, self.index)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._in = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._in.bind(str(path))
        self._in.setblocking(False)
        asyncio.get_running_loop().add_reader(self._in.fileno(), self._receive, adopt)

    def _receive(self, adopt: Callable[[socket.socket, bytes], None]) -> None:
        assert self._in is not None
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self._in, MAX_DATAGRAM, 1)
            except BlockingIOError:
                return
            if not fds:
                continue
            self.adopted += 1
            adopt(socket.socket(fileno=fds[0]), data)

    def close(self) -> None:
        if self._in is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._in.fileno())
            self._in.close()
        self._out.close()
