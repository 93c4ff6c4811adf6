"""A liveroom node: config in, the running parts wired together, one start and one shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

from liveroom.auth import Identity, TokenAuthority, resolve_secret
from liveroom.broker import Broker, Publication
from liveroom.clock import Clock, SystemClock
from liveroom.config import Config
from liveroom.connection import Connection
from liveroom.discovery import load_plugins
from liveroom.dispatch import Dispatcher
from liveroom.engine_session import EngineSession
from liveroom.errors import CommandError, ConfigError, Unauthorized, Unavailable
from liveroom.hub import Hub
from liveroom.memory_broker import MemoryBroker
from liveroom.metrics import Metrics
from liveroom.plugin import PluginHost, Signals
from liveroom.protocol import encode_item
from liveroom.publish_token import PublishTokens
from liveroom.ratelimit import TokenBucket
from liveroom.renewal import Renewal
from liveroom.room import LocalRoom
from liveroom.sio import PeerLimit, RefuseConnection, SocketServer
from liveroom.sqlite_store import EmbeddedStore
from liveroom.store import MemoryStore, Store
from liveroom.timers import Timers

__all__ = ["Node"]

log = logging.getLogger(__name__)


class Node:
    """Implements `RoomServices` for plugins; owns the socket server, hub, broker and store."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.metrics = Metrics()
        self.authority = TokenAuthority.from_config(config.auth)
        self.store = _build_store(config)
        self.broker = _build_broker(config, self.clock)
        # JSON clients at /socket.io/; clients that agree on msgpack (socket.io-msgpack-parser,
        # python-socketio's serializer="msgpack") at /socket.io-msgpack/.
        peers = PeerLimit(config.limits.max_connections_per_ip)
        self.connections: dict[str, Connection] = {}
        renewal = Renewal(
            self.authority, config.auth.refresh_grace_s, self.clock, self.connections.get, self.disconnect
        )
        self.sio = self._socket_server(msgpack=False, peers=peers, renewal=renewal)
        self.msgpack_sio = self._socket_server(msgpack=True, peers=peers, renewal=renewal)
        self.hub = Hub(
            self.broker,
            self.clock,
            self.metrics,
            config.delivery,
            config.room,
            self._drop,
            config.delivery.check_members,
        )
        self.timers = Timers(self.clock)
        tokens = PublishTokens(resolve_secret(config.auth))
        host = PluginHost(self.clock, self.store, self, self.timers, Signals(), tokens)
        self.plugins = load_plugins(config.plugins, host)
        self.dispatcher = Dispatcher(
            self.hub, self.plugins, self, self.store, self.clock, config.limits, self.metrics, self.timers
        )
        self._by_eio: dict[str, Connection] = {}
        # A user's connections (tabs, devices): personal items find them without a scan
        # of a 20,000-member room.
        self._by_user: dict[str, set[Connection]] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._timer_task: asyncio.Task[None] | None = None
        self._all_gone = asyncio.Event()
        self.ready = False

    def _socket_server(self, msgpack: bool, peers: PeerLimit, renewal: Renewal) -> SocketServer:
        server = SocketServer(self.config, msgpack, self.metrics, peers, renewal)
        server.on_connect = functools.partial(self._on_connect, server, msgpack)
        server.on_disconnect = self._on_disconnect
        server.command_handler = self._on_event
        server.on_transport = self._on_transport
        return server

    def server_of(self, connection: Connection) -> SocketServer:
        return self.msgpack_sio if connection.msgpack else self.sio

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.start()
        await self.broker.start()
        for plugin in self.plugins:
            await plugin.start()
        self._ticker = asyncio.create_task(self.hub.run(), name="liveroom-hub")
        self._timer_task = asyncio.create_task(self.timers.run(), name="liveroom-timers")
        self.ready = True

    async def close_connections(self) -> None:
        """Tell every client why, close its transport, and give handlers a moment to finish."""
        self.ready = False
        if self._ticker is not None:
            self.hub.flush_all()  # what is pending and queued goes out before the goodbye
        for connection in list(self.connections.values()):
            self.disconnect(connection, "server_shutdown", "the server is shutting down; reconnect shortly")
        if self.connections:
            self._all_gone.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_gone.wait(), self.config.server.shutdown_grace_s)

    async def stop(self) -> None:
        self.ready = False
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._timer_task is not None:
            self._timer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer_task
            self._timer_task = None
        for plugin in reversed(self.plugins):
            try:
                await plugin.stop()
            except Exception:
                log.exception("plugin %s failed to stop", plugin.name)
        await self.sio.shutdown()
        await self.msgpack_sio.shutdown()
        await self.broker.close()
        await self.store.close()  # flushes pending durable writes

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
        local = self.hub.rooms.get(room)
        if local is None:
            return 0
        targets = self._in_room(local, user_id)
        for connection in targets:
            self.hub.send_personal(connection, local, item_type, data)
        return len(targets)

    def _in_room(self, local: LocalRoom, user_id: str) -> list[Connection]:
        return [c for c in self._by_user.get(user_id, ()) if c in local.members]

    def online(self, room: str) -> int:
        local = self.hub.rooms.get(room)
        return 0 if local is None else local.online_everywhere

    async def remove_user(self, room: str, user_id: str, item_type: str, data: Any) -> int:
        local = self.hub.rooms.get(room)
        targets = [] if local is None else self._in_room(local, user_id)
        self.send_to_user(room, user_id, item_type, data)
        for connection in targets:
            await self.dispatcher.leave(connection, room)
        return len(targets)

    def members(self, room: str) -> list[Identity]:
        local = self.hub.rooms.get(room)
        if local is None:
            return []
        return list({c.identity.user_id: c.identity for c in local.members}.values())

    # -- connections --------------------------------------------------------------------

    def disconnect(self, connection: Connection, code: str, message: str) -> None:
        """Close a connection from the server side, telling the client the reason first."""
        if connection.closing:
            return
        self._leaving(connection)
        self.metrics.disconnects.labels(code).inc()
        item = encode_item(
            None, "system.disconnect", int(self.clock.now_ms()), {"code": code, "message": message}
        )
        farewell, _ = connection.frames_for(b"null", [item])
        self.server_of(connection).close_transport(connection.eio_sid, code, message, farewell)

    def _drop(self, connection: Connection) -> None:
        """A write to the connection said no: too slow, or its transport failed."""
        if connection.drop_reason == "slow_consumer":
            self.disconnect(connection, "slow_consumer", "the connection fell too far behind")
        else:
            self.disconnect(connection, connection.drop_reason, "the connection failed")

    def _leaving(self, connection: Connection) -> None:
        """From the moment a connection starts closing, whoever closes it: no room delivers
        to it any more (its rooms' plugins hear of it when the disconnect runs)."""
        connection.closing = True
        self.hub.detach(connection)

    async def _on_connect(
        self, server: SocketServer, msgpack: bool, sid: str, session: EngineSession, auth: Any = None
    ) -> None:
        if not self.ready:
            self.metrics.errors.labels("unavailable").inc()
            raise RefuseConnection(CommandError("the server is not accepting connections", "unavailable"))
        try:
            identity = self.authority.verify(auth.get("token") if isinstance(auth, dict) else None)
        except Unauthorized as error:
            self.metrics.errors.labels(error.code).inc()
            raise RefuseConnection(error) from None
        limits = self.config.limits
        cap = limits.max_connections_per_user
        if cap and len(self._by_user.get(identity.user_id, ())) >= cap:
            self.metrics.errors.labels("too_many_connections").inc()
            message = f"at most {cap} connections per user"
            raise RefuseConnection(CommandError(message, "too_many_connections"))
        eio_sid = session.eio_sid
        bucket = TokenBucket(limits.commands_per_s, limits.commands_burst, self.clock.monotonic())
        connection = Connection(
            sid,
            eio_sid,
            identity,
            session,
            bucket,
            self.config.delivery.outbound_buffer_bytes,
            self.config.delivery.send_buffer_bytes,
            msgpack,
        )
        connection.transport = session.transport if session.upgraded else None
        self.connections[sid] = connection
        self._by_eio[eio_sid] = connection
        self._by_user.setdefault(identity.user_id, set()).add(connection)
        self.metrics.connections.set(len(self.connections))

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        connection = self.connections.pop(sid, None)
        if connection is None:
            return
        self._leaving(connection)
        self._by_eio.pop(connection.eio_sid, None)
        same_user = self._by_user.get(connection.identity.user_id)
        if same_user is not None:
            same_user.discard(connection)
            if not same_user:
                del self._by_user[connection.identity.user_id]
        self.metrics.connections.set(len(self.connections))
        if not self.connections:
            self._all_gone.set()
        await self.dispatcher.drop(connection)

    async def _on_event(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        connection = self.connections.get(sid)
        if connection is None:
            return {"ok": False, "error": {"code": "unauthorized", "message": "not connected"}}
        return await self.dispatcher.dispatch(connection, event, args)

    def _on_transport(self, eio_sid: str, transport: asyncio.Transport | None) -> None:
        connection = self._by_eio.get(eio_sid)
        if connection is None:
            return
        connection.transport = transport
        if transport is None and not connection.live:
            # The session is gone (a closed tab, a dropped network, a protocol error): the
            # disconnect runs after the commands it had queued, but delivery stops now.
            self._leaving(connection)


def _build_store(config: Config) -> Store:
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
