"""A liveroom node: config in, the running parts wired together, one start and one shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Coroutine
from typing import Any

import orjson

from liveroom.auth import Identity, TokenAuthority, resolve_secret
from liveroom.broker import Broker, Publication
from liveroom.clock import Clock, SystemClock
from liveroom.cluster import ClusterAuthority, RoomDirectory
from liveroom.config import Config
from liveroom.connections import Connections
from liveroom.discovery import load_plugins
from liveroom.dispatch import Dispatcher
from liveroom.errors import CommandError, ConfigError, Unavailable
from liveroom.hub import CONTROL_PREFIX, Hub
from liveroom.interactions import Interactions
from liveroom.memory_broker import MemoryBroker
from liveroom.metrics import Metrics
from liveroom.plugin import PluginHost, Signals
from liveroom.protocol import encode_item
from liveroom.publish_token import PublishTokens
from liveroom.renewal import Renewal
from liveroom.rooms import RoomHost
from liveroom.sio import PeerLimit, SocketServer
from liveroom.sqlite_store import EmbeddedStore
from liveroom.store import MemoryStore, Store
from liveroom.timers import Timers

__all__ = ["Node", "build_store"]

log = logging.getLogger(__name__)
# Control publications between nodes (see `Hub.on_control`).
TO_USER = CONTROL_PREFIX + "to"
REMOVE_USER = CONTROL_PREFIX + "remove"
NEW_OWNER = CONTROL_PREFIX + "owner"
STOP_BUDGET_S = 10.0  # below the tests' and process managers' wait after SIGTERM


class Node:
    """The composition root: builds the parts from config, starts and stops them, and serves
    plugins the `RoomServices` they use (publishing, personal items, members, removal)."""

    def __init__(
        self,
        config: Config,
        clock: Clock | None = None,
        *,
        store: Store | None = None,
        broker: Broker | None = None,
        directory: RoomDirectory | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.metrics = Metrics()
        self.authority = TokenAuthority.from_config(config.auth)
        self.store = store or build_store(config)
        self.broker = broker or _build_broker(config, self.clock)
        # On a cluster (the broker on Redis), or as one of a machine's workers (`directory`:
        # the supervisor's), a user may be connected through other nodes too.
        self.clustered = config.broker.kind == "redis" or directory is not None
        self.node_id: str = getattr(self.broker, "node_id", None) or secrets.token_hex(4)
        self._controls: set[asyncio.Task[Any]] = set()
        self.hub = Hub(
            self.broker,
            self.clock,
            self.metrics,
            config.delivery,
            config.room,
            lambda connection: self.connections.drop(connection),
            config.delivery.check_members,
            # Workers of one machine (the supervisor's broker): joins report presence at once.
            report_joins=directory is not None and config.broker.kind != "redis",
        )
        self.hub.on_control = self._on_control
        self.timers = Timers(self.clock)
        # Revocations go to the store too: every process and node refuses a revoked token.
        self.publish_tokens = tokens = PublishTokens(resolve_secret(config.auth), store=self.store)
        host = PluginHost(
            self.clock,
            self.store,
            self,
            self.timers,
            Signals(),
            tokens,
            throttled_writes_per_s=config.delivery.throttled_writes_per_s,
        )
        self.plugins, self.plugin_hosts = load_plugins(config.plugins, host)
        self.rooms = RoomHost(
            self.plugins, self.plugin_hosts, self.store, self.clock, self.timers, config.room.idle_release_s
        )
        self.interactions = Interactions(self.plugins, self.plugin_hosts, self.rooms, self.clock)
        # Where a room's interactions run: here, or on a cluster at the room's owner node.
        self.room_authority: Interactions | ClusterAuthority = self.interactions
        self.cluster: ClusterAuthority | None = None
        if self.clustered:
            if directory is None:  # redis is imported only here: an eighth of a start-up
                from liveroom.redis_client import connect_redis
                from liveroom.redis_directory import RedisDirectory

                directory = RedisDirectory(connect_redis(config.redis), config.redis.key_prefix)
            self.room_authority = self.cluster = ClusterAuthority(
                directory,
                self.store,
                self.interactions,
                self.rooms,
                self.node_id,
                lease_s=config.cluster.lease_s,
                forward_timeout_s=config.cluster.forward_timeout_s,
            )
            self.cluster.on_took = self._announce_new_owner
            self.cluster.local_rooms = lambda: list(self.hub.rooms)
        self.dispatcher = Dispatcher(self.hub, self.room_authority, self.clock, config.limits, self.metrics)
        self.connections = Connections(
            config, self.clock, self.metrics, self.authority, self.hub, self.dispatcher, lambda: self.ready
        )
        # JSON clients at /socket.io/; clients that agree on msgpack (socket.io-msgpack-parser,
        # python-socketio's serializer="msgpack") at /socket.io-msgpack/.
        peers = PeerLimit(config.limits.max_connections_per_ip)
        renewal = Renewal(
            self.authority,
            config.auth.refresh_grace_s,
            self.clock,
            self.connections.by_sid.get,
            self.connections.disconnect,
        )
        self.sio = self._socket_server(False, peers, renewal)
        self.msgpack_sio = self._socket_server(True, peers, renewal)
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = False

    def _socket_server(self, msgpack: bool, peers: PeerLimit, renewal: Renewal) -> SocketServer:
        server = SocketServer(self.config, msgpack, self.metrics, peers, renewal)
        self.connections.serve(server, msgpack)
        return server

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        """Start the backends and plugins, and load the rooms with something pending; no
        loop is started (a test drives ticks and timers itself)."""
        await self.store.start()
        await self.broker.start()
        for plugin in self.plugins:
            await plugin.start()
        if self.cluster is not None:
            await self.cluster.start()  # it takes the awake rooms no node owns
        else:
            await self.rooms.wake_marked()

    async def start(self) -> None:
        await self.open()
        self._tasks = [
            asyncio.create_task(self.hub.run(), name="liveroom-hub"),
            asyncio.create_task(self.timers.run(), name="liveroom-timers"),
            asyncio.create_task(self._sweep_rooms(), name="liveroom-rooms"),
        ]
        self.ready = True
        names = ", ".join(p.name for p in self.plugins)
        log.info("plugins loaded, in hook order: %s", names)

    async def _sweep_rooms(self) -> None:
        """Release idle rooms, a few times per idle period."""
        while True:
            await asyncio.sleep(max(0.05, min(self.config.room.idle_release_s / 4, 5.0)))
            self.rooms.sweep()

    async def close_connections(self) -> None:
        """Tell every client why, close its transport, and give handlers a moment to finish."""
        self.ready = False
        if self._tasks:
            self.hub.flush_all()  # what is pending and queued goes out before the goodbye
        self.connections.close_all()
        if len(self.connections):
            self.connections.all_gone.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.connections.all_gone.wait(), self.config.server.shutdown_grace_s)

    async def stop(self) -> None:
        """Wind down within `STOP_BUDGET_S` (whatever hangs, e.g. an unreachable Redis, is
        left to leases that run out), then close the store, which flushes durable writes."""
        self.ready = False
        try:
            async with asyncio.timeout(STOP_BUDGET_S):
                await self._wind_down()
        except TimeoutError:
            log.warning("node: stopping took over %.0f s; the rest is left to leases", STOP_BUDGET_S)
        await self.store.close()

    async def _wind_down(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for plugin in reversed(self.plugins):
            try:
                await plugin.stop()
            except Exception:
                log.exception("plugin %s failed to stop", plugin.name)
        if self.cluster is not None:
            await self.cluster.stop()  # its rooms are given up: another node takes them at once
        self.rooms.release_all()
        await self.rooms.settle()
        if self._controls:  # removals and personal items on their way to other nodes
            _, late = await asyncio.wait(self._controls, timeout=2.0)
            for task in late:  # the broker is unreachable: give up on them
                task.cancel()
        await self.sio.shutdown()
        await self.msgpack_sio.shutdown()
        with contextlib.suppress(Exception):  # unreachable: the node's lease runs out instead
            await asyncio.wait_for(self.broker.withdraw_presence(), 2.0)
        await self.broker.close()

    # -- RoomServices -------------------------------------------------------------------

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
        try:
            publication = await self.broker.publish(
                room, item_type, data, priority=priority, history=history, once=once
            )
        except Unavailable:
            # The shared broker is down (nothing was published): the room goes on for this
            # node's members, without a seq (the item is in no history). Commands that must
            # not lose data fail earlier, at the store, with `unavailable`. (An unknown
            # outcome, OutcomeUnknown, is not caught: the item may yet be published.)
            self.metrics.errors.labels("unavailable").inc()
            ts = int(self.clock.now_ms())
            encoded = encode_item(None, item_type, ts, data)
            publication = Publication(room, None, ts, item_type, encoded, priority)
            self.hub.deliver_local(publication)
        self.metrics.publications.labels(item_type).inc()
        return publication

    def send_to_user(self, room: str, user_id: str, item_type: str, data: Any) -> int:
        """The item to the user's connections in the room: this node's at once, and on a
        cluster every other node's through a control publication. Returns this node's count."""
        self._tell_other_nodes(room, TO_USER, user_id, item_type, data)
        return self._send_here(room, user_id, item_type, data)

    def _send_here(self, room: str, user_id: str, item_type: str, data: Any) -> int:
        local = self.hub.rooms.get(room)
        if local is None:
            return 0
        targets = self.connections.of_user(local, user_id)
        for connection in targets:
            self.hub.send_personal(connection, local, item_type, data)
        return len(targets)

    def _tell_other_nodes(self, room: str, control: str, user_id: str, item_type: str, data: Any) -> None:
        if not self.clustered:
            return
        body = {"node": self.node_id, "user": user_id, "type": item_type, "data": data}
        self._run_control(self._publish_control(room, control, body))

    async def _publish_control(self, room: str, control: str, body: dict[str, Any]) -> None:
        try:
            await self.broker.publish(room, control, body, history=False)
        except Exception:  # the broker is down: this node's connections had theirs
            log.warning(
                "room %s: %s for user %s could not reach the other nodes", room, control, body["user"]
            )

    def _announce_new_owner(self, room: str) -> None:
        """This node has just taken the room: every node (this one too) tells it who of the
        room is connected there, since a dead owner took the room's presence with it."""
        body = {"node": self.node_id, "user": "", "type": NEW_OWNER, "data": None}
        self._run_control(self._publish_control(room, NEW_OWNER, body))

    async def _tell_owner_who_is_here(self, room: str) -> None:
        local = self.hub.rooms.get(room)
        if local is None or self.cluster is None:
            return
        users = {c.identity.user_id: c.identity for c in local.members}
        if not users:
            return
        try:
            await self.cluster.readmit(room, list(users.values()))
        except CommandError as error:  # the owner moved again: the next one asks again
            log.warning("room %s: its members could not be told to its owner (%s)", room, error.code)

    def _run_control(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._controls.add(task)
        task.add_done_callback(self._controls.discard)

    def _on_control(self, publication: Publication) -> None:
        """A personal item or a removal published by another node for a user connected here,
        or a room's new owner asking who is here."""
        if publication.type == NEW_OWNER:
            self._run_control(self._tell_owner_who_is_here(publication.room))
            return
        try:
            body = orjson.loads(publication.encoded)["data"]
            if body["node"] == self.node_id:
                return  # ours: done here already
            user, item_type, data = str(body["user"]), str(body["type"]), body["data"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning(
                "room %s: a malformed control item %s was ignored", publication.room, publication.type
            )
            return
        if publication.type == TO_USER:
            self._send_here(publication.room, user, item_type, data)
        elif publication.type == REMOVE_USER:
            self._run_control(self._remove_here(publication.room, user, item_type, data))

    def online(self, room: str) -> int:
        local = self.hub.rooms.get(room)
        return 0 if local is None else local.online_everywhere

    async def remove_user(self, room: str, user_id: str, item_type: str, data: Any) -> int:
        """Tell the user's connections in the room why, and take them out of it: this node's
        now, every other node's through a control publication. Returns this node's count."""
        self._tell_other_nodes(room, REMOVE_USER, user_id, item_type, data)
        return await self._remove_here(room, user_id, item_type, data)

    async def _remove_here(self, room: str, user_id: str, item_type: str, data: Any) -> int:
        local = self.hub.rooms.get(room)
        targets = [] if local is None else self.connections.of_user(local, user_id)
        self._send_here(room, user_id, item_type, data)
        for connection in targets:
            await self.dispatcher.leave(connection, room)
        return len(targets)

    def members(self, room: str) -> list[Identity]:
        return self.rooms.members(room)


def build_store(config: Config) -> Store:
    kind = config.store.kind
    if kind == "embedded":
        return EmbeddedStore(config.store.sqlite_path, config.store.sqlite_synchronous)
    if kind == "memory":
        return MemoryStore()
    if kind == "redis":
        from liveroom.redis_client import connect_redis
        from liveroom.redis_store import RedisStore

        return RedisStore(connect_redis(config.redis.url, config.redis.cluster), config.redis.key_prefix)
    raise ConfigError(f"[store] kind must be 'embedded', 'memory' or 'redis', not {kind!r}")


def _build_broker(config: Config, clock: Clock) -> Broker:
    room = config.room
    if config.broker.kind == "memory":
        return MemoryBroker(clock, room.history_count, room.history_age_s)
    if config.broker.kind == "redis":
        from liveroom.redis_broker import RedisBroker
        from liveroom.redis_client import connect_redis

        redis = connect_redis(config.redis.url, config.redis.cluster)
        return RedisBroker(
            redis,
            clock,
            room.history_count,
            room.history_age_s,
            prefix=config.redis.key_prefix,
            meta_ttl_s=config.redis.meta_ttl_s,
            presence_ttl_s=config.redis.presence_ttl_s,
        )
    raise ConfigError(f"[broker] kind must be 'memory' or 'redis', not {config.broker.kind!r}")
