"""Commands in, acks out: the connection's half of every command, and error containment.

`join`, `leave` and `time` belong to the core; every other command is a plugin's. Here,
on the node the client is connected to: the caller's command rate, the one-object shape,
the caller being in the room and being staff where the command says so. What a command
does to the room runs where the room's state is (`liveroom.interactions`): on one node a
plain call, on a cluster the owner of the room. Whatever a plugin raises, the room goes on.

Join order: the plugins admit the caller and give the room's state first, then the
connection enters the room's delivery, and nothing is awaited between that and the ack:
no batch of the room reaches the caller before its join ack, and none of what the state
shows is missed (what is published meanwhile is in `missed` or in the next batches).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from liveroom.auth import Identity
from liveroom.clock import Clock
from liveroom.config import LimitsConfig
from liveroom.connection import Connection
from liveroom.errors import BadRequest, CommandError, Forbidden, NotJoined, OutcomeUnknown, RateLimited
from liveroom.hub import Hub
from liveroom.interactions import CORE_COMMANDS, Interactions
from liveroom.metrics import Metrics
from liveroom.plugin import CommandSpec
from liveroom.protocol import (
    EncodedJson,
    JoinPayload,
    LeavePayload,
    RoomPayload,
    TimePayload,
    decode_payload,
    error_ack,
    ok_ack,
)

if TYPE_CHECKING:
    from liveroom.cluster import ClusterAuthority

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        hub: Hub,
        interactions: Interactions | ClusterAuthority,
        clock: Clock,
        limits: LimitsConfig,
        metrics: Metrics,
    ) -> None:
        self._hub = hub
        self.interactions = interactions
        self._clock = clock
        self._limits = limits
        self._metrics = metrics
        self._counters: dict[str, Any] = {}  # command -> its metric child, looked up once

    def _count(self, event: str) -> None:
        counter = self._counters.get(event)
        if counter is None:
            known = event in CORE_COMMANDS or event in self.interactions.commands
            counter = self._metrics.commands.labels(event if known else "unknown")
            if known:  # unknown names are not kept: clients choose them
                self._counters[event] = counter
        counter.inc()

    @property
    def command_names(self) -> list[str]:
        return [*CORE_COMMANDS, *self.interactions.commands]

    @property
    def commands(self) -> Mapping[str, CommandSpec[Any]]:
        return self.interactions.commands

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
        spec = self.interactions.commands.get(event)
        if spec is None or not spec.staff_only:
            raise CommandError(f"no host command {event[:64]!r}", "not_found")
        if not isinstance(raw, dict):
            raise BadRequest("the body must be a JSON object")
        return await self._timed(event, self.interactions.command(room, caller, event, {**raw, "room": room}))

    async def _contained(self, event: str, work: Awaitable[Mapping[str, Any]]) -> dict[str, Any]:
        try:
            reply = await work
        except CommandError as error:
            self._metrics.errors.labels(error.code).inc()
            return error_ack(error)
        except Exception:
            log.exception("command %r failed: a bug in a plugin or in liveroom", event)
            self._metrics.errors.labels("internal_error").inc()
            return error_ack(CommandError("the server failed to run this command", "internal_error"))
        return ok_ack(**reply)

    async def _timed(self, name: str, work: Awaitable[Mapping[str, Any]]) -> Mapping[str, Any]:
        try:
            # asyncio.timeout, not wait_for: no extra task per command on the hot path.
            async with asyncio.timeout(self._limits.command_timeout_s):
                return await work
        except TimeoutError:
            # Abandoned halfway: its writes may or may not have happened. Never "failed".
            log.warning("command %s timed out after %ss", name, self._limits.command_timeout_s)
            raise OutcomeUnknown(
                "the command took too long; its outcome is unknown: retry with the same request_id"
            ) from None

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
        spec = self.interactions.spec(event, staff=True)  # unknown_event before anything else
        room = raw.get("room") if isinstance(raw, dict) else None
        if not isinstance(room, str) or room not in connection.rooms:
            decode_payload(spec.payload, raw)  # a malformed payload is told so first
            room = decode_payload(RoomPayload, {"room": raw["room"]}).room
            raise NotJoined(f"join room {room!r} first")
        if spec.staff_only and not connection.identity.is_staff:
            raise Forbidden(f"{spec.name} is for hosts and moderators")
        return await self._timed(event, self.interactions.command(room, connection.identity, event, raw))

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
        again = payload.room in connection.rooms  # a re-sync: one join, as far as plugins count
        async with self._hub.reserving(payload.room) as room:
            since, fresh = payload.since, payload.since is None
            if fresh:  # the state is taken now: what comes after it goes in `missed`
                since = room.delivered_seq
            state = await self._timed(
                "join", self.interactions.admit(payload.room, connection.identity, again)
            )
            try:
                result = await self._hub.join(connection, payload.room, since, payload.epoch, fresh)
            except BaseException:
                if not again:  # the plugins admitted a join that did not happen: it is over
                    await self.interactions.left(payload.room, connection.identity)
                raise
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

    async def _leave(self, connection: Connection, payload: LeavePayload) -> Mapping[str, Any]:
        if not await self.leave(connection, payload.room):
            raise NotJoined(f"not in room {payload.room!r}")
        return {"room": payload.room}

    async def leave(self, connection: Connection, room_id: str) -> bool:
        """Leave one room; plugins hear of it once the user's last join there is gone."""
        if not await self._hub.leave(connection, room_id):
            return False
        await self.interactions.left(room_id, connection.identity)
        return True

    async def drop(self, connection: Connection) -> None:
        """A connection is gone: it leaves every room it was in."""
        for room_id in list(connection.rooms):
            await self.leave(connection, room_id)
