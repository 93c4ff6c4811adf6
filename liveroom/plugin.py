"""The public plugin API: what an interaction declares, and the contexts its code gets.

Every built-in interaction (`liveroom.plugins.*`) is written against this module only.
A plugin declares, in one place: its `name`, its typed config section (`config_type`, a
frozen dataclass with defaults read from `[plugins.NAME]`), its commands (each with a typed
payload the core validates before the handler runs), the item types it emits
(`item_types`: publishing any other is refused), its HTTP read endpoints (`queries`), and
the hooks below. A handler receives a `CommandContext` and the payload, and returns the
ack's fields (a mapping or a dataclass) or raises a `CommandError` with a code. Anything
else it raises is answered `internal_error` (a bug); one running past `[limits]
command_timeout_s` is abandoned and answered `outcome_unknown`. The room goes on.

**A room's state has one authority.** A plugin keeps its per-room state in memory and
writes what must survive as durable records (the Store). The node that holds a room (the
only node, or on a cluster the room's owner) calls the plugin's hooks for that room, in
this order of life:

1. `load_room(ctx)`: rebuild the room's state from its durable records, before anything
   else of the room runs here (its first join, command, query or timer on this node;
   after a restart; after taking the room over from a dead node).
2. `on_join` / commands / `on_leave` / timers / `snapshot` / `figures`, one room's calls
   never racing its `load_room`.
3. `release_room(room)`: forget the room (it is idle, or another node holds it now). Its
   timers are dropped by the node. The next use of the room starts again at 1.

So a plugin written against this API works unchanged on one node and on a cluster, as
long as it keeps the durability contract (tested by `liveroom.testing.conformance`):
write first, then change memory, then publish; rebuild everything a client sees from
records; keep per-room and per-user state bounded.

Hook order: plugins are called in load order (the built-ins in `liveroom.discovery.BUILTIN`
order, then third-party plugins by name), for every hook; `on_message` (the message hook,
`liveroom.message_hook`) by `message_priority` first (lower first), then load order.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import msgspec

from liveroom.auth import Identity, check_outranks
from liveroom.broker import Publication
from liveroom.clock import Clock
from liveroom.errors import BadRequest, Forbidden, LiveroomError
from liveroom.events import EventLog
from liveroom.message_hook import Answer, Bot, Hold, Message, Pass, Reject, Rewrite, Verdict
from liveroom.protocol import decode_payload
from liveroom.publish_token import PublishTokens
from liveroom.ratelimit import UserRate
from liveroom.store import Store
from liveroom.timers import Throttle, TimerCallback, Timers

__all__ = [
    "MAX_POSITION",
    "Activity",
    "Answer",
    "Bot",
    "CheckedServices",
    "CommandContext",
    "CommandSpec",
    "Hold",
    "Message",
    "Pass",
    "Plugin",
    "PluginHost",
    "QueryContext",
    "QuerySpec",
    "Reject",
    "Reply",
    "Rewrite",
    "RoomContext",
    "RoomServices",
    "Signals",
    "UndeclaredItem",
    "Verdict",
    "message_hook_plugins",
    "rate_limited",
]

log = logging.getLogger(__name__)
P = TypeVar("P")
# The largest record position, sequence number or server-ms timestamp a client may name:
# 2^53 - 1, exact in a JavaScript number and well inside SQLite's and msgpack's 64 bits.
MAX_POSITION = 2**53 - 1
# A handler's reply: a mapping of the ack's fields, or a dataclass (or msgspec Struct) whose
# fields they are.
Reply = Any


class UndeclaredItem(LiveroomError):
    """A plugin published an item type it does not declare in `item_types` (a bug)."""


class RoomServices(Protocol):
    """What the node lets a plugin do to rooms (implemented by the node, never by plugins)."""

    async def publish(
        self,
        room: str,
        item_type: str,
        data: Any,
        *,
        priority: bool = False,
        history: bool = True,
        once: str | None = None,
    ) -> Publication:
        """Publish an item to everyone in the room. `once`: an idempotency key; a publish that
        repeats one in the same room publishes nothing (`Publication.repeated`)."""
        ...

    def send_to_user(self, room: str, user_id: str, item_type: str, data: Any) -> int:
        """An item for one user's connections in the room (`seq: null`), sent at once."""
        ...

    def online(self, room: str) -> int: ...

    def members(self, room: str) -> list[Identity]:
        """The distinct users present in the room."""
        ...

    async def remove_user(self, room: str, user_id: str, item_type: str, data: Any) -> int:
        """Tell a user why (an item to them alone), then take their connections out of the room."""
        ...


