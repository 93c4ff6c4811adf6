"""The public plugin API: what an interaction declares, and the one context its handlers get.

Every built-in interaction (`liveroom.plugins.*`) is written against this module only.
A plugin declares, in one place: its `name`, its typed config section (`config_type`, a
frozen dataclass with defaults read from `[plugins.NAME]`), its commands (each with a typed
payload the core validates before the handler runs), the item types it emits
(`item_types`), its per-room snapshot (`snapshot`, in `join`'s `state`) and what it tells
one user on join (`on_join`), its HTTP read endpoints (`queries`), its figures for the
host's live dashboard (`figures`), and its timers (through `host.timers`). A handler
receives a `CommandContext` and the payload, and returns the ack's fields or raises a
`CommandError` with a code. Anything else it raises, or taking longer than `[limits]
command_timeout_s`, is answered `internal_error`; the room goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from liveroom.auth import Identity
from liveroom.broker import Publication
from liveroom.clock import Clock
from liveroom.publish_token import PublishTokens
from liveroom.store import Store
from liveroom.timers import TimerCallback, Timers

__all__ = [
    "Activity",
    "CommandContext",
    "CommandSpec",
    "Plugin",
    "PluginHost",
    "QueryContext",
    "QuerySpec",
    "RoomServices",
    "Signals",
]

log = logging.getLogger(__name__)
P = TypeVar("P")
Reply = Mapping[str, Any]


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

    def send_to_user(self, room: str, user_id: str, item_type: str, data: Any) -> int: ...

    def online(self, room: str) -> int: ...

    def members(self, room: str) -> list[Identity]:
        """The distinct users present in the room on this node."""
        ...

    async def remove_user(self, room: str, user_id: str, item_type: str, data: Any) -> int:
        """Tell a user why (an item to them alone), then take their connections out of the room."""
        ...


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
    """What a plugin is given when the node builds it."""

    clock: Clock
    store: Store
    services: RoomServices
    timers: Timers
    signals: Signals = field(default_factory=Signals)
    publish_tokens: PublishTokens | None = None
    # Every plugin loaded on this node, in load order; filled once start-up has built them
    # all (empty inside a plugin's __init__). The dashboard reads its siblings' `figures`.
    plugins: list[Plugin] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CommandContext:
    """Everything a command handler may touch."""

    room: str
    caller: Identity
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

    def send_to_caller(self, item_type: str, data: Any) -> int:
        """An item for the caller's connections in this room only (`seq: null`), sent at once."""
        return self.services.send_to_user(self.room, self.caller.user_id, item_type, data)

    def send_to(self, user_id: str, item_type: str, data: Any) -> int:
        """An item for one user's connections in this room only (`seq: null`), sent at once."""
        return self.services.send_to_user(self.room, user_id, item_type, data)

    def schedule(self, key: str, at_ms: float, callback: TimerCallback) -> None:
        """Run `callback(now_ms)` at server time `at_ms`; the same key again moves the timer."""
        self.timers.schedule(key, at_ms, callback)

    def cancel(self, key: str) -> bool:
        return self.timers.cancel(key)


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


@dataclass(frozen=True, slots=True)
class QueryContext:
    room: str
    caller: Identity
    now_ms: float
    params: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """A read endpoint: `GET /api/rooms/{room}/<path>` (host or admin token); `{name}` parts
    of `path` arrive in `params` with the query string."""

    path: str
    handler: Callable[[QueryContext], Awaitable[Any]]
    summary: str = ""


class Plugin:
    """Base class of interaction plugins. Subclasses set `name`, `config_type`, `item_types`."""

    name: ClassVar[str]
    # A frozen dataclass with defaults: the plugin's `[plugins.NAME]` section.
    config_type: ClassVar[type[Any]]
    # Every item type this plugin publishes, `NAME.event` (documentation and checks).
    item_types: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any, host: PluginHost) -> None:
        self.config = config
        self.host = host

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return ()

    def queries(self) -> Sequence[QuerySpec]:
        return ()

    def snapshot(self, room: str) -> Mapping[str, Any] | None:
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

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
