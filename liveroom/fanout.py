"""Writing a room's frame to its members, a slice at a time.

One write costs 20-30 µs of kernel time on loopback here (the receiver's TCP work is
billed to the sender), so writing one flush to 5,000 members held the event loop for
100-150 ms, and to 20,000 members for half a second: every ack, every command and every
other room waited behind it. A flush to more than `slice_size` members is written that
many at a time, and the event loop reads sockets and runs other work between slices.

Each member still gets a room's frames in order: a room has at most one flush being
written, and the hub does not flush that room again until it is done (its new items wait
in `pending`, so the next flush carries more of them, as a longer tick would).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable

from liveroom.connection import Connection
from liveroom.metrics import Metrics
from liveroom.room import LocalRoom

__all__ = ["FanoutWriter"]


class _Flush:
    __slots__ = ("count", "frame", "members", "message", "position", "room")

    def __init__(self, room: LocalRoom, frame: bytes, message: bytes, members: list[Connection], count: int):
        self.room = room
        self.frame = frame
        self.message = message
        self.members = members
        self.position = 0
        self.count = count  # items in the frame


class FanoutWriter:
    def __init__(
        self,
        slice_size: int,
        metrics: Metrics,
        on_slow: Callable[[Connection], None],
        on_done: Callable[[LocalRoom], None],
    ) -> None:
        self.slice_size = max(1, slice_size)
        self._metrics = metrics
        self._on_slow = on_slow
        self._on_done = on_done
        self._queue: deque[_Flush] = deque()
        self._rooms: set[LocalRoom] = set()
        self._scheduled: asyncio.Handle | None = None

    def busy(self, room: LocalRoom) -> bool:
        """Whether a flush of `room` is still being written."""
        return room in self._rooms

    def send(
        self,
        room: LocalRoom,
        frame: bytes,
        message: bytes,
        members: Iterable[Connection],
        count: int,
        slow: list[Connection],
    ) -> int:
        """Write the frame to the members: the first slice now, the rest later.

        Returns the items delivered now; those of later slices are counted as written.
        """
        if not isinstance(members, list | tuple):
            if len(room.members) <= self.slice_size:  # the common case: one slice, no copy
                return _write(members, frame, message, count, slow)
            members = list(members)
        if len(members) <= self.slice_size:
            return _write(members, frame, message, count, slow)
        flush = _Flush(room, frame, message, members if isinstance(members, list) else list(members), count)
        sent = self._write_slice(flush, slow)
        self._queue.append(flush)
        self._rooms.add(room)
        self._schedule()
        return sent

    def drain(self) -> None:
        """Write everything queued now (shutting down: nothing may stay unsent)."""
        while self._queue:
            self._write_some()

    def _schedule(self) -> None:
        if self._scheduled is None:
            self._scheduled = asyncio.get_running_loop().call_soon(self._write_some)

    def _write_some(self) -> None:
        self._scheduled = None
        budget = self.slice_size
        slow: list[Connection] = []
        sent = 0
        while budget > 0 and self._queue:
            flush = self._queue[0]
            before = flush.position
            sent += self._write_slice(flush, slow, budget)
            budget -= flush.position - before
            if flush.position >= len(flush.members):
                self._queue.popleft()
                self._rooms.discard(flush.room)
                self._on_done(flush.room)
        self._metrics.items_sent.inc(sent)
        for connection in slow:
            self._on_slow(connection)
        if self._queue:
            self._schedule()

    def _write_slice(self, flush: _Flush, slow: list[Connection], budget: int | None = None) -> int:
        start = flush.position
        end = min(len(flush.members), start + (budget or self.slice_size))
        flush.position = end
        current = flush.room.members  # skip those who left since the flush was made
        part = [c for c in flush.members[start:end] if c in current]
        return _write(part, flush.frame, flush.message, flush.count, slow)


def _write(
    members: Iterable[Connection], frame: bytes, message: bytes, count: int, slow: list[Connection]
) -> int:
    """The hot loop: the same bytes to every member, one write each."""
    sent = 0
    for connection in members:
        if connection.deliver(frame, message):
            sent += count
        else:
            slow.append(connection)
    return sent
