"""The supervisor's end of the workers' IPC: one room bus, one store, one owner table.

Each worker connects to a Unix socket (`ipc_wire` frames) and uses what lives here through
`ipc_client`: the room bus (a `MemoryBroker`: one `seq` per room, the history, `once` keys),
the store (SQLite with this process its one writer, or memory), the rooms' owner leases
(`cluster.py`'s directory: a worker is to the supervisor what a node is to Redis), each
worker's inbox, and distinct-user presence. Guarantees:

* **One order, once per worker.** A publication is handed to every worker subscribed to its
  room as one frame written to each worker's stream, in the order `seq` was assigned: a
  stream keeps order, and a worker sees each publication once.
* **A worker that goes away drops out at once**: its subscriptions, its users in every
  room's count, and the rooms it owned (another worker takes them on their next use). A
  worker's socket closing is its death; there is no lease to wait out.
* Calls run as tasks, so one worker's slow store write does not hold up its other calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from liveroom.broker import Publication
from liveroom.errors import CommandError
from liveroom.ipc_wire import (
    ASK,
    CALL,
    INBOX,
    PUBLICATION,
    REPLY,
    FrameProtocol,
    frame,
    outcome_values,
    record_from,
    record_values,
    request_from,
)
from liveroom.memory_broker import MemoryBroker
from liveroom.store import Store

__all__ = ["IpcServer"]

log = logging.getLogger(__name__)
ASK_TIMEOUT_S = 5.0


class _Peer:
    """One connected worker."""

    def __init__(self, server: IpcServer) -> None:
        self.server = server
        self.node = ""
        self.index = -1
        self.ready = False
        self.rooms: set[str] = set()  # subscribed
        self.present: dict[str, set[str]] = {}  # room -> users through this worker
        self.protocol = FrameProtocol(self._on_message, self._on_lost)
        self._asks: dict[int, asyncio.Future[Any]] = {}
        self._ask_ids = itertools.count(1)

    def _on_message(self, message: list[Any]) -> None:
        if message[0] == CALL:
            _, call, op, args = message
            task = asyncio.get_running_loop().create_task(self._call(call, op, args))
            self.server.tasks.add(task)
            task.add_done_callback(self.server.tasks.discard)
        elif message[0] == REPLY:
            _, call, ok, value = message
            waiting = self._asks.pop(call, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(value if ok else None)

    async def _call(self, call: int, op: str, args: list[Any]) -> None:
        try:
            reply = [REPLY, call, True, await self.server.run(self, op, args)]
        except CommandError as error:
            reply = [REPLY, call, False, [error.code, error.message]]
        except Exception as exc:
            log.exception("workers: %s from worker %d failed", op, self.index)
            reply = [REPLY, call, False, ["internal_error", f"{type(exc).__name__}: {exc}"]]
        self.protocol.send(reply)

    async def ask(self, op: str, args: list[Any]) -> Any:
        """Ask the worker (None if it does not answer in time)."""
        call = next(self._ask_ids)
        waiting = self._asks[call] = asyncio.get_running_loop().create_future()
        if not self.protocol.send([ASK, call, op, args]):
            return None
        try:
            async with asyncio.timeout(ASK_TIMEOUT_S):
                return await waiting
        except TimeoutError:
            return None
        finally:
            self._asks.pop(call, None)

    def _on_lost(self) -> None:
        for waiting in self._asks.values():
            if not waiting.done():
                waiting.set_result(None)
        self.server.gone(self)


class IpcServer:
    """Serves workers on a Unix socket; see the module docstring."""

    def __init__(self, broker: MemoryBroker | None, store: Store | None, expected: int) -> None:
        self.broker = broker
        self.store = store
        self.expected = expected
        self.peers: set[_Peer] = set()
        self.by_node: dict[str, _Peer] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self._subscribers: dict[str, set[_Peer]] = {}
        self._users: dict[str, dict[str, int]] = {}  # room -> user -> through how many workers
        self._owners: dict[str, tuple[str, float]] = {}  # room -> (node, expires, monotonic s)
        self._server: asyncio.AbstractServer | None = None
        self.on_gone: Callable[[int], None] = lambda index: None
        self.on_ready: Callable[[], None] = lambda: None  # a worker said it is ready
        if broker is not None:
            broker.set_handler(self._fan_out)
        self._ops: dict[str, Callable[[_Peer, list[Any]], Awaitable[Any]]] = {
            name[4:]: getattr(self, name) for name in dir(self) if name.startswith("_op_")
        }

    async def start(self, path: Path) -> None:
        def made() -> FrameProtocol:
            peer = _Peer(self)
            self.peers.add(peer)
            return peer.protocol

        self._server = await asyncio.get_running_loop().create_unix_server(made, str(path))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for peer in list(self.peers):
            if peer.protocol.transport is not None:
                peer.protocol.transport.close()
        for task in list(self.tasks):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task

    @property
    def ready(self) -> int:
        return sum(1 for peer in self.peers if peer.ready)

    async def run(self, peer: _Peer, op: str, args: list[Any]) -> Any:
        handler = self._ops.get(op)
        if handler is not None:
            return await handler(peer, args)
        store = self.store
        if store is None:
            raise CommandError(f"no store here for {op!r}", "internal_error")
        return await _store_call(store, op, args)

    def gone(self, peer: _Peer) -> None:
        self.peers.discard(peer)
        if self.by_node.get(peer.node) is peer:
            del self.by_node[peer.node]
        for room in list(peer.rooms):
            self._unsubscribe(peer, room)
        for room, users in peer.present.items():
            self._presence(room, (), users)
        peer.present.clear()
        for room, (holder, _) in list(self._owners.items()):
            if holder == peer.node:
                del self._owners[room]
        if peer.index >= 0:
            self.on_gone(peer.index)

    # -- the bus ------------------------------------------------------------------------

    def _fan_out(self, publication: Publication) -> None:
        peers = self._subscribers.get(publication.room)
        if not peers:
            return
        p = publication
        data = frame([PUBLICATION, p.room, p.seq, p.ts, p.type, p.encoded, p.priority])
        for peer in peers:
            transport = peer.protocol.transport
            if transport is not None:
                transport.write(data)

    def _broker(self) -> MemoryBroker:
        if self.broker is None:
            raise CommandError("the room bus is not here (the broker is on Redis)", "internal_error")
        return self.broker

    async def _op_hello(self, peer: _Peer, args: list[Any]) -> None:
        peer.node, peer.index = args
        self.by_node[peer.node] = peer

    async def _op_ready(self, peer: _Peer, args: list[Any]) -> None:
        peer.ready = bool(args[0])
        self.on_ready()

    async def _op_readiness(self, peer: _Peer, args: list[Any]) -> list[int]:
        return [self.ready, self.expected]

    async def _op_subscribe(self, peer: _Peer, args: list[Any]) -> None:
        room = args[0]
        peers = self._subscribers.setdefault(room, set())
        if not peers:
            await self._broker().subscribe(room)
        peers.add(peer)
        peer.rooms.add(room)

    async def _op_unsubscribe(self, peer: _Peer, args: list[Any]) -> None:
        self._unsubscribe(peer, args[0])

    def _unsubscribe(self, peer: _Peer, room: str) -> None:
        peer.rooms.discard(room)
        peers = self._subscribers.get(room)
        if peers is None:
            return
        peers.discard(peer)
        if not peers:
            del self._subscribers[room]
            task = asyncio.get_running_loop().create_task(self._broker().unsubscribe(room))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _op_publish(self, peer: _Peer, args: list[Any]) -> list[Any]:
        room, item_type, data_json, priority, history, once = args
        p = await self._broker().publish(
            room, item_type, orjson.Fragment(data_json), priority=priority, history=history, once=once
        )
        return [p.seq, p.ts, p.encoded, p.repeated]

    async def _op_history(self, peer: _Peer, args: list[Any]) -> list[Any]:
        h = await self._broker().history(*args)
        items = [[p.seq, p.ts, p.type, p.encoded, p.priority] for p in h.items]
        return [h.epoch, h.latest, items, h.reset]

    async def _op_presence(self, peer: _Peer, args: list[Any]) -> dict[str, int]:
        totals: dict[str, int] = {}
        for room, (joined, left) in args[0].items():
            mine = peer.present.setdefault(room, set())
            came = [user for user in joined if user not in mine]
            went = [user for user in left if user in mine]
            mine.update(came)
            mine.difference_update(went)
            if not mine:
                del peer.present[room]
            totals[room] = self._presence(room, came, went)
        return totals

    async def _op_withdraw(self, peer: _Peer, args: list[Any]) -> None:
        for room, users in peer.present.items():
            self._presence(room, (), users)
        peer.present.clear()

    def _presence(self, room: str, came: Any, went: Any) -> int:
        counts = self._users.setdefault(room, {})
        for user in came:
            counts[user] = counts.get(user, 0) + 1
        for user in went:
            left = counts.get(user, 0) - 1
            if left > 0:
                counts[user] = left
            else:
                counts.pop(user, None)
        total = len(counts)
        if not counts:
            del self._users[room]
        return total

    # -- owners and inboxes (cluster.py's directory) ------------------------------------

    async def _op_owner(self, peer: _Peer, args: list[Any]) -> str | None:
        held = self._owners.get(args[0])
        if held is None or held[1] < time.monotonic():
            return None
        return held[0]

    async def _op_hold(self, peer: _Peer, args: list[Any]) -> bool:
        room, node, ttl_ms = args
        holder = await self._op_owner(peer, [room])
        if holder is not None and holder != node:
            return False
        self._owners[room] = (node, time.monotonic() + ttl_ms / 1000.0)
        return True

    async def _op_release(self, peer: _Peer, args: list[Any]) -> None:
        room, node = args
        held = self._owners.get(room)
        if held is not None and held[0] == node:
            del self._owners[room]

    async def _op_send(self, peer: _Peer, args: list[Any]) -> int:
        node, message = args
        target = self.by_node.get(node)
        return 1 if target is not None and target.protocol.send([INBOX, message]) else 0

    async def _op_listeners(self, peer: _Peer, args: list[Any]) -> int:
        return 1 if args[0] in self.by_node else 0

    async def _op_metrics(self, peer: _Peer, args: list[Any]) -> list[list[Any]]:
        """Every worker's own /metrics text, by worker index."""
        peers = sorted((p for p in self.peers if p.index >= 0), key=lambda p: p.index)
        texts = await asyncio.gather(*(p.ask("metrics", []) for p in peers))
        return [[p.index, text] for p, text in zip(peers, texts, strict=True) if text is not None]


async def _store_call(store: Store, op: str, args: list[Any]) -> Any:
    """A `Store` method by name, its values converted to and from the wire."""
    if op == "put_record":
        stored, created = await store.put_record(record_from(args[0]))
        return [record_values(stored), created]
    if op == "get_record":
        found = await store.get_record(*args)
        return None if found is None else record_values(found)
    if op == "list_records":
        return [record_values(r) for r in await store.list_records(*args)]
    if op == "take_stock":
        return outcome_values(await store.take_stock(request_from(args[0])))
    if op in _STORE_OPS:
        return await getattr(store, op)(*args)
    raise CommandError(f"unknown IPC call {op!r}", "internal_error")


_STORE_OPS = frozenset(
    {
        "incr",
        "get_counter",
        "set_counter",
        "set_awake",
        "awake_rooms",
        "hold_lease",
        "release_lease",
        "define_stock",
        "stock_remaining",
    }
)
