"""Testing liveroom and its plugins: a real node without sockets, on a clock that moves when told.

`NodeHarness` runs a real `Node` (its hub, dispatcher, rooms, plugins and timers) over the
memory broker and a store, with connections whose transports keep the bytes written to
them. Nothing of the node is replaced: only the network is missing, and time is a
`FakeClock`. Third-party plugin authors use it from their own package::

    from liveroom.testing import NodeHarness

    async def test_my_plugin() -> None:
        async with NodeHarness(plugins={"mine": {"load": "my_pkg:MyPlugin"}}) as h:
            host = await h.connect("h1", role="host")
            await host.join("r1")
            ack = await host.command("mine.start", {"room": "r1"})
            assert ack["ok"], ack
            await h.advance(30)           # seconds: timers fire, idle rooms are released
            assert host.of_type("mine.done")
            await h.restart()             # a new node over the same durable store

`FaultyStore` wraps a real store and fails the writes it is told to: the durability
contract's tests (`liveroom.testing_conformance`) are written with it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import struct
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import msgpack
import orjson

from liveroom.auth import Identity, Role
from liveroom.config import AuthConfig, Config, StoreConfig
from liveroom.errors import OutcomeUnknown, Unavailable
from liveroom.record import Record
from liveroom.stock import StockOutcome, StockRequest
from liveroom.store import MemoryStore, Store

if TYPE_CHECKING:
    from liveroom.node import Node

__all__ = ["CapturingTransport", "FakeClock", "FaultyStore", "HarnessConnection", "NodeHarness"]

Failure = Literal["unavailable", "unknown_done", "unknown_lost"]


class FakeClock:
    """Implements `liveroom.clock.Clock`. Starts at a fixed wall time; `advance` moves both clocks."""

    def __init__(self, now_ms: float = 1_700_000_000_000.0, monotonic: float = 1000.0) -> None:
        self._now_ms = now_ms
        self._monotonic = monotonic

    def now_ms(self) -> float:
        return self._now_ms

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not go back")
        self._now_ms += seconds * 1000.0
        self._monotonic += seconds


class FaultyStore:
    """A real store (a `MemoryStore` unless given one) whose next writes can be made to fail.

    `fail_next_write(how)`: `"unavailable"`, nothing written; `"unknown_lost"`, nothing
    written but the caller is told `outcome_unknown`; `"unknown_done"`, written, and the
    caller told `outcome_unknown` all the same (the answer lost on the way back).
    `hold_writes()` makes writes wait (a slow store: a command runs past its timeout) until
    `release_writes()`. `writes` counts the writes a plugin made (records, counters, stock)."""

    def __init__(self, inner: Store | None = None) -> None:
        self.inner: Store = inner if inner is not None else MemoryStore()
        self.writes = 0
        self._failures: list[tuple[int, Failure]] = []  # (write number, how)
        self._open = asyncio.Event()
        self._open.set()

    def hold_writes(self) -> None:
        self._open.clear()

    def release_writes(self) -> None:
        self._open.set()

    def fail_next_write(self, how: Failure = "unavailable") -> None:
        self.fail_write(self.writes + 1, how)

    def fail_write(self, number: int, how: Failure = "unavailable") -> None:
        """Fail the `number`th write counted from the store's creation."""
        self._failures.append((number, how))

    async def _write(self, work: Any) -> Any:
        self.writes += 1
        if not self._open.is_set():
            try:
                await self._open.wait()
            except BaseException:
                work.close()  # the caller gave up before the write began: never run
                raise
        how = next((h for n, h in self._failures if n == self.writes), None)
        if how is None:
            return await work
        if how == "unknown_done":
            await work
            raise OutcomeUnknown("the store did not answer in time (a test's failure)")
        work.close()  # never run
        if how == "unknown_lost":
            raise OutcomeUnknown("the store did not answer in time (a test's failure)")
        raise Unavailable("the store is unreachable (a test's failure)")

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def incr(self, key: str, by: int = 1) -> int:
        result: int = await self._write(self.inner.incr(key, by))
        return result

    async def get_counter(self, key: str) -> int:
        return await self.inner.get_counter(key)

    async def set_counter(self, key: str, value: int) -> None:
        await self._write(self.inner.set_counter(key, value))

    async def set_awake(self, room: str, awake: bool) -> None:
        await self.inner.set_awake(room, awake)

    async def awake_rooms(self) -> list[str]:
        return await self.inner.awake_rooms()

    async def hold_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        return await self.inner.hold_lease(name, holder, ttl_ms)

    async def release_lease(self, name: str, holder: str) -> None:
        await self.inner.release_lease(name, holder)

    async def put_record(self, record: Record) -> tuple[Record, bool]:
        result: tuple[Record, bool] = await self._write(self.inner.put_record(record))
        return result

    async def get_record(self, kind: str, key: str) -> Record | None:
        return await self.inner.get_record(kind, key)

    async def list_records(
        self, kind: str, room: str | None, after: int = 0, limit: int = 100
    ) -> list[Record]:
        return await self.inner.list_records(kind, room, after, limit)

    async def define_stock(
        self, pool: str, room: str, total: int, per_user_limit: int, order_kind: str, created_ms: int
    ) -> None:
        await self._write(self.inner.define_stock(pool, room, total, per_user_limit, order_kind, created_ms))

    async def take_stock(self, request: StockRequest) -> StockOutcome:
        result: StockOutcome = await self._write(self.inner.take_stock(request))
        return result

    async def stock_remaining(self, pool: str) -> int | None:
        return await self.inner.stock_remaining(pool)


