"""A worker's end of the IPC: the `Broker`, the `Store` and the room directory over one
Unix socket to the supervisor (`ipc_server`).

`IpcChannel` is the connection: calls with answers, publications and inbox messages pushed
in order, and the supervisor's own questions (`/metrics`). Honest failures, as on Redis: a
call made while the supervisor is unreachable did nothing (`Unavailable`); one whose answer
never came may have run (`OutcomeUnknown`). A worker whose supervisor went away stops
(`on_lost`): everything it shared lived there.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson

from liveroom.broker import HistorySlice, PresenceReport, Publication, PublicationHandler
from liveroom.errors import OutcomeUnknown, Unavailable
from liveroom.ipc_wire import (
    ASK,
    CALL,
    INBOX,
    PUBLICATION,
    REPLY,
    FrameProtocol,
    error_from,
    outcome_from,
    record_from,
    record_values,
    request_values,
)
from liveroom.pending_calls import PendingCalls
from liveroom.record import Record
from liveroom.stock import StockOutcome, StockRequest

__all__ = ["IpcBroker", "IpcChannel", "IpcDirectory", "IpcStore"]

Answer = Callable[[list[Any]], Awaitable[Any]]


class IpcChannel:
    def __init__(self, path: Path | str, index: int, node_id: str | None = None) -> None:
        self.path = str(path)
        self.index = index
        self.node_id = node_id or f"w{index}-{secrets.token_hex(4)}"
        self.protocol = FrameProtocol(self._on_message, self._on_lost)
        self._calls = PendingCalls()
        self.on_publication: Callable[[list[Any]], None] = lambda message: None
        self.on_inbox: Callable[[bytes], None] = lambda message: None
        self.on_lost: Callable[[], None] = lambda: None
        self.answers: dict[str, Answer] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def connect(self) -> None:
        await asyncio.get_running_loop().create_unix_connection(lambda: self.protocol, self.path)
        await self.call("hello", self.node_id, self.index)

    def close(self) -> None:
        if self.protocol.transport is not None:
            self.protocol.transport.close()

    async def call(self, op: str, *args: Any) -> Any:
        with self._calls.call() as (call, waiting):
            if not self.protocol.send([CALL, call, op, list(args)]):
                raise Unavailable("the workers' supervisor is unreachable")
            return await waiting

    def _on_message(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == PUBLICATION:
            self.on_publication(message)
        elif kind == REPLY:
            _, call, ok, value = message
            self._calls.settle(call, ok, value, error_from)
        elif kind == INBOX:
            self.on_inbox(message[1])
        elif kind == ASK:
            task = asyncio.get_running_loop().create_task(self._answer(*message[1:]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, call: int, op: str, args: list[Any]) -> None:
        answer = self.answers.get(op)
        try:
            value = None if answer is None else await answer(args)
            self.protocol.send([REPLY, call, answer is not None, value])
        except Exception as exc:
            self.protocol.send([REPLY, call, False, ["internal_error", str(exc)]])

    def _on_lost(self) -> None:
        self._calls.fail_all(OutcomeUnknown("the workers' supervisor went away mid-call"))
        self.on_lost()


def _publication(room: str, values: list[Any]) -> Publication:
    seq, ts, item_type, encoded, priority = values
    return Publication(room, seq, ts, item_type, encoded, priority)


class IpcBroker:
    """`Broker` over the supervisor's room bus (one `seq` and history per room for every worker)."""

    def __init__(self, channel: IpcChannel) -> None:
        self._channel = channel
        self.node_id = channel.node_id
        self._handler: PublicationHandler | None = None
        self._subscribed: set[str] = set()
        channel.on_publication = self._receive

    def set_handler(self, handler: PublicationHandler) -> None:
        self._handler = handler

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._subscribed.clear()

    async def subscribe(self, room: str) -> None:
        if room not in self._subscribed:
            await self._channel.call("subscribe", room)
            self._subscribed.add(room)

    async def unsubscribe(self, room: str) -> None:
        if room in self._subscribed:
            self._subscribed.discard(room)
            await self._channel.call("unsubscribe", room)

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
        args = (room, item_type, orjson.dumps(data), priority, history, once)
        seq, ts, encoded, repeated = await self._channel.call("publish", *args)
        return Publication(room, seq, ts, item_type, encoded, priority, repeated)

    async def history(self, room: str, since: int | None, epoch: str | None = None) -> HistorySlice:
        current, latest, items, reset = await self._channel.call("history", room, since, epoch)
        return HistorySlice(current, latest, [_publication(room, values) for values in items], reset)

    async def report_presence(self, reports: dict[str, PresenceReport]) -> dict[str, int]:
        body = {room: [list(r.joined), list(r.left)] for room, r in reports.items()}
        totals: dict[str, int] = await self._channel.call("presence", body)
        return totals

    async def withdraw_presence(self) -> None:
        await self._channel.call("withdraw")

    def _receive(self, message: list[Any]) -> None:
        room = message[1]
        if self._handler is not None and room in self._subscribed:
            self._handler(_publication(room, message[2:]))


