"""The live dashboard: the room's figures, pushed to its staff members only, once a second.

While a room has members it is sampled every `interval_ms` (its online count, for the
peak). While a host, moderator or admin is among them, every plugin's
`figures(room, now_ms)` is gathered too and sent to those staff members alone as a
personal item, `dashboard.stats` (`seq: null`): viewers never receive it. The same
figures answer `GET /api/rooms/{room}/dashboard`. See docs/plugins.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from liveroom.auth import Identity
from liveroom.plugin import CommandContext, Plugin, PluginHost, QueryContext, QuerySpec, RoomContext

from .dashboard_rules import RoomWatch, conversion

__all__ = ["DashboardConfig", "DashboardPlugin"]

log = logging.getLogger(__name__)
STATS = "dashboard.stats"


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    interval_ms: int = 1000  # dashboard.stats at most this often (at least 200)
    first_after_ms: int = 100  # a staff member who joins gets the figures this soon
    max_viewers: int = 1_000_000  # distinct viewers remembered per room


class DashboardPlugin(Plugin):
    name = "dashboard"
    config_type = DashboardConfig
    item_types = (STATS,)
    config: DashboardConfig

    def __init__(self, config: DashboardConfig, host: PluginHost) -> None:
        if config.interval_ms < 200:
            raise ValueError("[plugins.dashboard] interval_ms must be at least 200")
        super().__init__(config, host)
        self._rooms: dict[str, RoomWatch] = {}

    def queries(self) -> Sequence[QuerySpec]:
        return (QuerySpec("dashboard", self.query, "The live dashboard's figures (as in dashboard.stats)"),)

    async def load_room(self, ctx: RoomContext) -> None:
        self._rooms[ctx.room] = RoomWatch(self.config.max_viewers)

    def release_room(self, room: str) -> None:
        self._rooms.pop(room, None)

    async def on_join(self, ctx: CommandContext) -> Mapping[str, Any] | None:
        watch = self._rooms[ctx.room]
        watch.joined(ctx.caller.user_id, ctx.caller.is_staff)
        if ctx.caller.is_staff:  # a dashboard just opened: its first figures come soon
            self._tick_at(ctx.room, ctx.now_ms + self.config.first_after_ms)
        elif not watch.ticking:
            self._tick_at(ctx.room, ctx.now_ms + self.config.interval_ms)
        return None

    async def on_leave(self, room: str, user: Identity, now_ms: float) -> None:
        watch = self._rooms.get(room)
        if watch is not None:
            watch.left(user.user_id)

    async def query(self, query: QueryContext) -> Any:
        return await self.stats(query.room, query.now_ms)

    async def stats(self, room: str, now_ms: float) -> dict[str, Any]:
        """The room's figures: online now and peak, viewers, conversion, and each plugin's own."""
        watch = self._rooms[room]
        watch.sample(self.host.services.online(room), now_ms)
        await self._count_viewers(room, watch)
        figures: dict[str, Any] = {}
        for plugin in self.host.plugins:
            if plugin is self:
                continue
            try:
                found = await plugin.figures(room, now_ms)
            except Exception:  # one plugin's failure leaves the others' figures
                log.exception("plugin %s failed to give figures for room %s", plugin.name, room)
                continue
            if found is not None:
                figures[plugin.name] = found
        buyers = int(figures.get("sale", {}).get("buyers", 0))
        wire = watch.wire()
        return {
            "room": room,
            "at": now_ms,
            **wire,
            "conversion": conversion(buyers, wire["viewers"]),
            "figures": figures,
        }

    async def _count_viewers(self, room: str, watch: RoomWatch) -> None:
        """The room's distinct viewers across nodes: each node adds those new to it."""
        key, new = f"dashboard:viewers:{room}", watch.take_new_viewers()
        store = self.host.store
        watch.viewers_everywhere = await (store.incr(key, new) if new else store.get_counter(key))

    def _tick_at(self, room: str, at_ms: float) -> None:
        self._rooms[room].ticking = True
        tick = self._tick
        self.host.timers.schedule(
            f"dashboard:{room}", at_ms, lambda now_ms: tick(room, now_ms), room=room, wake=False
        )

    async def _tick(self, room: str, now_ms: float) -> None:
        watch = self._rooms.get(room)
        if watch is None:
            return
        online = self.host.services.online(room)
        # A join's on_join runs before its membership is made (a shared broker's subscribe
        # can take longer than first_after_ms): a staff member or a new viewer seen on
        # join keeps the sampling going until they are in, or have left.
        idle = online == 0 and not self.host.services.members(room)
        if idle and not watch.watchers and not watch.new_viewers:
            watch.ticking = False  # nobody here: the next join starts the sampling again
            return
        self._tick_at(room, now_ms + self.config.interval_ms)
        if not watch.watchers:
            watch.sample(online, now_ms)  # still keep the peak for when a host looks...
            if watch.new_viewers:  # ...and count this node's viewers for one on another node
                await self._count_viewers(room, watch)
            return
        data = await self.stats(room, now_ms)
        for user in list(watch.watchers):
            self.host.services.send_to_user(room, user, STATS, data)
