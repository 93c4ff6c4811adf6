"""The node's connections: who is connected, how they came and go, and closing them.

The Socket.IO servers call in here (connect, disconnect, each event, a transport gained or
lost); tests add connections directly (`add`, `liveroom.testing.NodeHarness`). A
connection leaves every room's delivery the moment it starts closing, whoever closes it
(see `liveroom.hub`), and its rooms' plugins hear of it when its disconnect runs, after
the commands it had queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from liveroom.auth import Identity, TokenAuthority
from liveroom.clock import Clock
from liveroom.config import Config
from liveroom.connection import Connection
from liveroom.dispatch import Dispatcher
from liveroom.engine_session import EngineSession
from liveroom.errors import CommandError, Unauthorized
from liveroom.frames import ws_close_frame
from liveroom.hub import Hub
from liveroom.metrics import Metrics
from liveroom.protocol import encode_item
from liveroom.ratelimit import TokenBucket
from liveroom.room import LocalRoom
from liveroom.sio import RefuseConnection, SocketServer

__all__ = ["Connections"]

log = logging.getLogger(__name__)


class Connections:
    def __init__(
        self,
        config: Config,
        clock: Clock,
        metrics: Metrics,
        authority: TokenAuthority,
        hub: Hub,
        dispatcher: Dispatcher,
        ready: Callable[[], bool],
    ) -> None:
        self._config = config
        self._clock = clock
        self._metrics = metrics
        self._authority = authority
        self._hub = hub
        self._dispatcher = dispatcher
        self._ready = ready
        self.by_sid: dict[str, Connection] = {}
        self._by_eio: dict[str, Connection] = {}
        # A user's connections (tabs, devices): personal items find them without a scan
        # of a 20,000-member room.
        self._by_user: dict[str, set[Connection]] = {}
        self._servers: dict[bool, SocketServer] = {}
        self.all_gone = asyncio.Event()

    def serve(self, server: SocketServer, msgpack: bool) -> None:
        """Take a Socket.IO server's connections (JSON, or msgpack at /socket.io-msgpack/)."""
        self._servers[msgpack] = server

        async def on_connect(sid: str, session: EngineSession, auth: Any = None) -> None:
            await self._on_connect(msgpack, sid, session, auth)

        server.on_connect = on_connect
        server.on_disconnect = self.remove
        server.command_handler = self.on_event
        server.on_transport = self._on_transport

    def __len__(self) -> int:
        return len(self.by_sid)

    def of_user(self, room: LocalRoom, user_id: str) -> list[Connection]:
        """The user's connections in the room."""
        return [c for c in self._by_user.get(user_id, ()) if c in room.members]

    # -- coming and going -------------------------------------------------------------

    def add(
        self,
        sid: str,
        eio_sid: str,
        identity: Identity,
        eio_socket: Any,
        transport: asyncio.Transport | None,
        msgpack: bool = False,
    ) -> Connection:
        limits = self._config.limits
        bucket = TokenBucket(limits.commands_per_s, limits.commands_burst, self._clock.monotonic())
        delivery = self._config.delivery
        connection = Connection(
            sid,
            eio_sid,
            identity,
            eio_socket,
            bucket,
            delivery.outbound_buffer_bytes,
            delivery.send_buffer_bytes,
            msgpack,
        )
        connection.transport = transport
        self.by_sid[sid] = connection
        self._by_eio[eio_sid] = connection
        self._by_user.setdefault(identity.user_id, set()).add(connection)
        self._metrics.connections.set(len(self.by_sid))
        return connection

    async def remove(self, sid: str, reason: Any = None) -> None:
        """The connection is gone (its disconnect, after its queued commands): it leaves its rooms."""
        connection = self.by_sid.pop(sid, None)
        if connection is None:
            return
        self.leaving(connection)
        self._by_eio.pop(connection.eio_sid, None)
        same_user = self._by_user.get(connection.identity.user_id)
        if same_user is not None:
            same_user.discard(connection)
            if not same_user:
                del self._by_user[connection.identity.user_id]
        self._metrics.connections.set(len(self.by_sid))
        if not self.by_sid:
            self.all_gone.set()
        await self._dispatcher.drop(connection)

    def leaving(self, connection: Connection) -> None:
        """From the moment a connection starts closing, whoever closes it: no room delivers
        to it any more (its rooms' plugins hear of it when the disconnect runs)."""
        connection.closing = True
        self._hub.detach(connection)

    def disconnect(self, connection: Connection, code: str, message: str) -> None:
        """Close a connection from the server side, telling the client the reason first."""
        if connection.closing:
            return
        self.leaving(connection)
        self._metrics.disconnects.labels(code).inc()
        item = encode_item(
            None, "system.disconnect", int(self._clock.now_ms()), {"code": code, "message": message}
        )
        farewell, _ = connection.frames_for(b"null", [item])
        server = self._servers[connection.msgpack]
        try:
            if not server.close_transport(connection.eio_sid, code, message, farewell):
                transport = connection.transport  # one no session owns (the test harness's)
                if transport is not None and not transport.is_closing():
                    transport.write(farewell + ws_close_frame(1008, code))
                    transport.close()
        except Exception:  # its transport is broken (the write failed): cut it
            log.info("connection %s: its transport failed while closing; aborted", connection.sid)
            if connection.transport is not None:
                connection.transport.abort()

    def drop(self, connection: Connection) -> None:
        """A write to the connection said no: too slow, or its transport failed."""
        if connection.drop_reason == "slow_consumer":
            self.disconnect(connection, "slow_consumer", "the connection fell too far behind")
        else:
            self.disconnect(connection, connection.drop_reason, "the connection failed")

    def close_all(self) -> None:
        for connection in list(self.by_sid.values()):
            self.disconnect(connection, "server_shutdown", "the server is shutting down; reconnect shortly")

    # -- the Socket.IO servers' hooks -------------------------------------------------

    async def on_event(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        connection = self.by_sid.get(sid)
        if connection is None:
            return {"ok": False, "error": {"code": "unauthorized", "message": "not connected"}}
        return await self._dispatcher.dispatch(connection, event, args)

    async def _on_connect(self, msgpack: bool, sid: str, session: EngineSession, auth: Any) -> None:
        if not self._ready():
            self._metrics.errors.labels("unavailable").inc()
            raise RefuseConnection(CommandError("the server is not accepting connections", "unavailable"))
        try:
            identity = self._authority.verify(auth.get("token") if isinstance(auth, dict) else None)
        except Unauthorized as error:
            self._metrics.errors.labels(error.code).inc()
            raise RefuseConnection(error) from None
        cap = self._config.limits.max_connections_per_user
        if cap and len(self._by_user.get(identity.user_id, ())) >= cap:
            self._metrics.errors.labels("too_many_connections").inc()
            raise RefuseConnection(
                CommandError(f"at most {cap} connections per user", "too_many_connections")
            )
        transport = session.transport if session.upgraded else None
        self.add(sid, session.eio_sid, identity, session, transport, msgpack)

    def _on_transport(self, eio_sid: str, transport: asyncio.Transport | None) -> None:
        connection = self._by_eio.get(eio_sid)
        if connection is None:
            return
        connection.transport = transport
        if transport is None and not connection.live:
            # The session is gone (a closed tab, a dropped network, a protocol error): the
            # disconnect runs after the commands it had queued, but delivery stops now.
            self.leaving(connection)