class CheckedServices:
    """A plugin's view of the node's services: it may emit only the item types it declares."""

    def __init__(self, services: RoomServices, plugin: str, item_types: Sequence[str]) -> None:
        self._services = services
        self._plugin = plugin
        self._types = frozenset(item_types)

    def _check(self, item_type: str) -> None:
        if item_type not in self._types:
            raise UndeclaredItem(f"plugin {self._plugin!r} does not declare item type {item_type!r}")

    async def publish(
        self,
        room: str,
        item_type: str,
        data: Any,
        *,
        priority: bool = False,
        history: bool = True,
        once: str | None = None,
    ) -> Publication:
        self._check(item_type)
        return await self._services.publish(
            room, item_type, data, priority=priority, history=history, once=once
        )

    def send_to_user(self, room: str, user_id: str, item_type: str, data: Any) -> int:
        self._check(item_type)
        return self._services.send_to_user(room, user_id, item_type, data)

    def online(self, room: str) -> int:
        return self._services.online(room)

    def members(self, room: str) -> list[Identity]:
        return self._services.members(room)

    async def remove_user(self, room: str, user_id: str, item_type: str, data: Any) -> int:
        self._check(item_type)
        return await self._services.remove_user(room, user_id, item_type, data)


@dataclass(frozen=True, slots=True)
class Activity:
    """Something a user did that other plugins may react to (coupons count these)."""

    room: str
    user: Identity
    kind: str  # "danmaku", "vote", "like", ...
    amount: int
    now_ms: float


class Signals:
    """Plugins telling each other about activity, in process. A failing listener is contained."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[Activity], Awaitable[None]]] = []

    def listen(self, listener: Callable[[Activity], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    async def emit(self, activity: Activity) -> None:
        for listener in self._listeners:
            try:
                await listener(activity)
            except Exception:
                log.exception("activity listener failed on %s", activity.kind)


@dataclass(frozen=True, slots=True)
class PluginHost:
    """What a plugin is given when the node builds it (`services` is the plugin's own
    `CheckedServices`)."""

    clock: Clock
    store: Store
    services: RoomServices
    timers: Timers
    signals: Signals = field(default_factory=Signals)
    publish_tokens: PublishTokens | None = None
    # Every plugin loaded on this node, in load order; filled once start-up has built them
    # all (empty inside a plugin's __init__). The dashboard reads its siblings' `figures`.
    plugins: list[Plugin] = field(default_factory=list)
    # Business events for the merchant's backend (liveroom.events; sent by the webhooks plugin).
    events: EventLog = field(default_factory=EventLog)
    # `[delivery] throttled_writes_per_s`: what `throttle` spaces a big room's updates by.
    throttled_writes_per_s: float = 0.0

    def throttle(self, interval_ms: float, emit: Callable[[str], Awaitable[None]]) -> Throttle:
        """A `Throttle` for a room's state updates (a price, a tally, a total): `emit(key)` at
        most every `interval_ms`, and in a big room at most `throttled_writes_per_s` writes a
        second (a room of N online: at most every N / throttled_writes_per_s seconds). Touch
        it with `room=` so that it knows whose audience it writes to."""
        return Throttle(self.timers, interval_ms, emit, self.services.online, self.throttled_writes_per_s)

    def room(self, room: str) -> RoomContext:
        """A context for work on a room outside a command (a timer, a hook)."""
        return RoomContext(room, self.clock.now_ms(), self.store, self.services, self.timers)

    def command_spec(self, name: str) -> tuple[Plugin, CommandSpec[Any]]:
        """The plugin that declares a command, and its spec (`unknown_event` if none does)."""
        for plugin in self.plugins:
            for spec in plugin.commands():
                if spec.name == name:
                    return plugin, spec
        raise BadRequest(f"unknown command {name[:64]!r}", "unknown_event")

    async def command(
        self, room: str, caller: Identity, name: str, payload: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Run another plugin's command in a room as `caller` (a show's stage opening a poll):
        checked (staff only) and validated as a client's is; the ack's fields, or the
        `CommandError` it raised. Call it from the room's own work (a command, a timer)."""
        plugin, spec = self.command_spec(name)
        if spec.staff_only and not caller.is_staff:
            raise Forbidden(f"{name} is for hosts and moderators")
        typed = decode_payload(spec.payload, {**payload, "room": room})
        host = plugin.host
        ctx = CommandContext(room, self.clock.now_ms(), host.store, host.services, host.timers, caller=caller)
        reply = await spec.handler(ctx, typed)
        fields = reply if isinstance(reply, Mapping) else msgspec.to_builtins(reply)
        return dict(fields or {})


