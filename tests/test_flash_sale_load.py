"""Flash-sale correctness under load, embedded mode, with a SIGKILL right after the storm.

The default run: 300 real python-socketio buyers over 20 units. The benchmark
(`pytest -m bench -s tests/test_flash_sale_load.py`): 5,000 buyers over 100 units through a
minimal Engine.IO client (python-socketio clients cost too much client CPU at that count),
server and load pinned to different cores; prints decisions/s and p99 ack latency.
Either way: exactly `stock` orders, no duplicates, none acknowledged lost after restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from plugin_support import api, room_name
from support import ServerProcess, Viewer, token

SALE = {"sku": "sku-1", "title": "Flash", "price": 1.0, "per_user_limit": 1, "duration_s": 600}


async def schedule(server: ServerProcess, room: str, stock: int) -> str:
    body = {**SALE, "stock": stock, "starts_at": 0}
    status, ack = api(server, "POST", f"/api/rooms/{room}/commands/sale.schedule", body)
    assert status == 200, ack
    return str(ack["sale"])


def check_after_restart(server: ServerProcess, room: str, sale: str, acked: set[str], stock: int) -> None:
    server.stop(signal.SIGKILL)
    server.start()
    status, body = api(server, "GET", f"/api/rooms/{room}/sales/{sale}/orders?limit=1000")
    assert status == 200
    ids = [order["id"] for order in body["orders"]]
    users = [order["user"] for order in body["orders"]]
    assert len(ids) == stock and len(set(ids)) == stock and len(set(users)) == stock
    assert acked == set(ids)  # every acknowledged order survived; nothing else was written


async def test_flash_sale_300_buyers_20_units_survives_sigkill(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    room = room_name()
    buyers = [Viewer(server.url, f"buyer{n}") for n in range(300)]
    try:
        sale = await schedule(server, room, 20)
        await asyncio.gather(*(b.connect() for b in buyers))
        await asyncio.gather(*(b.join(room) for b in buyers))
        buy = {"room": room, "sale": sale, "qty": 1, "request_id": "once"}
        acks = await asyncio.gather(*(b.call("sale.buy", buy, timeout=30) for b in buyers))
        acked = {a["order"]["id"] for a in acks if a["ok"]}
        assert len(acked) == 20 and {a["error"]["code"] for a in acks if not a["ok"]} == {"sold_out"}
        for b in buyers:
            await b.close()
        check_after_restart(server, room, sale, acked, 20)
    finally:
        for b in buyers:
            await b.close()
        server.stop()


class RawBuyer:
    """Just enough Engine.IO v4 / Socket.IO v5 over one WebSocket to join and buy."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.acks: dict[int, asyncio.Future[Any]] = {}
        self.next_id = 0
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, url: str, user: str) -> RawBuyer:
        ws = await session.ws_connect(url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket")
        assert (await ws.receive_str()).startswith("0")
        await ws.send_str("40" + json.dumps({"token": token(user)}))
        assert (await ws.receive_str()).startswith("40")
        return cls(ws)

    async def call(self, event: str, data: Any) -> Any:
        self.next_id += 1
        future = self.acks[self.next_id] = asyncio.get_running_loop().create_future()
        await self.ws.send_str(f"42{self.next_id}" + json.dumps([event, data]))
        return await future

    async def _read(self) -> None:
        async for message in self.ws:
            text = message.data
            if text == "2":
                await self.ws.send_str("3")
            elif text.startswith("43"):
                bracket = text.index("[")
                self.acks.pop(int(text[2:bracket])).set_result(json.loads(text[bracket:])[0])
        # The socket is gone (its node was killed): the calls still waiting get no ack.
        for future in self.acks.values():
            if not future.done():
                future.set_exception(ConnectionError("the connection closed before the ack"))
        self.acks.clear()

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


async def timed_buy(buyer: RawBuyer, payload: dict[str, Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    ack = await buyer.call("sale.buy", payload)
    return ack, time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin_beside_server(pid: int) -> None:
    """Redis shares the server's core: the load generator keeps its own."""
    subprocess.run(["taskset", "-a", "-p", "-c", "1", str(pid)], check=True, capture_output=True)


def pin_cores(server_pid: int) -> None:
    """Server (every thread) on core 1, this load generator on core 0."""
    subprocess.run(["taskset", "-a", "-p", "-c", "1", str(server_pid)], check=True, capture_output=True)
    os.sched_setaffinity(0, {0})


@pytest.mark.bench
@pytest.mark.timeout(600)
async def test_flash_sale_5000_buyers_100_units(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if "bench" not in str(request.config.getoption("markexpr", "")):
        pytest.skip("a benchmark: run with -m bench")
    buyers_count, stock = int(os.environ.get("BUYERS", "5000")), 100
    env = {"LIVEROOM_LOG_LEVEL": "ERROR"}
    redis = None
    if os.environ.get("FLASH_STORE") == "redis":  # the same storm, decided by the Redis store's script
        from redis_support import RedisServer

        redis = RedisServer(tmp_path / "redis", appendonly=True).start()
        assert redis.process is not None
        pin_beside_server(redis.process.pid)
        env.update(
            {"LIVEROOM_STORE_KIND": "redis", "LIVEROOM_BROKER_KIND": "redis", "LIVEROOM_REDIS_URL": redis.url}
        )
    server = ServerProcess(tmp_path, env=env).start()
    assert server.process is not None
    pin_cores(server.process.pid)
    room = room_name()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        sale = await schedule(server, room, stock)
        buyers: list[RawBuyer] = []
        for start in range(0, buyers_count, 250):
            batch = range(start, min(start + 250, buyers_count))
            buyers += await asyncio.gather(*(RawBuyer.connect(session, server.url, f"b{n}") for n in batch))
        await asyncio.gather(*(b.call("join", {"room": room}) for b in buyers))
        payload = {"room": room, "sale": sale, "qty": 1, "request_id": "r"}
        cpu_before = cpu_seconds(server.process.pid)
        started = time.perf_counter()
        results = await asyncio.gather(*(timed_buy(b, payload) for b in buyers))
        span = time.perf_counter() - started
        server_cpu = cpu_seconds(server.process.pid) - cpu_before
        acked = {ack["order"]["id"] for ack, _ in results if ack["ok"]}
        codes = {ack["error"]["code"] for ack, _ in results if not ack["ok"]}
        latencies = sorted(latency for _, latency in results)
        server.stop(signal.SIGKILL)  # right after the storm, before any clean shutdown
        for b in buyers:
            await b.close()
    server.start()
    try:
        check_after_restart(server, room, sale, acked, stock)
    finally:
        server.stop()
        if redis is not None:
            redis.stop()
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(
        f"\nflash-sale ({os.environ.get('FLASH_STORE', 'embedded')} store): {buyers_count} buyers, "
        f"{stock} units -> {len(acked)} orders, others {codes}; "
        f"{buyers_count / span:,.0f} decisions/s over {span * 1000:.0f} ms; "
        f"p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, p99 {p99:.1f} ms; "
        f"server CPU {server_cpu:.2f} s ({buyers_count / max(server_cpu, 1e-9):,.0f} decisions/CPU-s)"
    )
    assert len(acked) == stock and codes == {"sold_out"}


@pytest.mark.bench
async def test_store_decisions_per_second(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The decision alone (EmbeddedStore.take_stock, SQLite group commit), without the socket layer."""
    if "bench" not in str(request.config.getoption("markexpr", "")):
        pytest.skip("a benchmark: run with -m bench")
    from liveroom.sqlite_store import EmbeddedStore
    from liveroom.stock import StockRequest

    os.sched_setaffinity(0, {1})
    store = EmbeddedStore(tmp_path / "bench.db")
    await store.start()
    try:
        await store.define_stock("p", "room", 100, 1, "sale.order", 1)
        requests = [StockRequest("p", f"u{n}", 1, "r", {"sale": "p"}, 1) for n in range(5000)]
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(store.take_stock(r) for r in requests))
        span = time.perf_counter() - started
        # The same decisions one after another from one task: no task per request, but each
        # of the 100 orders waits for its own commit.
        await store.define_stock("q", "room", 100, 1, "sale.order", 1)
        started = time.perf_counter()
        for r in requests:
            await store.take_stock(StockRequest("q", r.user, 1, "r", {"sale": "q"}, 1))
        one_by_one = time.perf_counter() - started
    finally:
        await store.close()
    assert sum(o.status == "ok" for o in outcomes) == 100
    print(
        f"\nstore decisions, 5000 over 100 units: concurrent {5000 / span:,.0f}/s ({span * 1000:.0f} ms), "
        f"one by one {5000 / one_by_one:,.0f}/s ({one_by_one * 1000:.0f} ms)"
    )