class IpcStore:
    """`Store` over the supervisor's store (SQLite's one writer, or memory)."""

    def __init__(self, channel: IpcChannel) -> None:
        self._call = channel.call

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def incr(self, key: str, by: int = 1) -> int:
        value: int = await self._call("incr", key, by)
        return value

    async def get_counter(self, key: str) -> int:
        value: int = await self._call("get_counter", key)
        return value

    async def set_counter(self, key: str, value: int) -> None:
        await self._call("set_counter", key, value)

    async def set_awake(self, room: str, awake: bool) -> None:
        await self._call("set_awake", room, awake)

    async def awake_rooms(self) -> list[str]:
        rooms: list[str] = await self._call("awake_rooms")
        return rooms

    async def hold_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        return bool(await self._call("hold_lease", name, holder, ttl_ms))

    async def release_lease(self, name: str, holder: str) -> None:
        await self._call("release_lease", name, holder)

    async def put_record(self, record: Record) -> tuple[Record, bool]:
        stored, created = await self._call("put_record", record_values(record))
        return record_from(stored), bool(created)

    async def get_record(self, kind: str, key: str) -> Record | None:
        found = await self._call("get_record", kind, key)
        return None if found is None else record_from(found)

    async def list_records(
        self, kind: str, room: str | None, after: int = 0, limit: int = 100
    ) -> list[Record]:
        return [record_from(values) for values in await self._call("list_records", kind, room, after, limit)]

    async def define_stock(
        self, pool: str, room: str, total: int, per_user_limit: int, order_kind: str, created_ms: int
    ) -> None:
        await self._call("define_stock", pool, room, total, per_user_limit, order_kind, created_ms)

    async def take_stock(self, request: StockRequest) -> StockOutcome:
        return outcome_from(await self._call("take_stock", request_values(request)))

    async def stock_remaining(self, pool: str) -> int | None:
        remaining: int | None = await self._call("stock_remaining", pool)
        return remaining


class IpcDirectory:
    """`cluster.RoomDirectory` over the supervisor: room owner leases and worker inboxes."""

    def __init__(self, channel: IpcChannel) -> None:
        self._channel = channel

    async def owner(self, room: str) -> str | None:
        found: str | None = await self._channel.call("owner", room)
        return found

    async def hold(self, room: str, node: str, ttl_ms: int) -> bool:
        return bool(await self._channel.call("hold", room, node, ttl_ms))

    async def release(self, room: str, node: str) -> None:
        await self._channel.call("release", room, node)

    async def send(self, node: str, message: bytes) -> int:
        heard: int = await self._channel.call("send", node, message)
        return heard

    async def listeners(self, node: str) -> int:
        count: int = await self._channel.call("listeners", node)
        return count

    async def listen(self, node: str, handler: Callable[[bytes], Coroutine[Any, Any, None]]) -> None:
        def receive(message: bytes) -> None:
            task = asyncio.get_running_loop().create_task(handler(message))
            self._channel._tasks.add(task)
            task.add_done_callback(self._channel._tasks.discard)

        self._channel.on_inbox = receive

    async def close(self) -> None:
        return None