@dataclass(frozen=True, slots=True)
class RoomContext:
    """Everything code working on one room may touch (a timer, `load_room`, a hook)."""

    room: str
    now_ms: float
    store: Store
    services: RoomServices
    timers: Timers

    @property
    def online(self) -> int:
        return self.services.online(self.room)

    def members(self) -> list[Identity]:
        return self.services.members(self.room)

    async def publish(
        self,
        item_type: str,
        data: Any,
        *,
        priority: bool = False,
        history: bool = True,
        once: str | None = None,
    ) -> Publication:
        """Publish an item to everyone in the room (the priority lane is flushed at once);
        `once` makes it idempotent (see `RoomServices.publish`)."""
        return await self.services.publish(
            self.room, item_type, data, priority=priority, history=history, once=once
        )

    def send_to(self, user_id: str, item_type: str, data: Any) -> int:
        """An item for one user's connections in this room only (`seq: null`), sent at once."""
        return self.services.send_to_user(self.room, user_id, item_type, data)

    def schedule(self, key: str, at_ms: float, callback: TimerCallback, *, wake: bool = True) -> None:
        """Run `callback(now_ms)` at server time `at_ms`; the same key again moves the timer.

        The timer is the room's: dropped when the room is released. `wake=True` (a deadline)
        keeps the room loaded, and brings it back after a restart or a failover (the plugin's
        `load_room` sets the timer again from its records); `wake=False` for one that may be
        lost with the room (a throttled update)."""
        self.timers.schedule(key, at_ms, callback, room=self.room, wake=wake)

    def cancel(self, key: str) -> bool:
        return self.timers.cancel(key)


@dataclass(frozen=True, slots=True)
class CommandContext(RoomContext):
    """A command's context: the room's, and who sent it (`now_ms` is when it arrived)."""

    caller: Identity = field(kw_only=True)

    def send_to_caller(self, item_type: str, data: Any) -> int:
        """An item for the caller's connections in this room only (`seq: null`), sent at once."""
        return self.services.send_to_user(self.room, self.caller.user_id, item_type, data)

    def check_may_act_on(self, user_id: str) -> None:
        """The staff hierarchy (`liveroom.auth.RANK`): raise `Outranked` if `user_id` is in the
        room with a higher role than the caller's (a moderator muting a host, a host banning an
        admin). A staff command acting on a user (mute, ban, take off stage) calls this first."""
        for member in self.members():
            if member.user_id == user_id:
                check_outranks(self.caller.role, member.role)


@dataclass(frozen=True, slots=True)
class CommandSpec(Generic[P]):
    """A command `NAME.verb`: its payload type (a frozen dataclass with a `room` field) and handler."""

    name: str
    payload: type[P]
    handler: Callable[[CommandContext, P], Awaitable[Reply]]
    # Hosts, moderators and admins only. Staff commands are also served over HTTP
    # (`POST /api/rooms/{room}/commands/NAME.verb`, host or admin token).
    staff_only: bool = False
    summary: str = ""
    # A staff command may also be served as `POST /api/rooms/{room}/<http>` (e.g.
    # "coupons/grants"), the body its payload, besides `.../commands/NAME.verb`.
    http: str = ""


def rate_limited(
    handler: Callable[[CommandContext, P], Awaitable[Reply]], rate: UserRate, clock: Clock
) -> Callable[[CommandContext, P], Awaitable[Reply]]:
    """`handler`, refused `rate_limited` past `rate` (per user and room) before it runs: for
    every command that publishes to the room (docs/plugins.md lists each plugin's)."""

    async def limited(ctx: CommandContext, payload: P) -> Reply:
        rate.check(ctx.room, ctx.caller.user_id, clock.monotonic())
        return await handler(ctx, payload)

    return limited


