"""Commands in, acks out: validation, the room rules of the core, and error containment.

`join`, `leave` and `time` belong to the core; every other command is a plugin's. A
plugin's handler runs only after its payload has been validated, its caller's rate and
role checked, and the caller found in the room. Whatever it raises, the room goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from liveroom.clock import Clock
from liveroom.config import LimitsConfig
from liveroom.connection import Connection
from liveroom.errors import BadRequest, CommandError, Forbidden, NotJoined, RateLimited
from liveroom.hub import Hub
from liveroom.metrics import Metrics
from liveroom.plugin import CommandContext, CommandSpec, Plugin, RoomServices
from liveroom.protocol import JoinPayload, LeavePayload, TimePayload, decode_payload, error_ack, ok_ack
from liveroom.store import Store

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
    ) -> None:
        self._hub = hub
        self._plugins = plugins
        self._services = services
        self._store = store
        self._clock = clock
        self._limits = limits
        self._metrics = metrics
        self._commands: dict[str, CommandSpec[Any]] = {}
        for plugin in plugins:
            for spec in plugin.commands():
                if spec.name in self._commands or spec.name in CORE_COMMANDS:
                    raise ValueError(f"command {spec.name!r} is declared twice")
                if not spec.name.startswith(plugin.name + "."):
                    raise ValueError(f"plugin {plugin.name!r} may only declare {plugin.name}.* commands")
                self._commands[spec.name] = spec

    @property
    def command_names(self) -> list[str]:
        return [*CORE_COMMANDS, *self._commands]

    async def dispatch(self, connection: Connection, event: str, args: Sequence[Any]) -> dict[str, Any]:
        """Run one command and return its ack. Never raises."""
        try:
            reply = await self._run(connection, event, args)
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
        self._metrics.commands.labels(event if event in self.command_names else "unknown").inc()
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
        ctx = CommandContext(room, connection.identity, self._clock.now_ms(), self._store, self._services)
        try:
            return await asyncio.wait_for(spec.handler(ctx, payload), self._limits.command_timeout_s)
        except TimeoutError:
            log.error("command %s timed out after %ss", spec.name, self._limits.command_timeout_s)
            raise CommandError("the command took too long", "internal_error") from None

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
        result = await self._hub.join(connection, payload.room, payload.since, payload.epoch)
        return {
            "room": payload.room,
            "seq": result.seq,
            "epoch": result.epoch,
            "server_time": self._clock.now_ms(),
            "online": result.room.online,
            "state": self._snapshot(payload.room),
            # The items' JSON was made once at publish time; embed it as is.
            "missed": [orjson.Fragment(p.encoded) for p in result.missed],
            "reset": result.reset,
        }

    async def _leave(self, connection: Connection, payload: LeavePayload) -> Mapping[str, Any]:
        if not await self._hub.leave(connection, payload.room):
            raise NotJoined(f"not in room {payload.room!r}")
        return {"room": payload.room}

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
