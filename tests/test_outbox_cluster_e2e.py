"""The order outbox on a cluster (issue 15), end to end: two real nodes on a real Redis, a
receiver that counts deliveries and refuses one buyer's order. Each order arrives once,
across a restart of both nodes; the refused one becomes a dead letter and holds up nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from plugin_support import api
from redis_support import RedisServer
from support import ServerProcess, Viewer
from webhook_support import OrderReceiver, order_receiver

SECRET = "cluster-secret"
ROOM = "orders"


@pytest.fixture
async def receiver() -> AsyncIterator[OrderReceiver]:
    async with order_receiver(SECRET) as made:
        made.refuse.add("refused")
        yield made


async def until(condition: object, what: str, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.1)


async def buy(node: ServerProcess, user: str, sale: str) -> None:
    buyer = Viewer(node.url, user)
    try:
        await buyer.connect()
        await buyer.join(ROOM)
        ack = await buyer.call("sale.buy", {"room": ROOM, "sale": sale, "qty": 1, "request_id": user})
        assert ack["ok"], ack
    finally:
        await buyer.close()


@pytest.mark.timeout(180)
async def test_orders_arrive_once_across_a_restart_of_both_nodes(
    tmp_path: Path, receiver: OrderReceiver
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    env = {
        "LIVEROOM_BROKER_KIND": "redis",
        "LIVEROOM_STORE_KIND": "redis",
        "LIVEROOM_REDIS_URL": redis.url,
        "LIVEROOM_PLUGINS_SALE_WEBHOOK_URL": receiver.url,
        "LIVEROOM_PLUGINS_SALE_WEBHOOK_SECRET": SECRET,
        "LIVEROOM_PLUGINS_SALE_WEBHOOK_MAX_ATTEMPTS": "2",
        "LIVEROOM_PLUGINS_SALE_WEBHOOK_MAX_BACKOFF_S": "0.1",
    }

    def launch() -> list[ServerProcess]:
        nodes = [ServerProcess(tmp_path / f"node{n}", env=env).launch() for n in range(2)]
        for node in nodes:
            node.wait_ready()
        return nodes

    nodes = launch()
    try:
        schedule = {"sku": "k", "title": "T", "price": 100, "stock": 20, "starts_at": 0, "duration_s": 3600}
        status, made = api(nodes[0], "POST", f"/api/rooms/{ROOM}/commands/sale.schedule", schedule)
        assert status == 200, made
        sale = made["sale"]
        first = ["ann", "bob", "refused", "cat", "dan"]
        for n, user in enumerate(first):  # through both nodes
            await buy(nodes[n % 2], user, sale)
        await until(lambda: len(receiver.users) == 4, "the first orders did not all arrive")
        await until(lambda: receiver.refused["refused"] == 2, "the refused order was not tried twice")

        def dead(node: ServerProcess) -> list[str]:
            status, body = api(node, "GET", f"/api/rooms/{ROOM}/outbox/dead")
            assert status == 200, body
            return [letter["key"].split("/")[1] for letter in body["dead"]]  # sale/user/request_id

        await until(lambda: dead(nodes[1]) == ["refused"], "the refused order is not a dead letter")

        for node in nodes:  # both nodes restart; their receipts are in Redis
            node.stop()
        nodes = launch()
        for n, user in enumerate(["eve", "fay", "gus"]):
            await buy(nodes[n % 2], user, sale)
        await until(lambda: len(receiver.users) == 7, "the later orders did not all arrive")
        await asyncio.sleep(1.0)  # room for a repeat, were there one
        assert set(receiver.users.values()) == {1}, receiver.users
        assert receiver.refused["refused"] == 2 and receiver.bad_signatures == 0
        assert dead(nodes[0]) == ["refused"]
    finally:
        for node in nodes:
            node.stop()
        redis.stop()
