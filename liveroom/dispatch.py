"""Commands in, acks out: validation, the room rules of the core, and error containment.

`join`, `leave` and `time` belong to the core; every other command is a plugin's. A
plugin's handler runs only after its payload has been validated, its caller's rate and
role checked, and the caller found in the room. Whatever it raises, the room goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from liveroom.auth import Identity
from liveroom.clock import Clock
from liveroom.config import LimitsConfig
from liveroom.connection import Connection
from liveroom.errors import BadRequest, CommandError, Forbidden, NotJoined, OutcomeUnknown, RateLimited
from liveroom.hub import Hub
from liveroom.metrics import Metrics
from liveroom.plugin import CommandContext, CommandSpec, Plugin, RoomServices
from liveroom.protocol import (
    EncodedJson,
    JoinPayload,
    LeavePayload,
    TimePayload,
    decode_payload,
    error_ack,
    ok_ack,
)
from liveroom.store import Store
from liveroom.timers import Timers

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)
CORE_COMMANDS = ("join", "leave", "time")


class Dispatcher:
    def __init__(
        self,
        hub: Hub,
        plugins: Sequence[Plugin],
        services: RoomServices,
        store: Store,
        clock: Clock,
        limits: LimitsConfig,
        metrics: Metrics,
        timers: Timers,
    ) -> None:
        self._hub = hub
        self._plugins = plugins
        self._services = services
        self._store = store
        self._clock = clock
        self._limits = limits
        self._metrics = metrics
        self._timers = timers
        self._commands: dict[str, CommandSpec[Any]] = {}
        self._counters: dict[str, Any] = {}  # command -> its metric child, looked up once
        for plugin in plugins:
            for spec in plugin.commands():
                if spec.name in self._commands or spec.name in CORE_COMMANDS:
                    raise ValueError(f"command {spec.name!r} is declared twice")
                if not spec.name.startswith(plugin.name + "."):
                    raise ValueError(f"plugin {plugin.name!r} may only declare {plugin.name}.* commands")
                self._commands[spec.name] = spec

    def _count(self, event: str) -> None:
        counter = self._counters.get(event)
        if counter is None:
            known = event in CORE_COMMANDS or event in self._commands
            counter = self._metrics.commands.labels(event if known else "unknown")
            if known:  # unknown names are not kept: clients choose them
                self._counters[event] = counter
        counter.inc()

    @property
    def command_names(self) -> list[str]:
        return [*CORE_COMMANDS, *self._commands]

    @property
    def commands(self) -> Mapping[str, CommandSpec[Any]]:
        return self._commands

    async def dispatch(self, connection: Connection, event: str, args: Sequence[Any]) -> dict[str, Any]:
        """Run one command and return its ack. Never raises."""
        started = self._clock.monotonic()
        ack = await self._contained(event, self._run(connection, event, args))
        self._metrics.command_seconds.observe(self._clock.monotonic() - started)
        return ack

    async def run_as(self, caller: Identity, room: str, event: str, raw: Any) -> dict[str, Any]:
        """A staff command from the HTTP API: no socket, no joined room. Never raises."""
        return await self._contained(event, self._run_for(caller, room, event, raw))

    async def _run_for(self, caller: Identity, room: str, event: str, raw: Any) -> Mapping[str, Any]:
        spec = self._commands.get(event)
        if spec is None or not spec.staff_only:
            raise CommandError(f"no host command {event[:64]!r}", "not_found")
        if not isinstance(raw, dict):
            raise BadRequest("the body must be a JSON object")
        payload = decode_payload(spec.payload, {**raw, "room": room})
        return await self._call(spec, self.context(room, caller), payload)

    def context(self, room: str, caller: Identity) -> CommandContext:
        return CommandContext(room, caller, self._clock.now_ms(), self._store, self._services, self._timers)

    async def _contained(self, event: str, work: Awaitable[Mapping[str, Any]]) -> dict[str, Any]:
        try:
            reply = await work
        except CommandError as error:
            self._metrics.errors.labels(error.code).inc()
            return error_ack(error)
        except Exception:
            log.exception("command %r failed", event)
            self._metrics.errors.labels("internal_error").inc()
            return error_ack(CommandError("the server failed to run this command", "internal_error"))
        return ok_ack(**reply)

    async def _run(self, connection: Connection, event: str, args: Sequence[Any]) -> Mapping[str, Any]:
        if not connection.bucket.take(self._clock.monotonic()):
            raise RateLimited(f"more than {self._limits.commands_per_s:g} commands a second")
        if len(args) != 1:
            raise BadRequest(f"a command takes exactly one object argument, got {len(args)}")
        raw = args[0]
        self._count(event)
        if event == "join":
            return await self._join(connection, decode_payload(JoinPayload, raw))
        if event == "leave":
            return await self._leave(connection, decode_payload(LeavePayload, raw))
        if event == "time":
            decode_payload(TimePayload, raw)
            return {"server_time": self._clock.now_ms()}
        spec = self._commands.get(event)
        if spec is None:
            raise BadRequest(f"unknown event {event[:64]!r}", "unknown_event")
        return await self._run_plugin_command(connection, spec, raw)

    async def _run_plugin_command(
        self, connection: Connection, spec: CommandSpec[Any], raw: Any
    ) -> Mapping[str, Any]:
        payload = decode_payload(spec.payload, raw)
        room = payload.room
        if room not in connection.rooms:
            raise NotJoined(f"join room {room!r} first")
        if spec.staff_only and not connection.identity.is_staff:
            raise Forbidden(f"{spec.name} is for hosts and moderators")
        return await self._call(spec, self.context(room, connection.identity), payload)

    async def _call(self, spec: CommandSpec[Any], ctx: CommandContext, payload: Any) -> Mapping[str, Any]:
        try:
            # asyncio.timeout, not wait_for: no extra task per command on the hot path.
            async with asyncio.timeout(self._limits.command_timeout_s):
                return await spec.handler(ctx, payload)
        except TimeoutError:
            # Abandoned halfway: its writes may or may not have happened. Never "failed".
            log.warning("command %s timed out after %ss", spec.name, self._limits.command_timeout_s)
            raise OutcomeUnknown(
                "the command took too long; its outcome is unknown: retry with the same request_id"
            ) from None

    async def _join(self, connection: Connection, payload: JoinPayload) -> Mapping[str, Any]:
        bound = connection.identity.room
        if bound is not None and bound != payload.room:
            raise Forbidden(f"this token is for room {bound!r} only")
        if (
            payload.room not in connection.rooms
            and len(connection.rooms) >= self._limits.max_rooms_per_connection
        ):
            raise CommandError(
                f"at most {self._limits.max_rooms_per_connection} rooms per connection", "too_many_rooms"
            )
        personal = await self._admit(connection, payload.room)
        try:
            result = await self._hub.join(connection, payload.room, payload.since, payload.epoch)
        except BaseException:
            # The plugins were told of a join that did not happen: tell them it is over.
            await self._left(payload.room, connection.identity)
            raise
        state = self._snapshot(payload.room)
        for name, extra in personal.items():
            state[name] = {**state.get(name, {}), **extra}
        return {
            "room": payload.room,
            "seq": result.seq,
            "epoch": result.epoch,
            "server_time": self._clock.now_ms(),
            "online": result.room.online_everywhere,
            "state": state,
            # The items' JSON was made once at publish time; embed it as is.
            "missed": [EncodedJson(p.encoded) for p in result.missed],
            "reset": result.reset,
        }

    async def _admit(self, connection: Connection, room: str) -> dict[str, Mapping[str, Any]]:
        """Every plugin's `on_join`: a CommandError refuses the join; other failures are logged."""
        ctx = self.context(room, connection.identity)
        personal: dict[str, Mapping[str, Any]] = {}
        for plugin in self._plugins:
            try:
                extra = await plugin.on_join(ctx)
            except CommandError:
                raise
            except Exception:
                log.exception("plugin %s failed on join of room %s", plugin.name, room)
                continue
            if extra:
                personal[plugin.name] = extra
        return personal

    async def _leave(self, connection: Connection, payload: LeavePayload) -> Mapping[str, Any]:
        if not await self.leave(connection, payload.room):
            raise NotJoined(f"not in room {payload.room!r}")
        return {"room": payload.room}

    async def leave(self, connection: Connection, room_id: str) -> bool:
        """Leave one room; plugins hear of it once the user's last connection there is gone."""
        if not await self._hub.leave(connection, room_id):
            return False
        await self._left(room_id, connection.identity)
        return True

    async def _left(self, room_id: str, user: Identity) -> None:
        """Plugins' `on_leave`, once the user has no connection left in the room."""
        room = self._hub.rooms.get(room_id)
        if room is not None and user.user_id in room.users:
            return
        for plugin in self._plugins:
            try:
                await plugin.on_leave(room_id, user, self._clock.now_ms())
            except Exception:
                log.exception("plugin %s failed on leave of room %s", plugin.name, room_id)

    async def drop(self, connection: Connection) -> None:
        """A connection is gone: it leaves every room it was in."""
        for room_id in list(connection.rooms):
            await self.leave(connection, room_id)

    def _snapshot(self, room: str) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for plugin in self._plugins:
            try:
                snapshot = plugin.snapshot(room)
            except Exception:
                log.exception("plugin %s failed to snapshot room %s", plugin.name, room)
                continue
            if snapshot is not None:
                state[plugin.name] = snapshot
        return state
