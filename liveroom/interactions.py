"""The interactions of the rooms held here: plugin commands, joins, leaves and queries, run
where the room's state is.

This is the authority's half of a command. The connection's half (`liveroom.dispatch`:
rate, shape, membership, role) runs on the node the client is connected to; on one node it
calls straight in here, on a cluster it forwards to the node that owns the room, which
runs exactly this. Every entry point takes plain values (a room, an identity, a command
name and its raw payload) and returns plain values, so it can be called from afar.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from liveroom.auth import Identity
from liveroom.clock import Clock
from liveroom.errors import BadRequest, CommandError, Forbidden, NotFound
from liveroom.plugin import CommandContext, CommandSpec, Plugin, PluginHost, QueryContext, QuerySpec
from liveroom.protocol import decode_payload
from liveroom.rooms import RoomHost

__all__ = ["CORE_COMMANDS", "Interactions"]

log = logging.getLogger(__name__)
CORE_COMMANDS = ("join", "leave", "time")


class Interactions:
    def __init__(
        self, plugins: Sequence[Plugin], hosts: dict[str, PluginHost], rooms: RoomHost, clock: Clock
    ) -> None:
        self._plugins = plugins
        self._hosts = hosts
        self.rooms = rooms
        self._clock = clock
        self.commands: dict[str, CommandSpec[Any]] = {}
        self._owner: dict[str, str] = {}  # command -> its plugin's name
        self.queries: dict[str, QuerySpec] = {}
        for plugin in plugins:
            for spec in plugin.commands():
                if spec.name in self.commands or spec.name in CORE_COMMANDS:
                    raise ValueError(f"command {spec.name!r} is declared twice")
                if not spec.name.startswith(plugin.name + "."):
                    raise ValueError(f"plugin {plugin.name!r} may only declare {plugin.name}.* commands")
                self.commands[spec.name] = spec
                self._owner[spec.name] = plugin.name
            for query in plugin.queries():
                self.queries[query.path] = query

    def spec(self, name: str, staff: bool) -> CommandSpec[Any]:
        """The command's spec, or the error a caller gets (unknown; staff only)."""
        spec = self.commands.get(name)
        if spec is None:
            raise BadRequest(f"unknown event {name[:64]!r}", "unknown_event")
        if spec.staff_only and not staff:
            raise Forbidden(f"{spec.name} is for hosts and moderators")
        return spec

    async def command(self, room: str, caller: Identity, name: str, raw: Any) -> dict[str, Any]:
        """Run a plugin command on the room's state; its reply's fields, or a CommandError."""
        spec = self.spec(name, caller.is_staff)
        payload = decode_payload(spec.payload, {**raw, "room": room} if isinstance(raw, dict) else raw)
        async with await self.rooms.run_in(room):
            reply = await spec.handler(self._command_context(self._owner[name], room, caller), payload)
        return _fields(reply)

    async def admit(self, room: str, caller: Identity, again: bool = False) -> dict[str, Any]:
        """A join: every plugin's `on_join` (a CommandError refuses it), then the room's
        state for this caller (each plugin's snapshot, with what its on_join returned).
        `again`: the same connection joining again (a re-sync), not one more join."""
        async with await self.rooms.run_in(room):
            personal: dict[str, Mapping[str, Any]] = {}
            for plugin in self._plugins:
                try:
                    extra = await plugin.on_join(self._command_context(plugin.name, room, caller))
                except CommandError:
                    raise
                except Exception:
                    log.exception("plugin %s failed on join of room %s", plugin.name, room)
                    continue
                if extra:
                    personal[plugin.name] = extra
            if not again:
                self.rooms.joined(room, caller)
            state = await self.snapshot(room)
        for name, extra in personal.items():
            state[name] = {**state.get(name, {}), **extra}
        return state

    async def readmit(self, room: str, users: list[Identity]) -> int:
        """Users already connected to the room through some node, told to a new owner of the
        room (its previous owner died with the room's presence in its memory): each one not
        present here is admitted again as one join (every plugin's `on_join`, so watch timers
        start again; a plugin that refuses it leaves the user out). Returns how many."""
        admitted = 0
        async with await self.rooms.run_in(room):
            for user in users:
                if self.rooms.is_present(room, user.user_id):
                    continue
                try:
                    for plugin in self._plugins:
                        try:
                            await plugin.on_join(self._command_context(plugin.name, room, user))
                        except CommandError:
                            raise
                        except Exception:
                            log.exception("plugin %s failed on join of room %s", plugin.name, room)
                except CommandError:
                    continue
                self.rooms.joined(room, user)
                admitted += 1
        return admitted

    async def left(self, room: str, user: Identity) -> None:
        """One of the user's joins ended; plugins hear `on_leave` once the last one has."""
        if room not in self.rooms or not self.rooms.left(room, user.user_id):
            return
        async with await self.rooms.run_in(room):
            for plugin in self._plugins:
                try:
                    await plugin.on_leave(room, user, self._clock.now_ms())
                except Exception:
                    log.exception("plugin %s failed on leave of room %s", plugin.name, room)

    async def snapshot(self, room: str) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for plugin in self._plugins:
            try:
                found: Any = plugin.snapshot(room)
                snapshot = await found if inspect.isawaitable(found) else found  # older plugins: sync
            except Exception:
                log.exception("plugin %s failed to snapshot room %s", plugin.name, room)
                continue
            if snapshot is not None:
                state[plugin.name] = snapshot
        return state

    async def query(self, room: str, caller: Identity, path: str, params: Mapping[str, str]) -> Any:
        query = self.queries.get(path)
        if query is None:
            raise NotFound(f"no query {path!r}")
        async with await self.rooms.run_in(room):
            try:
                return await query.handler(QueryContext(room, caller, self._clock.now_ms(), params))
            except ValueError as error:  # a bad parameter (int("x")...)
                raise BadRequest(str(error)) from None

    def _command_context(self, plugin: str, room: str, caller: Identity) -> CommandContext:
        host = self._hosts[plugin]
        return CommandContext(
            room, self._clock.now_ms(), host.store, host.services, host.timers, caller=caller
        )


def _fields(reply: Any) -> dict[str, Any]:
    """A handler's reply as the ack's fields (a mapping, or a dataclass / Struct)."""
    if reply is None:
        return {}
    if isinstance(reply, Mapping):
        return dict(reply)
    fields = msgspec.to_builtins(reply)
    if not isinstance(fields, dict):
        raise TypeError(f"a command's reply must be a mapping or a dataclass, not {type(reply).__name__}")
    return fields
