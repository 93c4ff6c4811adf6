"""The rooms whose interaction state this node holds: loaded on first use, released when idle.

A room is *held* here from its first join, command, query or timer (on a cluster: while
this node owns it) until it has been idle for `[room] idle_release_s`: no users present,
no timer pending, no work running. Loading calls every plugin's `load_room` once, before
anything else of the room runs; releasing calls every plugin's `release_room` and drops
the room's timers, so an idle room costs no memory (a crowd of abandoned rooms is litter,
not a leak).

A room with a *waking* timer pending (a deadline that must fire with nobody there) is
marked in the store's awake index while it is held; the marks still set when a node starts
(after a restart, or on a cluster after its owner died) are the rooms loaded at once,
so their plugins set those timers again from their records.

The users present are counted here, per room: on a cluster this is the room's authority,
which hears of every join and leave on every node, so `members` is the whole room's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from liveroom.auth import Identity
from liveroom.clock import Clock
from liveroom.errors import CommandError, Unavailable
from liveroom.plugin import Plugin, PluginHost, RoomContext
from liveroom.store import Store
from liveroom.timers import Timers

__all__ = ["RoomHost"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Room:
    loaded: asyncio.Future[None]
    present: dict[str, tuple[Identity, int]] = field(default_factory=dict)  # user -> (who, joins)
    running: int = 0  # commands, joins and queries under way
    idle_since: float | None = None  # clock seconds (monotonic), when it last became idle
    awake: bool = False  # marked in the store's awake index


class RoomHost:
    def __init__(
        self,
        plugins: Sequence[Plugin],
        hosts: dict[str, PluginHost],
        store: Store,
        clock: Clock,
        timers: Timers,
        idle_release_s: float,
    ) -> None:
        self._plugins = plugins
        self._hosts = hosts  # plugin name -> its host (its own checked services)
        self._store = store
        self._clock = clock
        self._timers = timers
        self._idle_release_s = idle_release_s
        self._rooms: dict[str, _Room] = {}
        self._marking: set[asyncio.Task[None]] = set()
        timers.on_wake = self._wake

    def __contains__(self, room: str) -> bool:
        return room in self._rooms

    def __len__(self) -> int:
        return len(self._rooms)

    async def ensure(self, room: str) -> None:
        """Load the room's state here if it is not (every plugin's `load_room`, in order)."""
        held = self._rooms.get(room)
        if held is None:
            held = self._rooms[room] = _Room(asyncio.get_running_loop().create_future())
            try:
                for plugin in self._plugins:
                    await plugin.load_room(self._context(plugin, room))
            except BaseException as exc:
                self._forget(room)
                error = (
                    exc
                    if isinstance(exc, CommandError)
                    else Unavailable(f"room {room!r} could not be loaded")
                )
                if not isinstance(exc, CommandError | asyncio.CancelledError):
                    log.exception("loading room %s failed", room)
                held.loaded.set_exception(error)
                held.loaded.exception()  # retrieved: waiters re-raise it
                raise error from None
            held.loaded.set_result(None)
        elif not held.loaded.done():
            await asyncio.shield(held.loaded)

    async def run_in(self, room: str) -> _Work:
        """`async with (await rooms.run_in(room)):` the room is loaded and not released meanwhile."""
        await self.ensure(room)
        return _Work(self, room)

    # -- who is here ------------------------------------------------------------------

    def joined(self, room: str, user: Identity) -> None:
        held = self._rooms[room]
        _, joins = held.present.get(user.user_id, (user, 0))
        held.present[user.user_id] = (user, joins + 1)
        held.idle_since = None

    def left(self, room: str, user_id: str) -> bool:
        """One of the user's joins ended; True when it was the last (the user is gone)."""
        held = self._rooms.get(room)
        if held is None or user_id not in held.present:
            return False
        user, joins = held.present[user_id]
        if joins > 1:
            held.present[user_id] = (user, joins - 1)
            return False
        del held.present[user_id]
        self._maybe_idle(room, held)
        return True

    def members(self, room: str) -> list[Identity]:
        held = self._rooms.get(room)
        return [] if held is None else [user for user, _ in held.present.values()]

    def is_present(self, room: str, user_id: str) -> bool:
        held = self._rooms.get(room)
        return held is not None and user_id in held.present

    # -- release ----------------------------------------------------------------------

    def sweep(self) -> list[str]:
        """Release every room idle for `idle_release_s`; returns them."""
        now = self._clock.monotonic()
        released = []
        for room, held in list(self._rooms.items()):
            self._maybe_idle(room, held)
            if held.idle_since is not None and now - held.idle_since >= self._idle_release_s:
                self.release(room)
                released.append(room)
        return released

    def release(self, room: str) -> None:
        """Forget the room here: every plugin's `release_room`, its timers dropped."""
        held = self._rooms.get(room)
        if held is None or not held.loaded.done():
            return
        for plugin in self._plugins:
            try:
                plugin.release_room(room)
            except Exception:
                log.exception("plugin %s failed to release room %s", plugin.name, room)
        self._forget(room)
        if held.awake:
            self._mark(room, False)

    def release_all(self) -> None:
        for room in list(self._rooms):
            held = self._rooms[room]
            if held.loaded.done():
                for plugin in self._plugins:
                    try:
                        plugin.release_room(room)
                    except Exception:
                        log.exception("plugin %s failed to release room %s", plugin.name, room)
                self._forget(room)  # the awake marks stay: the rooms come back with the node

    async def wake_marked(self) -> list[str]:
        """Load the rooms the awake index holds (at start): their deadlines fire again."""
        rooms = await self._store.awake_rooms()
        for room in rooms:
            try:
                await self.ensure(room)
            except CommandError:
                continue  # logged; tried again on the room's next use
            held = self._rooms.get(room)
            if held is not None:
                held.awake = True
                self._maybe_idle(room, held)
        return rooms

    async def settle(self) -> None:
        """Wait for awake-index writes under way (tests, shutdown)."""
        while self._marking:
            await asyncio.gather(*self._marking, return_exceptions=True)

    def _maybe_idle(self, room: str, held: _Room) -> None:
        if held.present or held.running or self._timers.pending_in(room):
            held.idle_since = None
        elif held.idle_since is None:
            held.idle_since = self._clock.monotonic()
            if held.awake and not self._timers.waking_in(room):
                self._mark(room, False)
                held.awake = False

    def _forget(self, room: str) -> None:
        self._rooms.pop(room, None)
        self._timers.cancel_room(room)

    def _wake(self, room: str) -> None:
        held = self._rooms.get(room)
        if held is not None and not held.awake:
            held.awake = True
            self._mark(room, True)

    def _mark(self, room: str, awake: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._write_mark(room, awake))
        self._marking.add(task)
        task.add_done_callback(self._marking.discard)

    async def _write_mark(self, room: str, awake: bool) -> None:
        try:
            await self._store.set_awake(room, awake)
        except Exception:  # the room stays held meanwhile; a restart finds it, or not, by its records
            log.warning("room %s: the awake index could not be updated", room)

    def _context(self, plugin: Plugin, room: str) -> RoomContext:
        host = self._hosts[plugin.name]
        return RoomContext(room, self._clock.now_ms(), host.store, host.services, host.timers)


class _Work:
    """Work on a held room: counted, so the room is not released under it."""

    __slots__ = ("_host", "_room")

    def __init__(self, host: RoomHost, room: str) -> None:
        self._host, self._room = host, room

    async def __aenter__(self) -> None:
        held = self._host._rooms[self._room]
        held.running += 1
        held.idle_since = None

    async def __aexit__(self, *exc: object) -> None:
        held = self._host._rooms.get(self._room)
        if held is not None:
            held.running -= 1
            self._host._maybe_idle(self._room, held)