class CapturingTransport(asyncio.Transport):
    """A transport that keeps what is written to it (WebSocket frames, as a socket would get)."""

    def __init__(self, on_close: Any) -> None:
        super().__init__()
        self.written = bytearray()
        self._closing = False
        self._on_close = on_close
        self.fail_writes = False  # a broken socket: every write raises

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.fail_writes:
            raise ConnectionResetError("the test broke this transport")
        self.written += data

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._lose()

    def abort(self) -> None:
        self._lose()

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def cut(self) -> None:
        """Closed without anyone hearing of it (the process holding it died)."""
        self._closing = True

    def _lose(self) -> None:
        if not self._closing:
            self._closing = True
            asyncio.get_running_loop().call_soon(self._on_close)


class _WebSocketSession:
    """What a connection's Engine.IO socket says of itself: a WebSocket, open."""

    upgraded = True
    closed = False
    polling = False


class HarnessConnection:
    """One client of the harness: send commands, read what the node wrote to it."""

    def __init__(
        self, harness: NodeHarness, sid: str, identity: Identity, transport: CapturingTransport
    ) -> None:
        self.harness = harness
        self.sid = sid
        self.identity = identity
        self.transport = transport
        self._read = 0
        self._batches: list[dict[str, Any]] = []
        self._closed_with: tuple[int, str] | None = None

    @property
    def user(self) -> str:
        return self.identity.user_id

    async def command(self, name: str, payload: Any) -> dict[str, Any]:
        """Send one command, as a socket would, and return its ack (what the node did at once
        with it, priority items included, has been written by then)."""
        connection = self.harness.node.connections.by_sid.get(self.sid)
        if connection is None:
            return {"ok": False, "error": {"code": "connection_closed", "message": "closed"}}
        ack = await self.harness.node.dispatcher.dispatch(connection, name, [payload])
        await self.harness.settle()
        wire: dict[str, Any] = orjson.loads(orjson.dumps(ack, default=_embedded))  # as the wire has it
        return wire

    async def join(self, room: str, since: int | None = None, epoch: str | None = None) -> dict[str, Any]:
        ack = await self.command("join", {"room": room, "since": since, "epoch": epoch})
        if not ack["ok"]:
            raise AssertionError(f"{self.user} could not join {room}: {ack}")
        return ack

    @property
    def batches(self) -> list[dict[str, Any]]:
        """Every `batch` event written to this client so far."""
        self._parse()
        return self._batches

    @property
    def closed_with(self) -> tuple[int, str] | None:
        """The WebSocket close code and reason the node sent, if it closed this connection."""
        self._parse()
        return self._closed_with

    @property
    def items(self) -> list[dict[str, Any]]:
        return [item for batch in self.batches for item in batch["items"]]

    def of_type(self, item_type: str) -> list[dict[str, Any]]:
        return [item for item in self.items if item["type"] == item_type]

    def seqs(self) -> list[int]:
        return [item["seq"] for item in self.items if item["seq"] is not None]

    async def vanish(self) -> None:
        """Go away as a dropped network does: the transport is lost, nothing said."""
        self.transport.abort()
        await self.harness.settle()

    def _parse(self) -> None:
        data, offset = bytes(self.transport.written), self._read
        while offset + 2 <= len(data):
            first, second = data[offset], data[offset + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                length, head = struct.unpack_from("!H", data, offset + 2)[0], 4
            elif length == 127:
                length, head = struct.unpack_from("!Q", data, offset + 2)[0], 10
            if offset + head + length > len(data):
                break
            payload = data[offset + head : offset + head + length]
            offset += head + length
            opcode = first & 0x0F
            if opcode == 0x8:
                code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
                self._closed_with = (code, payload[2:].decode(errors="replace"))
            elif opcode == 0x1 and payload.startswith(b'42["batch"'):
                self._batches.append(orjson.loads(payload[2:])[1])
            elif opcode == 0x2:
                packet = msgpack.unpackb(payload, raw=False)
                if packet.get("data", [None])[0] == "batch":
                    self._batches.append(packet["data"][1])
        self._read = offset


class NodeHarness:
    """A real node without sockets, on a fake clock (see the module docstring)."""

    SECRET = "harness-secret-that-is-long-enough-for-hs256-000000"

    def __init__(
        self,
        config: Config | None = None,
        *,
        plugins: Mapping[str, Mapping[str, Any]] | None = None,
        clock: FakeClock | None = None,
        store: FaultyStore | None = None,
    ) -> None:
        config = config or Config()
        self.config = dataclasses.replace(
            config,
            auth=AuthConfig(jwt_secret=self.SECRET) if not config.auth.jwt_secret else config.auth,
            store=StoreConfig(kind="memory"),
            delivery=dataclasses.replace(config.delivery, check_members=True),
            plugins={**config.plugins, **(plugins or {})},
        )
        self.clock = clock or FakeClock()
        self.store = store or FaultyStore()
        self._sids = itertools.count(1)
        self.connections: list[HarnessConnection] = []
        self.node = self._new_node()

    def _new_node(self) -> Node:
        from liveroom.node import Node  # imported here: liveroom.node imports this module's FakeClock users

        return Node(self.config, self.clock, store=self.store)

    async def __aenter__(self) -> NodeHarness:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        await self.node.open()
        self.node.ready = True

    async def close(self) -> None:
        await self.node.stop()

    async def restart(self) -> None:
        """The process dies (as with SIGKILL: its clients cut off, nothing of theirs run) and
        a new node starts over the same store (the broker, like a new process's, starts a
        new epoch). What was acknowledged is durable; nothing else is."""
        for connection in self.connections:
            connection.transport.cut()
        await self.node.stop()
        self.connections.clear()
        self.node = self._new_node()
        await self.start()

    async def connect(
        self,
        user: str,
        role: Role = "viewer",
        room: str | None = None,
        name: str | None = None,
        tier: str | None = None,
        msgpack: bool = False,
    ) -> HarnessConnection:
        """A client connected with a token of these claims."""
        sid = f"h{next(self._sids)}"
        identity = Identity(user, name or user.title(), role, room, None, tier)
        transport = CapturingTransport(lambda: asyncio.ensure_future(self._lost(sid)))
        self.node.connections.add(sid, sid, identity, _WebSocketSession(), transport, msgpack)
        client = HarnessConnection(self, sid, identity, transport)
        self.connections.append(client)
        return client

    async def _lost(self, sid: str) -> None:
        connection = self.node.connections.by_sid.get(sid)
        if connection is not None:
            self.node.connections.leaving(connection)
            await self.node.connections.remove(sid)

    async def tick(self) -> None:
        """One delivery tick: every room's pending items written to its members."""
        await self.node.hub.tick()
        self.node.hub.flush_all()

    async def advance(self, seconds: float, step: float = 0.05) -> None:
        """Move the clock, firing timers and ticks on the way, in `step`s (like a running node)."""
        left = seconds
        while left > 1e-9:
            move = min(step, left)
            self.clock.advance(move)
            left -= move
            await self.node.timers.fire_due()
            self.node.rooms.sweep()
            await self.settle()

    async def settle(self) -> None:
        """Let work started by the last step finish (priority flushes, tasks), then tick."""
        for _ in range(5):
            await asyncio.sleep(0)
        await self.tick()
        await self.node.rooms.settle()


def _embedded(value: Any) -> Any:
    from liveroom.protocol import EncodedJson

    if isinstance(value, EncodedJson):
        return orjson.Fragment(value.raw)
    raise TypeError(type(value).__name__)