@dataclass(frozen=True, slots=True)
class QueryContext:
    room: str
    caller: Identity
    now_ms: float
    params: Mapping[str, str]

    def int_param(self, name: str, default: int, low: int, high: int) -> int:
        """A whole-number query parameter in `low..high` (absent or empty: `default`), or
        `bad_request`: never a ValueError, never a number the store cannot hold."""
        raw = self.params.get(name, "")
        if raw == "":
            return default
        if not (raw.isascii() and raw.lstrip("-").isdigit() and len(raw) <= 20):
            raise BadRequest(f"{name} must be a whole number")
        value = int(raw)
        if not low <= value <= high:
            raise BadRequest(f"{name} must be {low}..{high}")
        return value


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """A read endpoint: `GET /api/rooms/{room}/<path>` (host or admin token); `{name}` parts
    of `path` arrive in `params` with the query string. Runs where the room's state is (like
    a command), after the room's `load_room`."""

    path: str
    handler: Callable[[QueryContext], Awaitable[Any]]
    summary: str = ""


class Plugin:
    """Base class of interaction plugins. Subclasses set `name`, `config_type`, `item_types`."""

    name: ClassVar[str]
    # A frozen dataclass with defaults: the plugin's `[plugins.NAME]` section.
    config_type: ClassVar[type[Any]]
    # Every item type this plugin publishes or sends, `NAME.event`; any other is refused.
    item_types: ClassVar[tuple[str, ...]] = ()
    # The message hook's order across plugins: lower first; ties in load order.
    message_priority: ClassVar[int] = 0

    def __init__(self, config: Any, host: PluginHost) -> None:
        self.config = config
        self.host = host

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return ()

    def queries(self) -> Sequence[QuerySpec]:
        return ()

    async def load_room(self, ctx: RoomContext) -> None:
        """Rebuild the room's state from durable records (see the module docstring). Raising
        (the store unreachable) fails what needed the room with `unavailable`; it is tried
        again on the room's next use."""
        return None

    def release_room(self, room: str) -> None:
        """Forget everything kept in memory for the room."""
        return None

    async def snapshot(self, room: str) -> Mapping[str, Any] | None:
        """This plugin's state for `join`'s `state` (None: nothing to show)."""
        return None

    async def on_join(self, ctx: CommandContext) -> Mapping[str, Any] | None:
        """Called before the caller enters the room. Raise `CommandError` to refuse the join;
        a mapping returned is merged into this plugin's `state` in the caller's join ack only."""
        return None

    async def on_leave(self, room: str, user: Identity, now_ms: float) -> None:
        """Called when a user's last connection leaves the room (or disconnects)."""
        return None

    async def figures(self, room: str, now_ms: float) -> Mapping[str, Any] | None:
        """This plugin's figures for the room's live dashboard (None: nothing to show).

        Called about once a second per room while staff watch the dashboard, and on
        `GET /api/rooms/{room}/dashboard`: keep it cheap (read durable records
        incrementally, not from the start every time). Only hosts, moderators and admins
        see the result (`dashboard.stats`)."""
        return None

    async def on_message(self, ctx: RoomContext, message: Message) -> Verdict:
        """The message hook: a danmaku about to be published, after danmaku's own checks, on
        the node that holds the room. Return None (pass), `Rewrite`, `Answer`, `Reject` or
        `Hold` (`liveroom.message_hook`). Keep it within `[plugins.danmaku] hook_timeout_ms`:
        past it, or raising, the hook is skipped or the message held (`hook_failure`)."""
        return None

    async def start(self) -> None:
        """The node starts (no room is loaded yet): open what the plugin needs for itself."""
        return None

    async def stop(self) -> None:
        return None


def message_hook_plugins(plugins: Sequence[Plugin]) -> list[Plugin]:
    """The plugins that override `on_message`, in the hook's order (priority, then load order)."""
    hooked = [plugin for plugin in plugins if type(plugin).on_message is not Plugin.on_message]
    return sorted(hooked, key=lambda plugin: plugin.message_priority)  # stable: load order kept
