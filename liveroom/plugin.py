"""The public plugin API: what an interaction declares, and the one context its handlers get.

Every built-in interaction (`liveroom.plugins.*`) is written against this module only.
A plugin declares its name, its typed config section, its commands (each with a typed
payload the core validates before the handler runs) and its per-room snapshot. A handler
receives a `CommandContext` and the decoded payload, and returns the ack's fields or
raises a `CommandError` with a code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from liveroom.auth import Identity
from liveroom.broker import Publication
from liveroom.clock import Clock
from liveroom.store import Store

__all__ = ["CommandContext", "CommandSpec", "Plugin", "PluginHost", "RoomServices"]

P = TypeVar("P")
Reply = Mapping[str, Any]


class RoomServices(Protocol):
    """What the node lets a plugin do to rooms (implemented by the node, never by plugins)."""

    async def publish(
        self, room: str, item_type: str, data: Any, *, priority: bool = False, history: bool = True
    ) -> Publication: ...

    def send_to_user(self, room: str, user_id: str, item_type: str, data: Any) -> int: ...

    def online(self, room: str) -> int: ...


@dataclass(frozen=True, slots=True)
class CommandContext:
    """Everything a command handler may touch."""

    room: str
    caller: Identity
    now_ms: float
    store: Store
    services: RoomServices

    @property
    def online(self) -> int:
        return self.services.online(self.room)

    async def publish(
        self, item_type: str, data: Any, *, priority: bool = False, history: bool = True
    ) -> Publication:
        """Publish an item to everyone in the room (the priority lane is flushed at once)."""
        return await self.services.publish(self.room, item_type, data, priority=priority, history=history)

    def send_to_caller(self, item_type: str, data: Any) -> int:
        """An item for the caller's connections in this room only (`seq: null`)."""
        return self.services.send_to_user(self.room, self.caller.user_id, item_type, data)


@dataclass(frozen=True, slots=True)
class CommandSpec(Generic[P]):
    """A command `NAME.verb`: its payload type (a frozen dataclass with a `room` field) and handler."""

    name: str
    payload: type[P]
    handler: Callable[[CommandContext, P], Awaitable[Reply]]
    # Hosts, moderators and admins only.
    staff_only: bool = False


@dataclass(frozen=True, slots=True)
class PluginHost:
    """What a plugin is given when the node builds it."""

    clock: Clock
    store: Store
    services: RoomServices


class Plugin:
    """Base class of interaction plugins. Subclasses set `name` and `config_type`."""

    name: ClassVar[str]
    # A frozen dataclass with defaults: the plugin's `[plugins.NAME]` section.
    config_type: ClassVar[type[Any]]

    def __init__(self, config: Any, host: PluginHost) -> None:
        self.config = config
        self.host = host

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return ()

    def snapshot(self, room: str) -> Mapping[str, Any] | None:
        """This plugin's state for `join`'s `state` (None: nothing to show)."""
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
